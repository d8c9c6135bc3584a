//! The fast CPU path (`FastCpuBackend`, what `--backend cpu` trains with) against the
//! op-by-op reference (`CpuBackend`): every op test graph, and every example spec's forward
//! and gradient graphs, on random parameters and inputs, within 1e-5 relative. Also: a
//! repeated run reuses its buffers (no allocation in the steady state) and gives the same
//! result again. Replacement runs (the interventions probes make) take the fast path too and
//! are compared the same way.

#[allow(dead_code)]
#[path = "wgpu_support/examples.rs"]
mod examples;
#[allow(dead_code)]
#[path = "wgpu_support/graphs.rs"]
mod graphs;

use graphs::Case;
use weft_compiler::ir::AttentionMask;
use weft_runtime::replace::HookAxes;
use weft_runtime::{
    Backend, CpuBackend, FastCpuBackend, HookSelection, Intervention, Outputs, Rng, Tensor,
    TensorData,
};

/// `|fast − ref| ≤ 1e-5 · (|ref| + max|ref|) + 1e-9`: relative to the value, or to the tensor's
/// scale where a value is a near-cancelling sum (a gradient entry close to 0). The absolute
/// 1e-9 is for tensors that are float noise as a whole: mom.weft's unselected modules get
/// gradients of order 1e-11 that are 0 in exact arithmetic, and summation order decides them.
fn assert_close(what: &str, fast: &Tensor, reference: &Tensor) {
    assert_eq!(fast.shape, reference.shape, "{what}: shape");
    let (a, b) = (fast.to_f64_vec(), reference.to_f64_vec());
    let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let ok = (x - y).abs() <= 1e-5 * (y.abs() + scale) + 1e-9 || (x.is_nan() && y.is_nan());
        assert!(ok, "{what}[{i}]: fast {x} vs reference {y} (scale {scale})");
    }
}

/// Every parameter moved off its initialisation (norm gains are all 1 there) by seeded noise.
fn perturb(case: &mut Case, seed: u64) {
    let mut rng = Rng::new(seed);
    for t in case.params.values_mut() {
        if let TensorData::F32(v) = &mut t.data {
            for x in v.iter_mut() {
                *x += 0.1 * rng.normal() as f32;
            }
        }
    }
}

fn compare(case: &Case, hooks: &HookSelection) {
    let fast = FastCpuBackend::new();
    let want = CpuBackend::new()
        .run(&case.graph, &case.inputs, &case.params, hooks)
        .unwrap_or_else(|e| panic!("{}: reference: {e}", case.name));
    // Twice: the second run takes every buffer from the pool the first one filled.
    for pass in 0..2 {
        let got = fast
            .run(&case.graph, &case.inputs, &case.params, hooks)
            .unwrap_or_else(|e| panic!("{}: fast: {e}", case.name));
        same_outputs(&format!("{} pass {pass}", case.name), &got, &want);
    }
}

#[test]
fn every_op_case_matches_the_reference() {
    for case in graphs::all_cases() {
        compare(&case, &HookSelection::None);
    }
}

#[test]
fn spec_rules_match_the_reference_forward_backward_parameter_and_pattern_gradients() {
    // T = 70: two query blocks and a partial one; head size 5; segments for `doc_bias` and
    // the document mask (the softmax-shaped rules' forward normalises segment masks with
    // the built-in rules' loop).
    for name in graphs::SPEC_RULE_NAMES {
        for mask in ["causal", "bidirectional", "document"] {
            let rule = graphs::lowered_rule(name, mask);
            let what = format!("{name}/{mask}");
            compare(
                &graphs::attention_rule_shaped(&what, &rule, [2, 3, 70, 5]),
                &HookSelection::None,
            );
            compare(
                &graphs::attention_rule_pattern_grad(&what, &rule),
                &HookSelection::None,
            );
        }
    }
}

