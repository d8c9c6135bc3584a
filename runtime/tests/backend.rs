//! CPU backend: forward values of ops against hand-computed results, error reporting,
//! seeded initialisation.

use std::collections::HashMap;
use weft_compiler::ir::{CmpOp, ConstValue, DType, Graph, GraphBuilder, Init, ReduceOp};
use weft_runtime::{init_params, Backend, CpuBackend, HookSelection, ParamStore, RunError, Tensor};

fn run1(g: &Graph, ins: &[(&str, Tensor)]) -> Result<weft_runtime::Outputs, RunError> {
    let inputs: HashMap<String, Tensor> = ins
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    CpuBackend::new().run(g, &inputs, &init_params(g, 0), &HookSelection::None)
}

fn out(g: &Graph, ins: &[(&str, Tensor)], name: &str) -> Vec<f32> {
    run1(g, ins).unwrap().get(name).unwrap().to_f32_vec()
}

fn close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
    }
}

#[test]
fn reductions_and_scans_forward() {
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[2, 3], DType::F32);
    let outs = [
        ("sum0", b.reduce(ReduceOp::Sum, x, 0, false).unwrap()),
        ("mean1", b.mean(x, 1, false).unwrap()),
        ("max1", b.max(x, 1, true).unwrap()),
        ("lse1", b.logsumexp(x, 1, false).unwrap()),
        ("sm1", b.softmax(x, 1).unwrap()),
        ("cum1", b.cumsum(x, 1, false).unwrap()),
        ("rcum1", b.cumsum(x, 1, true).unwrap()),
        ("top1", b.topk_mask(x, 2, 1).unwrap()),
    ];
    let am = b.argmax(x, 1, false).unwrap();
    let amf = b.cast(am, DType::F32).unwrap();
    for (n, v) in outs {
        b.output(n, v);
    }
    b.output("argmax", amf);
    let g = b.finish().unwrap();
    let t = Tensor::f32(&[2, 3], vec![1.0, 3.0, 3.0, -1.0, 0.0, 2.0]);
    let ins = [("x", t)];
    close(&out(&g, &ins, "sum0"), &[0.0, 3.0, 5.0]);
    close(&out(&g, &ins, "mean1"), &[7.0 / 3.0, 1.0 / 3.0]);
    close(&out(&g, &ins, "max1"), &[3.0, 2.0]);
    let lse = |v: &[f32]| v.iter().map(|x| x.exp()).sum::<f32>().ln();
    close(
        &out(&g, &ins, "lse1"),
        &[lse(&[1.0, 3.0, 3.0]), lse(&[-1.0, 0.0, 2.0])],
    );
    let z = (
        1f32.exp() + 2.0 * 3f32.exp(),
        (-1f32).exp() + 1.0 + 2f32.exp(),
    );
    close(
        &out(&g, &ins, "sm1"),
        &[
            1f32.exp() / z.0,
            3f32.exp() / z.0,
            3f32.exp() / z.0,
            (-1f32).exp() / z.1,
            1.0 / z.1,
            2f32.exp() / z.1,
        ],
    );
    close(&out(&g, &ins, "cum1"), &[1.0, 4.0, 7.0, -1.0, -1.0, 1.0]);
    close(&out(&g, &ins, "rcum1"), &[7.0, 6.0, 3.0, 1.0, 2.0, 2.0]);
    // Ties: the lower index wins, so [1,3,3] keeps both 3s and [−1,0,2] keeps 0 and 2.
    close(&out(&g, &ins, "top1"), &[0.0, 1.0, 1.0, 0.0, 1.0, 1.0]);
    close(&out(&g, &ins, "argmax"), &[1.0, 2.0]);
}

#[test]
fn elementwise_indexing_and_loss_forward() {
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[2, 2], DType::F32);
    let ids = b.input("ids", &[3], DType::I32);
    let zero = b.scalar(0.0);
    let lt = b.compare(CmpOp::Lt, x, zero).unwrap();
    let neg = b.neg(x).unwrap();
    let absx = b.where_(lt, neg, x).unwrap();
    let ci = b.cast(x, DType::I32).unwrap();
    let cf = b.cast(ci, DType::F32).unwrap();
    let g_rows = b.gather(x, ids).unwrap(); // rows 1, 0, 1
    let sc = b.scatter_add(g_rows, ids, 2).unwrap(); // row 1 twice
    let oh = b.one_hot(ids, 2).unwrap();
    let io = b.iota(&[2, 3], 1, DType::F32).unwrap();
    let logits = b
        .constant(ConstValue::F32(vec![0.0, 1.0, 2.0, 0.5, 0.5, 0.5]), &[2, 3])
        .unwrap();
    let tg = b.constant(ConstValue::I32(vec![2, -1]), &[2]).unwrap();
    let ce = b.cross_entropy(logits, tg).unwrap();
    let c = b.concat(&[x, x], 0).unwrap();
    let sl = b.slice(c, 0, 1, 3).unwrap();
    let pt = b.transpose(x, 0, 1).unwrap();
    for (n, v) in [
        ("abs", absx),
        ("trunc", cf),
        ("gather", g_rows),
        ("scatter", sc),
        ("onehot", oh),
        ("iota", io),
        ("ce", ce),
        ("slice", sl),
        ("t", pt),
    ] {
        b.output(n, v);
    }
    let g = b.finish().unwrap();
    let ins = [
        ("x", Tensor::f32(&[2, 2], vec![-1.5, 2.7, 0.25, -3.0])),
        ("ids", Tensor::i32(&[3], vec![1, 0, 1])),
    ];
    close(&out(&g, &ins, "abs"), &[1.5, 2.7, 0.25, 3.0]);
    close(&out(&g, &ins, "trunc"), &[-1.0, 2.0, 0.0, -3.0]);
    close(
        &out(&g, &ins, "gather"),
        &[0.25, -3.0, -1.5, 2.7, 0.25, -3.0],
    );
    close(&out(&g, &ins, "scatter"), &[-1.5, 2.7, 0.5, -6.0]);
    close(&out(&g, &ins, "onehot"), &[0.0, 1.0, 1.0, 0.0, 0.0, 1.0]);
    close(&out(&g, &ins, "iota"), &[0.0, 1.0, 2.0, 0.0, 1.0, 2.0]);
    let lse = (1f32 + 1f32.exp() + 2f32.exp()).ln();
    close(&out(&g, &ins, "ce"), &[lse - 2.0, 0.0]);
    close(&out(&g, &ins, "slice"), &[0.25, -3.0, -1.5, 2.7]);
    close(&out(&g, &ins, "t"), &[-1.5, 0.25, 2.7, -3.0]);
}

