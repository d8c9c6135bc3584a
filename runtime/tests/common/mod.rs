//! Shared test helpers: seeded random tensors and a finite-difference gradient checker
//! that evaluates in f64 (so tolerances can be tight and failures mean wrong VJPs).
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use weft_compiler::autodiff::{grad, ParamSelection};
use weft_compiler::ir::{ConstValue, Graph, GraphBuilder, ValueId};
use weft_compiler::passes::optimize;
use weft_compiler::IrError;
use weft_runtime::{init_params, Backend, CpuBackend, HookSelection, ParamStore, Rng, Tensor};

/// Central-difference step (f64 evaluation).
pub const EPS: f64 = 1e-5;
/// |analytic − numeric| ≤ ATOL + RTOL · max(|analytic|, |numeric|).
pub const ATOL: f64 = 1e-6;
pub const RTOL: f64 = 1e-5;
/// Max entries checked per parameter (a random sample beyond this).
pub const SAMPLES: usize = 24;

pub fn randn(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.normal() as f32).collect()
}

pub fn randn_t(rng: &mut Rng, shape: &[usize]) -> Tensor {
    Tensor::f32(shape, randn(rng, shape.iter().product()))
}

pub fn ids(rng: &mut Rng, shape: &[usize], below: u64) -> Tensor {
    Tensor::i32(
        shape,
        (0..shape.iter().product())
            .map(|_| rng.below(below) as i32)
            .collect(),
    )
}

pub fn run(
    g: &Graph,
    backend: &CpuBackend,
    inputs: &HashMap<String, Tensor>,
    params: &ParamStore,
) -> BTreeMap<String, Tensor> {
    backend
        .run(g, inputs, params, &HookSelection::None)
        .expect("run failed")
        .outputs
}

/// A forward graph with output `y` (the value under test) and `loss = Σ y ⊙ R` for a fixed
/// random `R` (so every output entry's gradient matters and differs).
pub struct Case {
    pub graph: Graph,
    pub loss: ValueId,
    pub inputs: HashMap<String, Tensor>,
    pub params: ParamStore,
}

/// Builds a case: `build` adds nodes and returns `y`; params are drawn from their `Init`.
pub fn case(
    seed: u64,
    inputs: HashMap<String, Tensor>,
    build: impl FnOnce(&mut GraphBuilder) -> Result<ValueId, IrError>,
) -> Case {
    let mut b = GraphBuilder::new();
    let y = build(&mut b).expect("build failed");
    let shape = b.shape(y).to_vec();
    let n: usize = shape.iter().product();
    let mut rng = Rng::new(seed ^ 0xA5A5);
    let r = b
        .constant(ConstValue::F32(randn(&mut rng, n)), &shape)
        .unwrap();
    let p = b.mul(y, r).unwrap();
    let flat = b.reshape(p, &[n]).unwrap();
    let loss = b.sum(flat, 0, false).unwrap();
    b.output("y", y);
    b.output("loss", loss);
    let graph = b.finish().expect("invalid graph");
    let params = init_params(&graph, seed);
    Case {
        graph,
        loss,
        inputs,
        params,
    }
}

/// Analytic gradients of every trainable param, from `grad` followed by the default passes,
/// evaluated in f64.
pub fn analytic(c: &Case) -> BTreeMap<String, Tensor> {
    let gg = grad(&c.graph, c.loss, &[ParamSelection::All]).expect("grad failed");
    let gg = optimize(&gg).expect("passes failed");
    run(&gg, &CpuBackend::f64(), &c.inputs, &c.params)
}

fn loss_at(c: &Case, params: &ParamStore) -> f64 {
    run(&c.graph, &CpuBackend::f64(), &c.inputs, params)["loss"].to_f64_vec()[0]
}

/// Compares `grads` (`grad.{name}` entries) with central differences on sampled entries.
pub fn compare(c: &Case, grads: &BTreeMap<String, Tensor>) -> Result<usize, String> {
    compare_sampled(c, grads, SAMPLES)
}

/// [`compare`] with at most `samples` entries per parameter.
pub fn compare_sampled(
    c: &Case,
    grads: &BTreeMap<String, Tensor>,
    samples: usize,
) -> Result<usize, String> {
    let mut rng = Rng::new(99);
    let mut checked = 0;
    for info in c.graph.params.iter().filter(|p| p.trainable) {
        let g = grads
            .get(&format!("grad.{}", info.name))
            .ok_or(format!("no gradient for {}", info.name))?;
        let g = g.to_f64_vec();
        let base = c.params[&info.name].to_f64_vec();
        let n = base.len();
        let entries: Vec<usize> = if n <= samples {
            (0..n).collect()
        } else {
            (0..samples).map(|_| rng.below(n as u64) as usize).collect()
        };
        for e in entries {
            let mut p = c.params.clone();
            let mut plus = base.clone();
            plus[e] += EPS;
            p.insert(info.name.clone(), Tensor::f64(&info.shape, plus));
            let lp = loss_at(c, &p);
            let mut minus = base.clone();
            minus[e] -= EPS;
            p.insert(info.name.clone(), Tensor::f64(&info.shape, minus));
            let lm = loss_at(c, &p);
            let num = (lp - lm) / (2.0 * EPS);
            let an = g[e];
            if (an - num).abs() > ATOL + RTOL * an.abs().max(num.abs()) {
                return Err(format!(
                    "{}[{e}]: analytic {an:.9} vs numeric {num:.9}",
                    info.name
                ));
            }
            checked += 1;
        }
    }
    Ok(checked)
}

/// The f32 forward agrees with the f64 forward to f32 precision.
pub fn check_f32_matches_f64(c: &Case) {
    let a = run(&c.graph, &CpuBackend::new(), &c.inputs, &c.params);
    let b = run(&c.graph, &CpuBackend::f64(), &c.inputs, &c.params);
    let (ya, yb) = (a["y"].to_f64_vec(), b["y"].to_f64_vec());
    for (i, (x, y)) in ya.iter().zip(&yb).enumerate() {
        assert!(
            (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
            "f32 {x} vs f64 {y} at {i}"
        );
    }
}

/// Full check: gradients vs finite differences, and f32 vs f64 forward.
pub fn check(c: Case) {
    let grads = analytic(&c);
    let checked =
        compare(&c, &grads).unwrap_or_else(|e| panic!("gradient mismatch: {e}\n{}", c.graph));
    assert!(checked > 0, "nothing was checked");
    check_f32_matches_f64(&c);
}

/// Builds and checks in one go.
pub fn grad_check(
    seed: u64,
    inputs: HashMap<String, Tensor>,
    build: impl FnOnce(&mut GraphBuilder) -> Result<ValueId, IrError>,
) {
    check(case(seed, inputs, build));
}

pub fn no_inputs() -> HashMap<String, Tensor> {
    HashMap::new()
}