#[test]
fn a_captured_pattern_times_v_is_the_fused_forward_to_the_bit() {
    // `weft eval --capture …attn.pattern` recomputes y from the pattern; it must not move
    // the logits. Built-in rules and every spec rule, causal and bidirectional.
    let mut cases = vec![];
    for name in graphs::SPEC_RULE_NAMES {
        for mask in ["causal", "bidirectional"] {
            let rule = graphs::lowered_rule(name, mask);
            cases.push(graphs::attention_rule_shaped(name, &rule, [2, 3, 70, 5]));
        }
    }
    for w in graphs::WEIGHTS {
        for m in [AttentionMask::Causal, AttentionMask::Document] {
            let rule = weft_compiler::ir::AttentionRule::builtin(w.clone(), m, 0.4);
            cases.push(graphs::attention_rule_shaped(
                "built-in",
                &rule,
                [2, 3, 70, 5],
            ));
        }
    }
    for case in cases {
        let out = FastCpuBackend::new()
            .run(
                &case.graph,
                &case.inputs,
                &case.params,
                &HookSelection::None,
            )
            .unwrap();
        let bits = |n: &str| {
            let v = out.outputs[n].to_f32_vec();
            v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        };
        assert_eq!(bits("y"), bits("pattern_times_v"), "{}", case.name);
    }
}

#[test]
fn every_example_forward_and_gradient_matches_the_reference() {
    let names = examples::names();
    assert!(names.len() >= 10, "{names:?}");
    for (k, name) in names.iter().enumerate() {
        for mut case in [
            examples::forward(name, 2, 8, 3 + k as u64),
            examples::gradient(name, 2, 8, 3 + k as u64),
        ] {
            perturb(&mut case, 100 + k as u64);
            compare(&case, &HookSelection::None);
        }
        // Hooks (the attention patterns included) go through the same plan.
        let mut case = examples::forward(name, 1, 8, 7);
        perturb(&mut case, 7);
        compare(&case, &HookSelection::All);
    }
}

/// Every output and captured hook of `got` against `want`.
fn same_outputs(what: &str, got: &Outputs, want: &Outputs) {
    for (list, other, kind) in [
        (&want.outputs, &got.outputs, "output"),
        (&want.hooks, &got.hooks, "hook"),
    ] {
        assert_eq!(list.len(), other.len(), "{what}: {kind} count");
        for (name, t) in list {
            assert_close(&format!("{what} {kind} {name}"), &other[name], t);
        }
    }
}

/// `t` restricted to entries `idx` along `axis`.
fn take(t: &Tensor, axis: usize, idx: &[usize]) -> Tensor {
    let (outer, n) = (t.shape[..axis].iter().product::<usize>(), t.shape[axis]);
    let inner: usize = t.shape[axis + 1..].iter().product();
    let x = t.to_f32_vec();
    let mut out = Vec::with_capacity(outer * idx.len() * inner);
    for o in 0..outer {
        for &i in idx {
            let at = (o * n + i) * inner;
            out.extend_from_slice(&x[at..at + inner]);
        }
    }
    let mut shape = t.shape.clone();
    shape[axis] = idx.len();
    Tensor::f32(&shape, out)
}

