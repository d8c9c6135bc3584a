//! Device-resident training on wgpu (`weft_runtime::resident`): parameters, gradients and
//! optimizer state stay on the device, so a steady-state step moves only the batch and a few
//! scalars; the curve matches the CPU backend's; a resumed run repeats an uninterrupted one
//! bit for bit; a NaN loss skips the update; the optimizer kernels pass naga.

mod wgpu_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use weft_runtime::rundir::{read_metrics, StepMetrics};
use weft_runtime::train::{train, TrainOptions, TrainReport};
use weft_runtime::{Backend, FastCpuBackend, ParamStore};
use wgpu_support::gpu_or_skip;

fn examples() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples"))
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weft-wgpu-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// `file` from examples/ with model settings replaced, the train settings `train` set (or
/// removed where `None`), its `eval` probes dropped and a metrics line every step.
fn spec_text(file: &str, model: &[(&str, i64)], train: &[(&str, Option<i64>)]) -> String {
    let src = std::fs::read_to_string(examples().join(file)).unwrap();
    // Every named setting is removed, then the given ones written: a spec need not have
    // written them (`seq` defaults to `ctx`).
    let mut drop: Vec<(&str, Option<i64>)> = train.iter().map(|(k, _)| (*k, None)).collect();
    drop.extend([("eval", None), ("log_every", None), ("eval_every", None)]);
    let text = weft_dsl::edit::with_settings(&src, model, &drop)
        .unwrap_or_else(|e| panic!("{file}: {e:?}"));
    let mut set = String::from("train {\n  log_every = 1\n  eval_every = 100000");
    for (k, v) in train {
        if let Some(v) = v {
            set.push_str(&format!("\n  {k} = {v}"));
        }
    }
    text.replacen("train {", &set, 1)
}

/// Trains `src` for `steps` into `out` on `backend`; `stop_at` stops (with a checkpoint)
/// after that step, as Ctrl-C would.
fn run(
    src: &str,
    backend: &dyn Backend,
    out: &Path,
    steps: u64,
    resume: bool,
    stop_at: Option<u64>,
) -> TrainReport {
    let spec = weft_dsl::check_source(src).unwrap_or_else(|e| panic!("{e:?}\n{src}"));
    let stop = AtomicBool::new(false);
    let mut on_log = |m: &StepMetrics, _: u64| {
        if Some(m.step) == stop_at {
            stop.store(true, Ordering::SeqCst);
        }
    };
    let opts = TrainOptions {
        out: out.to_path_buf(),
        spec_dir: examples(),
        steps: Some(steps),
        seed: Some(5),
        resume,
        stop: Some(&stop),
        init: None,
        on_log: &mut on_log,
    };
    train(&spec, src, backend, opts).unwrap_or_else(|e| panic!("{}: {e}", out.display()))
}

fn train_lines(out: &Path) -> Vec<serde_json::Value> {
    read_metrics(&out.join("metrics.jsonl"))
        .unwrap()
        .into_iter()
        .filter(|m| m["kind"] == "train")
        .collect()
}

fn bits(p: &ParamStore) -> BTreeMap<String, Vec<u32>> {
    p.iter()
        .map(|(k, t)| {
            (
                k.clone(),
                t.to_f32_vec().iter().map(|x| x.to_bits()).collect(),
            )
        })
        .collect()
}

