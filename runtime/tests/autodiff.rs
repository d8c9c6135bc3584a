//! Autodiff behaviour beyond VJP accuracy: frozen parameters, selections, stop_gradient,
//! the straight-through estimator, unused parameters, bad losses.

mod common;
use common::*;
use std::collections::HashMap;
use weft_compiler::autodiff::{grad, ParamSelection};
use weft_compiler::ir::{ConstValue, DType, GraphBuilder, Init, Op};
use weft_compiler::IrError;
use weft_runtime::{Backend, CpuBackend, HookSelection, ParamStore, Rng, Tensor};

fn scalar_loss(b: &mut GraphBuilder, y: weft_compiler::ir::ValueId) -> weft_compiler::ir::ValueId {
    let n: usize = b.shape(y).iter().product();
    let f = b.reshape(y, &[n]).unwrap();
    b.sum(f, 0, false).unwrap()
}

#[test]
fn frozen_params_get_no_gradient_and_no_backward_work() {
    let mut b = GraphBuilder::new();
    let ids = b.input("ids", &[4], DType::I32);
    let emb = b.param("embed", &[6, 3], Init::Normal { std: 1.0 }, false);
    let w = b.param("w", &[3, 2], Init::Normal { std: 1.0 }, true);
    let h = b.gather(emb, ids).unwrap();
    let y = b.matmul(h, w).unwrap();
    let loss = scalar_loss(&mut b, y);
    let g = b.finish().unwrap();
    let gg = grad(&g, loss, &[ParamSelection::All]).unwrap();
    assert!(gg.output("grad.w").is_some());
    assert!(gg.output("grad.embed").is_none());
    assert!(
        !gg.nodes
            .iter()
            .any(|n| matches!(n.op, Op::ScatterAdd { .. })),
        "no work for the frozen embedding:\n{gg}"
    );
    // Only dW = hᵀ·dy is needed: a single backward matmul.
    assert_eq!(
        gg.nodes
            .iter()
            .filter(|n| matches!(n.op, Op::MatMul { .. }))
            .count(),
        2
    );
}

#[test]
fn selection_limits_gradients_and_unused_params_get_zeros() {
    let mut b = GraphBuilder::new();
    let a = b.param("layers.0.a", &[2], Init::Normal { std: 1.0 }, true);
    let c = b.param("layers.0.c", &[2], Init::Normal { std: 1.0 }, true);
    let _unused = b.param("layers.1.u", &[3], Init::Normal { std: 1.0 }, true);
    let y = b.mul(a, c).unwrap();
    let loss = scalar_loss(&mut b, y);
    let g = b.finish().unwrap();
    let only_a = grad(&g, loss, &[ParamSelection::Glob("*.a".into())]).unwrap();
    let names: Vec<&str> = only_a.outputs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["loss", "grad.layers.0.a"]);
    let all = grad(&g, loss, &[ParamSelection::Glob("layers.*".into())]).unwrap();
    let params = weft_runtime::init_params(&g, 1);
    let out = CpuBackend::new()
        .run(&all, &HashMap::new(), &params, &HookSelection::None)
        .unwrap();
    assert_eq!(
        out.get("grad.layers.1.u").unwrap().to_f64_vec(),
        vec![0.0; 3]
    );
    assert_eq!(
        out.get("grad.layers.0.a").unwrap().to_f32_vec(),
        params["layers.0.c"].to_f32_vec()
    );
}

#[test]
fn stop_gradient_blocks_its_path() {
    let mut b = GraphBuilder::new();
    let x = b.param("x", &[5], Init::Normal { std: 1.0 }, true);
    let s = b.stop_gradient(x).unwrap();
    let y = b.mul(x, s).unwrap(); // d/dx = sg(x), not 2x
    let loss = scalar_loss(&mut b, y);
    let g = b.finish().unwrap();
    let gg = grad(&g, loss, &[ParamSelection::All]).unwrap();
    let params = weft_runtime::init_params(&g, 2);
    let out = CpuBackend::new()
        .run(&gg, &HashMap::new(), &params, &HookSelection::None)
        .unwrap();
    assert_eq!(
        out.get("grad.x").unwrap().to_f32_vec(),
        params["x"].to_f32_vec()
    );
}

#[test]
fn straight_through_is_sign_forward_and_clipped_identity_backward() {
    let mut b = GraphBuilder::new();
    let x = b.param("x", &[4], Init::Normal { std: 1.0 }, true);
    let s = b.straight_through(x).unwrap();
    let r = b
        .constant(ConstValue::F32(vec![3.0, -0.5, -2.0, 0.25]), &[4])
        .unwrap();
    let y = b.mul(s, r).unwrap();
    b.output("s", s);
    let loss = scalar_loss(&mut b, y);
    let g = b.finish().unwrap();
    let gg = grad(&g, loss, &[ParamSelection::All]).unwrap();
    let mut params = ParamStore::new();
    params.insert("x".into(), Tensor::f32(&[4], vec![0.3, -1.2, 0.0, 2.0]));
    let out = CpuBackend::new()
        .run(&gg, &HashMap::new(), &params, &HookSelection::None)
        .unwrap();
    assert_eq!(
        out.get("s").unwrap().to_f32_vec(),
        vec![1.0, -1.0, 0.0, 1.0]
    );
    // dL/ds = r, passed through clipped to [-1, 1].
    assert_eq!(
        out.get("grad.x").unwrap().to_f32_vec(),
        vec![1.0, -0.5, -1.0, 0.25]
    );
}

#[test]
fn loss_must_be_a_scalar() {
    let mut b = GraphBuilder::new();
    let x = b.param("x", &[3], Init::Zeros, true);
    let y = b.exp(x).unwrap();
    let g = b.finish().unwrap();
    assert!(matches!(
        grad(&g, y, &[ParamSelection::All]),
        Err(IrError::Grad(_))
    ));
}

#[test]
fn gradient_accumulates_over_multiple_uses() {
    // x used three times through different ops, plus a shared weight in two matmuls.
    let mut rng = Rng::new(1);
    let mut ins = HashMap::new();
    ins.insert("a".to_string(), randn_t(&mut rng, &[3, 4]));
    grad_check(500, ins, |b| {
        let a = b.input("a", &[3, 4], DType::F32);
        let x = b.param("x", &[4, 4], Init::Normal { std: 1.0 }, true);
        let h = b.matmul(a, x)?;
        let h = b.tanh(h)?;
        let h2 = b.matmul(h, x)?;
        let e = b.exp(x)?;
        let s = b.sum(e, 0, true)?;
        b.mul(h2, s)
    });
}