fn tiny() -> Graph {
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[2, 3], DType::F32);
    let ids = b.input("ids", &[2], DType::I32);
    let w = b.param("w", &[4, 3], Init::Normal { std: 1.0 }, true);
    let e = b.gather(w, ids).unwrap();
    let y = b.add(x, e).unwrap();
    let l = b.log(y).unwrap();
    b.output("y", l);
    b.hook("h", e);
    b.finish().unwrap()
}

#[test]
fn errors_name_the_tensor() {
    let g = tiny();
    let x = Tensor::f32(&[2, 3], vec![-1.0; 6]);
    let ids = Tensor::i32(&[2], vec![0, 3]);
    let err = run1(&g, &[("x", x.clone())]).unwrap_err();
    assert!(
        matches!(&err, RunError::MissingInput { name } if name == "ids"),
        "{err}"
    );
    let err = run1(
        &g,
        &[
            ("x", Tensor::f32(&[3, 2], vec![0.0; 6])),
            ("ids", ids.clone()),
        ],
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("`x`") && err.to_string().contains("[2, 3]"),
        "{err}"
    );
    let err = run1(
        &g,
        &[("x", x.clone()), ("ids", Tensor::f32(&[2], vec![0.0; 2]))],
    )
    .unwrap_err();
    assert!(
        matches!(&err, RunError::InputType { name, .. } if name == "ids"),
        "{err}"
    );
    let err = run1(
        &g,
        &[("x", x.clone()), ("ids", Tensor::i32(&[2], vec![0, 4]))],
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            RunError::IndexOutOfRange {
                op: "gather",
                index: 4,
                bound: 4,
                ..
            }
        ),
        "{err}"
    );
    let inputs: HashMap<String, Tensor> = [
        ("x".to_string(), x.clone()),
        ("ids".to_string(), ids.clone()),
    ]
    .into();
    let err = CpuBackend::new()
        .run(&g, &inputs, &ParamStore::new(), &HookSelection::None)
        .unwrap_err();
    assert!(
        matches!(&err, RunError::MissingParam { name } if name == "w"),
        "{err}"
    );
    let err = CpuBackend::new()
        .run(
            &g,
            &inputs,
            &init_params(&g, 0),
            &HookSelection::Names(vec!["nope".into()]),
        )
        .unwrap_err();
    assert!(
        matches!(&err, RunError::UnknownHook { name } if name == "nope"),
        "{err}"
    );
    // NaN is a value, not an error: log of a negative number.
    let out = CpuBackend::new()
        .run(&g, &inputs, &init_params(&g, 0), &HookSelection::All)
        .unwrap();
    assert!(out
        .get("y")
        .unwrap()
        .to_f32_vec()
        .iter()
        .any(|v| v.is_nan()));
    assert_eq!(out.hook("h").unwrap().shape, vec![2, 3]);
}

#[test]
fn initialisation_is_seeded_and_follows_init() {
    let mut b = GraphBuilder::new();
    b.param("a", &[1000], Init::Normal { std: 0.02 }, true);
    b.param("g", &[4], Init::Constant { value: 0.5 }, false);
    let g = b.finish().unwrap();
    let p1 = init_params(&g, 42);
    let p2 = init_params(&g, 42);
    let p3 = init_params(&g, 43);
    assert_eq!(p1, p2);
    assert_ne!(p1["a"], p3["a"]);
    let a = p1["a"].to_f64_vec();
    let std = (a.iter().map(|x| x * x).sum::<f64>() / a.len() as f64).sqrt();
    assert!((std - 0.02).abs() < 0.002, "{std}");
    assert_eq!(p1["g"].to_f32_vec(), vec![0.5; 4]);
}

#[test]
fn serde_round_trip_preserves_the_graph() {
    let g = tiny();
    let json = serde_json::to_string(&g).unwrap();
    let back: Graph = serde_json::from_str(&json).unwrap();
    assert_eq!(back, g);
    assert_eq!(back.to_string(), g.to_string());
}