#[test]
fn optimizer_kernels_pass_naga() {
    for (name, _) in weft_runtime::wgpu::resident::KERNELS {
        weft_runtime::wgpu::resident::kernel_source(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// gpt.weft at its own width (about 0.8M parameters, 3 MB: far more than the allowance, so
/// uploading the weights or reading the gradients back in any step fails this), on a small
/// batch.
#[test]
fn a_steady_state_gpt_step_moves_only_the_batch() {
    let Some(gpu) = gpu_or_skip() else { return };
    let (batch, seq) = (2usize, 32usize);
    let src = spec_text(
        "gpt.weft",
        &[],
        &[("batch", Some(batch as i64)), ("seq", Some(seq as i64))],
    );
    let out = tmpdir("bytes");
    run(&src, gpu, &out, 4, false, None);
    let lines = train_lines(&out);
    assert_eq!(lines.len(), 4, "one train line per step");
    // Token ids and targets, i32 each.
    let batch_bytes = (2 * batch * seq * 4) as f64;
    for l in &lines {
        let moved = l["host_device_bytes"]
            .as_f64()
            .unwrap_or_else(|| panic!("no host_device_bytes in {l}"));
        eprintln!("step {}: {moved} bytes", l["step"]);
        assert!(
            moved >= batch_bytes,
            "{moved} bytes: less than the batch itself"
        );
        if l["step"].as_u64() > Some(1) {
            assert!(
                moved <= batch_bytes + 65536.0,
                "step {} moved {moved} bytes, more than the batch ({batch_bytes}) + 64 KiB",
                l["step"]
            );
        }
        assert!(l["host_device_bytes_other"].as_u64().is_some(), "{l}");
    }
}

/// The trained curve of every example spec (shrunk: dim 16, two layers where the schedule
/// allows, batch 2, seq 32, shorter task samples) on wgpu equals
/// the CPU backend's after 20 steps within float noise (the device updates in f32, the host
/// in f64).
#[test]
fn every_example_trains_on_wgpu_like_on_the_cpu() {
    let Some(gpu) = gpu_or_skip() else { return };
    let mut failures = Vec::new();
    for file in wgpu_support::examples::names() {
        let train = [("batch", Some(2)), ("seq", Some(32)), ("accumulate", None)];
        // Two layers where the spec's layer schedule allows it (fewer kernels to build).
        let two = spec_text(&file, &[("dim", 16), ("layers", 2)], &train);
        let src = if weft_dsl::check_source(&two).is_ok() {
            two
        } else {
            spec_text(&file, &[("dim", 16)], &train)
        };
        // Tasks whose samples are longer than 16 tokens, shortened.
        let src = src
            .replace(
                "kv_recall(pairs: 8, len: 128)",
                "kv_recall(pairs: 4, len: 16)",
            )
            .replace(
                "kv_recall(pairs: 16, len: 256)",
                "kv_recall(pairs: 4, len: 16)",
            )
            .replace("copy_task(len: 50)", "copy_task(len: 16)");
        let name = file.trim_end_matches(".weft");
        let cpu_out = tmpdir(&format!("{name}-cpu"));
        let cpu = run(&src, &FastCpuBackend::new(), &cpu_out, 20, false, None);
        let out = tmpdir(&format!("{name}-wgpu"));
        let dev = run(&src, gpu, &out, 20, false, None);
        let losses = |l: &[serde_json::Value]| -> Vec<f64> {
            l.iter()
                .map(|m| m["loss"].as_f64().unwrap_or(f64::NAN))
                .collect()
        };
        let cpu_curve = losses(&train_lines(&cpu_out));
        let dev_curve = losses(&train_lines(&out));
        let rel = (dev.final_loss - cpu.final_loss).abs() / cpu.final_loss.abs().max(1e-6);
        eprintln!(
            "{name}: loss after 20 steps cpu {:.6} wgpu {:.6} (rel {rel:.2e}); first cpu {:.6} wgpu {:.6}",
            cpu.final_loss, dev.final_loss, cpu_curve[0], dev_curve[0]
        );
        // NaN fails too.
        if rel.is_nan() || rel > 2e-3 || cpu_curve.len() != dev_curve.len() {
            failures.push(format!(
                "{name}: cpu {} vs wgpu {}",
                cpu.final_loss, dev.final_loss
            ));
        }
        // The run learned something on both (not a no-op update).
        assert!(
            cpu_curve[0] != cpu.final_loss,
            "{name}: the loss never moved"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Stopped after step 3 (checkpoint) and resumed to 6, a wgpu run ends with the weights of
/// one that ran 6 steps straight, bit for bit; with SGD + momentum and two micro-batches
/// too (the accumulation and SGD kernels).
#[test]
fn a_resumed_wgpu_run_repeats_an_uninterrupted_one_bit_for_bit() {
    let Some(gpu) = gpu_or_skip() else { return };
    let adamw = spec_text(
        "gpt.weft",
        &[("dim", 32), ("layers", 2)],
        &[("batch", Some(2)), ("seq", Some(16))],
    );
    let sgd = adamw.replace(
        "optimizer = adamw(lr: 3e-3, betas: [0.9, 0.95], weight_decay: 0.1)",
        "optimizer = sgd(lr: 0.05, momentum: 0.9, weight_decay: 0.01)\n  accumulate = 2",
    );
    assert_ne!(sgd, adamw, "the optimizer line moved");
    for (what, src) in [("adamw", &adamw), ("sgd", &sgd)] {
        let straight = run(
            src,
            gpu,
            &tmpdir(&format!("{what}-straight")),
            6,
            false,
            None,
        );
        let out = tmpdir(&format!("{what}-resumed"));
        let first = run(src, gpu, &out, 6, false, Some(3));
        assert!(
            first.interrupted && first.steps_done == 3,
            "{what}: {first:?}"
        );
        let resumed = run(src, gpu, &out, 6, true, None);
        assert_eq!(resumed.steps_done, 6);
        assert_eq!(
            bits(&resumed.params),
            bits(&straight.params),
            "{what}: resumed weights differ"
        );
        assert_eq!(
            resumed.final_loss.to_bits(),
            straight.final_loss.to_bits(),
            "{what}"
        );
        // And the device run follows the host optimizer's curve.
        let cpu = run(
            src,
            &FastCpuBackend::new(),
            &tmpdir(&format!("{what}-cpu")),
            6,
            false,
            None,
        );
        let rel = (cpu.final_loss - straight.final_loss).abs() / cpu.final_loss.abs();
        assert!(
            rel < 1e-3,
            "{what}: cpu {} vs wgpu {}",
            cpu.final_loss,
            straight.final_loss
        );
    }
}

/// `examples/scale/gpt2_small.weft` (what `benchmarks/gpu.sh` times) checks, and has GPT-2
/// small's size: 12 layers of width 768, 124M parameters with the tied 50304-row embedding.
#[test]
fn the_gpt2_small_spec_checks_at_gpt2_small_size() {
    let path = examples().join("scale/gpt2_small.weft");
    let src = std::fs::read_to_string(&path).unwrap();
    let spec = weft_dsl::check_source(&src).unwrap_or_else(|e| panic!("{e:?}"));
    let g =
        weft_compiler::lower::lower(&spec, &weft_compiler::lower::LowerOptions::new(1, 8)).unwrap();
    let count: usize = g
        .params
        .iter()
        .map(|p| p.shape.iter().product::<usize>())
        .sum();
    eprintln!("gpt2_small: {count} parameters");
    assert!(
        (123_000_000..126_000_000).contains(&count),
        "{count} parameters"
    );
    let (m, t) = (&spec.model.config, spec.train.as_ref().unwrap());
    assert_eq!((m.layers, m.dim, m.heads, m.ctx), (12, 768, 12, 1024));
    assert_eq!(t.seq, 1024);
}

/// A loss that is NaN while every gradient is finite (the NaN sits in a term without a
/// gradient): the step skips the update like a non-finite gradient norm, so the parameters
/// read back are the ones that produced the NaN (what the trainer's NaN locator reruns).
#[test]
fn a_nan_loss_with_finite_gradients_leaves_the_parameters_alone() {
    use weft_compiler::ir::{DType, GraphBuilder, Init, UnaryOp};
    use weft_runtime::optim::{AdamW, Optimizer, OptimizerConfig};
    use weft_runtime::resident::ResidentSetup;
    use weft_runtime::Tensor;
    let Some(gpu) = gpu_or_skip() else { return };
    let mut b = GraphBuilder::new();
    let x = b.input("x", &[4, 3], DType::F32);
    let bad = b.input("bad", &[1], DType::F32);
    let w = b.param("w", &[3, 2], Init::Normal { std: 0.5 }, true);
    let y = b.matmul(x, w).unwrap();
    let flat = b.reshape(y, &[8]).unwrap();
    let fit = b.sum(flat, 0, false).unwrap();
    let nan = b.unary(UnaryOp::Log, bad).unwrap();
    let nan = b.stop_gradient(nan).unwrap();
    let nan = b.sum(nan, 0, false).unwrap();
    let loss = b.add(fit, nan).unwrap();
    b.output("loss", loss);
    let g = b.finish().unwrap();
    let params = weft_runtime::init_params(&g, 3);
    let step = weft_compiler::pipeline::backward(&g, loss).unwrap();
    let optimizer = Optimizer::new(OptimizerConfig::Adamw(AdamW::default()));
    let trainable = vec!["w".to_string()];
    let setup = ResidentSetup {
        params: &params,
        optimizer: &optimizer,
        trainable: &trainable,
        clip: 1.0,
        accumulate: 1,
    };
    let mut r = gpu
        .resident_trainer(&step, &setup)
        .expect("wgpu trains on the device")
        .expect("a resident trainer");
    let feeds = std::collections::HashMap::from([
        (
            "x".to_string(),
            Tensor::f32(&[4, 3], (0..12).map(|i| i as f32 * 0.1).collect()),
        ),
        ("bad".to_string(), Tensor::f32(&[1], vec![-1.0])),
    ]);
    let out = r.step(std::slice::from_ref(&feeds), 1e-2).expect("a step");
    assert!(out.outputs[0]["loss"].is_nan(), "{out:?}");
    assert!(!out.grad_norm.is_finite(), "{out:?}");
    assert_eq!(
        bits(&r.params().unwrap()),
        bits(&params),
        "the update was skipped"
    );
    // The same step with a finite loss does update them.
    let mut fine = feeds;
    fine.insert("bad".into(), Tensor::f32(&[1], vec![1.0]));
    let out = r.step(&[fine], 1e-2).expect("a step");
    assert!(out.grad_norm.is_finite() && out.outputs[0]["loss"].is_finite());
    assert_ne!(bits(&r.params().unwrap()), bits(&params));
}