/// Replacement runs through the fast path against the reference, on every example spec: each
/// f32 hook point replaced in turn by its value on other inputs (as path patching does) —
/// whole, at the first and last positions (a hook with a sequence axis), one head at the last
/// position (a per-head hook) — with every hook captured (a replaced hook reports its value
/// from before the replacement); a replacement the reference refuses, the fast path refuses
/// too. Then a plain run again (a different plan on the same backend) gives the plain result.
#[test]
fn replacement_runs_match_the_reference() {
    for (k, name) in examples::names().iter().enumerate() {
        let mut case = examples::forward(name, 2, 8, 11 + k as u64);
        perturb(&mut case, 200 + k as u64);
        let (fast, reference) = (FastCpuBackend::new(), CpuBackend::new());
        let all = HookSelection::All;
        let clean = reference
            .run(&case.graph, &case.inputs, &case.params, &all)
            .unwrap_or_else(|e| panic!("{name}: reference: {e}"));
        let other_inputs = examples::inputs(&case.graph, 2, 8, 500 + k as u64);
        let other = reference
            .run(&case.graph, &other_inputs, &case.params, &all)
            .unwrap_or_else(|e| panic!("{name}: reference: {e}"));
        let mut compared = 0;
        for (hook, t) in &other.hooks {
            if !matches!(t.data, TensorData::F32(_)) {
                continue;
            }
            let axes = HookAxes::of(hook);
            let mut list = vec![Intervention::replace(hook.clone(), t.clone())];
            if t.shape.len() > axes.seq && t.shape[axes.seq] >= 2 {
                let ends = [0, t.shape[axes.seq] - 1];
                let with = take(t, axes.seq, &ends);
                list.push(Intervention::at_positions(hook.clone(), &[0, -1], with));
                if let Some(h) = axes.head.filter(|&h| h < t.shape.len()) {
                    let with = take(&take(t, h, &[0]), axes.seq, &ends[1..]);
                    if let Ok(iv) =
                        Intervention::head_at_positions(hook.clone(), 0, Some(&[-1]), with)
                    {
                        list.push(iv);
                    }
                }
            }
            for iv in list {
                let one = std::slice::from_ref(&iv);
                let (g, i, p) = (&case.graph, &case.inputs, &case.params);
                match (
                    reference.run_replacing(g, i, p, &all, one),
                    fast.run_replacing(g, i, p, &all, one),
                ) {
                    (Ok(want), Ok(got)) => {
                        same_outputs(&format!("{name} replacing {hook}"), &got, &want);
                        compared += 1;
                    }
                    (Err(_), Err(_)) => {}
                    (want, got) => panic!(
                        "{name} replacing {hook}: reference {:?}, fast {:?}",
                        want.err(),
                        got.err()
                    ),
                }
            }
        }
        assert!(
            compared >= 3,
            "{name}: {compared} replacement runs compared"
        );
        let plain = fast
            .run(&case.graph, &case.inputs, &case.params, &all)
            .unwrap_or_else(|e| panic!("{name}: fast: {e}"));
        same_outputs(&format!("{name} plain after replacements"), &plain, &clean);
    }
}

#[test]
fn the_steady_state_allocates_no_activation_buffers() {
    let mut case = examples::gradient("gpt.weft", 2, 8, 5);
    perturb(&mut case, 5);
    let fast = FastCpuBackend::new();
    let run = || {
        fast.run(
            &case.graph,
            &case.inputs,
            &case.params,
            &HookSelection::None,
        )
        .expect("runs")
    };
    let first = run();
    let after_first = fast.buffers_allocated();
    assert!(after_first > 0);
    for _ in 0..3 {
        let again = run();
        assert_eq!(again, first, "a repeated run gives the same result");
    }
    assert_eq!(
        fast.buffers_allocated(),
        after_first,
        "runs after the first take every buffer from the pool"
    );
}

/// The portable loops (what a machine without AVX2 and FMA runs, or `WEFT_CPU_SIMD=portable`)
/// against the reference too: the three comparisons above again, in a child process of this
/// test binary, because the switch is read once per process.
#[test]
fn the_portable_path_matches_the_reference() {
    if std::env::var("WEFT_CPU_SIMD").is_ok() {
        return; // already the child (or a run that chose its path)
    }
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .env("WEFT_CPU_SIMD", "portable")
        .args(["--exact", "--test-threads=1"])
        .args([
            "every_op_case_matches_the_reference",
            "spec_rules_match_the_reference_forward_backward_parameter_and_pattern_gradients",
            "every_example_forward_and_gradient_matches_the_reference",
        ])
        .output()
        .expect("run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("3 passed"),
        "portable path:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
