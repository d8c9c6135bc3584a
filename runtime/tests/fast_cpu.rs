//! The fast CPU path (`FastCpuBackend`, what `--backend cpu` trains with) against the
//! op-by-op reference (`CpuBackend`): every op test graph, and every example spec's forward
//! and gradient graphs, on random parameters and inputs, within 1e-5 relative. Also: a
//! repeated run reuses its buffers (no allocation in the steady state) and gives the same
//! result again.

#[allow(dead_code)]
#[path = "wgpu_support/examples.rs"]
mod examples;
#[allow(dead_code)]
#[path = "wgpu_support/graphs.rs"]
mod graphs;

use graphs::Case;
use weft_compiler::ir::AttentionMask;
use weft_runtime::{Backend, CpuBackend, FastCpuBackend, HookSelection, Rng, Tensor, TensorData};

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
        for (name, t) in &want.outputs {
            assert_close(
                &format!("{} pass {pass} {name}", case.name),
                &got.outputs[name],
                t,
            );
        }
        for (name, t) in &want.hooks {
            assert_close(
                &format!("{} pass {pass} hook {name}", case.name),
                &got.hooks[name],
                t,
            );
        }
        assert_eq!(got.outputs.len(), want.outputs.len());
        assert_eq!(got.hooks.len(), want.hooks.len());
    }
}

#[test]
fn every_op_case_matches_the_reference() {
    for case in graphs::all_cases() {
        compare(&case, &HookSelection::None);
    }
}

#[test]
fn spec_rules_match_the_reference_forward_backward_and_parameter_gradients() {
    // T = 70: two query blocks and a partial one; head size 5; segments for `doc_bias`.
    for name in graphs::SPEC_RULE_NAMES {
        for mask in ["causal", "bidirectional"] {
            let rule = graphs::lowered_rule(name, mask);
            let what = format!("{name}/{mask}");
            compare(
                &graphs::attention_rule_shaped(&what, &rule, [2, 3, 70, 5]),
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
            "spec_rules_match_the_reference_forward_backward_and_parameter_gradients",
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
