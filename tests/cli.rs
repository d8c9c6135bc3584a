//! The `weft` binary end to end: exit codes and what reaches stdout/stderr.

use std::path::Path;
use std::process::Command;

fn weft(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("weft runs")
}

fn example_paths() -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"))
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "weft"))
            .map(|p| p.display().to_string())
            .collect();
    v.sort();
    v
}

#[test]
fn check_accepts_every_example() {
    let files = example_paths();
    assert_eq!(files.len(), 12);
    let args: Vec<&str> = std::iter::once("check")
        .chain(files.iter().map(String::as_str))
        .collect();
    let out = weft(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("12 specs checked, no errors"));
}

#[test]
fn check_reports_file_line_col_source_and_hint_and_exits_1() {
    let dir = std::env::temp_dir().join(format!("weft-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.weft");
    std::fs::write(
        &bad,
        "model m {\n  vocab = 8 dim = 8 heads = 2 layers = 1 ctx = 8\n  block b { x = x + attention(x, weights: sigend) }\n  layers { 0 => b }\n}\n",
    )
    .unwrap();
    let out = weft(&["check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.weft:3:43"), "{err}");
    assert!(err.contains("unknown weight rule `sigend`"), "{err}");
    assert!(err.contains("attention(x, weights: sigend)"), "{err}");
    assert!(err.contains("did you mean `signed`?"), "{err}");
}

#[test]
fn fmt_prints_canonical_form_and_check_flag_detects_drift() {
    let dir = std::env::temp_dir().join(format!("weft-fmt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("m.weft");
    std::fs::write(&f, "model m{vocab=8;dim=8 # width\nheads=2 layers=1 ctx=8 block b{x=x+swiglu(rms_norm(x))} layers{0=>b}}").unwrap();
    let out = weft(&["fmt", f.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("  dim = 8  # width\n"), "{text}");
    assert!(text.contains("    x = x + swiglu(rms_norm(x))\n"), "{text}");
    assert_eq!(
        weft(&["fmt", "--check", f.to_str().unwrap()]).status.code(),
        Some(1)
    );
    assert!(weft(&["fmt", "--write", f.to_str().unwrap()])
        .status
        .success());
    assert!(weft(&["fmt", "--check", f.to_str().unwrap()])
        .status
        .success());
}

#[test]
fn missing_file_is_an_error_not_a_panic() {
    let out = weft(&["check", "does/not/exist.weft"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read does/not/exist.weft"));
}

#[test]
fn every_subcommand_has_help() {
    for sub in ["check", "fmt", "compile", "params", "eval"] {
        let out = weft(&[sub, "--help"]);
        assert!(out.status.success(), "{sub}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"));
    }
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn eval_round_trips_through_saved_initial_weights() {
    let dir = tmp("eval");
    let tokens = dir.join("t.json");
    std::fs::write(&tokens, "[[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]]").unwrap();
    let (w, a, b) = (
        dir.join("w.safetensors"),
        dir.join("a.safetensors"),
        dir.join("b.safetensors"),
    );
    let s = |p: &std::path::PathBuf| p.to_str().unwrap().to_string();
    let out = weft(&[
        "eval",
        "examples/cog_attention.weft",
        "--tokens",
        &s(&tokens),
        "--out",
        &s(&a),
        "--seed",
        "3",
        "--save-init",
        &s(&w),
        "--capture",
        "layers.1.attn.pattern,layers.*.resid_post",
        "--backend",
        "cpu",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = weft(&[
        "eval",
        "examples/cog_attention.weft",
        "--tokens",
        &s(&tokens),
        "--out",
        &s(&b),
        "--weights",
        &s(&w),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fa = weft_runtime::tensor_file::load(&a).unwrap();
    let fb = weft_runtime::tensor_file::load(&b).unwrap();
    assert_eq!(fa["logits"].shape, vec![2, 6, 256]);
    assert_eq!(
        fa["logits"].to_f32_vec(),
        fb["logits"].to_f32_vec(),
        "identical logits"
    );
    assert_eq!(fa["layers.1.attn.pattern"].shape, vec![2, 4, 6, 6]);
    assert_eq!(fa.keys().filter(|k| k.ends_with("resid_post")).count(), 6);
}

#[test]
fn eval_rejects_bad_tokens_and_mismatched_weights_with_names() {
    let dir = tmp("evalbad");
    let s = |p: &std::path::PathBuf| p.to_str().unwrap().to_string();
    let ragged = dir.join("r.json");
    std::fs::write(&ragged, "[[1, 2, 3], [4, 5]]").unwrap();
    let out = weft(&[
        "eval",
        "examples/gpt.weft",
        "--tokens",
        &s(&ragged),
        "--out",
        &s(&dir.join("o")),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sequence 1 has 2 tokens"));
    let big = dir.join("big.json");
    std::fs::write(&big, "[[1, 999]]").unwrap();
    let out = weft(&[
        "eval",
        "examples/gpt.weft",
        "--tokens",
        &s(&big),
        "--out",
        &s(&dir.join("o")),
    ]);
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("token 999 at [0][1] is outside the vocabulary 0 .. 256"));
    // Weights of another model: the first missing tensor is named with its shape.
    let ok = dir.join("ok.json");
    std::fs::write(&ok, "[[1, 2]]").unwrap();
    let w = dir.join("w.safetensors");
    assert!(weft(&[
        "eval",
        "examples/mom.weft",
        "--tokens",
        &s(&ok),
        "--out",
        &s(&dir.join("o")),
        "--save-init",
        &s(&w)
    ])
    .status
    .success());
    let out = weft(&[
        "eval",
        "examples/gpt.weft",
        "--tokens",
        &s(&ok),
        "--out",
        &s(&dir.join("o")),
        "--weights",
        &s(&w),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "w.safetensors: missing tensor `layers.0.mlp.w_gate` (expected shape [128, 512])"
        ),
        "{err}"
    );
}

#[test]
fn compile_prints_ir_and_params_lists_totals() {
    let out = weft(&["compile", "examples/gpt.weft", "--seq", "8"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ir = String::from_utf8_lossy(&out.stdout);
    assert!(
        ir.contains("attention") && ir.contains("layers.3.resid_post"),
        "{ir}"
    );
    let out = weft(&["params", "examples/pear.weft"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("layers.0.attn.gain") && text.contains("[4]"),
        "{text}"
    );
    // PEAR trains only the gains: 4 layers × 4 heads.
    assert!(text.contains(" 16 trainable"), "{text}");
}

#[test]
fn compile_writes_kernels_with_a_manifest_as_wgsl_and_spirv() {
    for (emit, ext) in [("wgsl", "wgsl"), ("spirv", "spv")] {
        let dir = tmp(&format!("emit-{emit}"));
        let _ = std::fs::remove_dir_all(&dir);
        let d = dir.display().to_string();
        let args = [
            "compile",
            "examples/gpt.weft",
            "--emit",
            emit,
            &d,
            "--batch",
            "2",
            "--seq",
            "16",
            "--grad",
        ];
        let out = weft(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap())
                .unwrap();
        let kernels = manifest["kernels"].as_array().unwrap();
        assert!(kernels.len() > 20, "{} kernels", kernels.len());
        for k in kernels {
            let file = k["file"].as_str().unwrap();
            assert!(file.ends_with(ext), "{file}");
            let bytes = std::fs::read(dir.join(file)).unwrap();
            match emit {
                // SPIR-V's magic number, little-endian.
                "spirv" => assert_eq!(bytes[..4], 0x0723_0203u32.to_le_bytes(), "{file}"),
                _ => assert!(
                    String::from_utf8(bytes).unwrap().contains("@compute"),
                    "{file}"
                ),
            }
            assert!(k["workgroup_size"].as_u64().unwrap() > 0);
            assert_eq!(k["dispatch"].as_array().unwrap().len(), 3);
            assert!(!k["outputs"].as_array().unwrap().is_empty(), "{k}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    // Without a directory it says what is missing.
    let out = weft(&["compile", "examples/gpt.weft", "--emit", "wgsl"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("give a directory"));
}

/// The GPT-2-small-sized spec `benchmarks/gpu.sh` times checks like the examples do.
#[test]
fn check_accepts_the_gpt2_small_spec() {
    let out = weft(&["check", "examples/scale/gpt2_small.weft"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `weft train --backend wgpu` trains on the device and says in each train line how many
/// bytes a step moved between host and device (skipped without an adapter unless
/// `WEFT_REQUIRE_GPU=1`).
#[test]
fn wgpu_train_lines_carry_host_device_bytes() {
    let dir = std::env::temp_dir().join(format!("weft-cli-wgpu-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let spec = dir.join("tiny.weft");
    std::fs::write(
        &spec,
        "model m {\n  vocab = 16\n  dim = 16\n  heads = 2\n  layers = 1\n  ctx = 16\n  block b {\n    x = x + attention(rms_norm(x))\n  }\n  layers {\n    0 => b\n  }\n}\ntrain {\n  data = copy_task(len: 4)\n  steps = 3\n  seq = 8\n  batch = 2\n  log_every = 1\n}\n",
    )
    .unwrap();
    let run = dir.join("run");
    let out = weft(&[
        "train",
        spec.to_str().unwrap(),
        "--backend",
        "wgpu",
        "--steps",
        "3",
        "--out",
        run.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && err.contains("no GPU adapter") {
        assert_ne!(
            std::env::var("WEFT_REQUIRE_GPU").as_deref(),
            Ok("1"),
            "WEFT_REQUIRE_GPU=1 but: {err}"
        );
        eprintln!("skipped: {err}");
        return;
    }
    assert!(out.status.success(), "{err}");
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let train: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["kind"] == "train")
        .collect();
    assert_eq!(train.len(), 3, "{metrics}");
    for l in &train {
        // Tokens and targets, i32, 2×8 each, plus step scalars and the loss and norm.
        let bytes = l["host_device_bytes"].as_f64().expect("host_device_bytes");
        assert!((128.0..4096.0).contains(&bytes), "{l}");
    }
}

#[test]
fn bench_times_every_cpu_row_and_writes_its_table() {
    let dir = std::env::temp_dir().join(format!("weft-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let table = dir.join("bench.md");
    let out = weft(&[
        "bench",
        "--backend",
        "cpu",
        "--sizes",
        "16",
        "--runs",
        "2",
        "--out",
        table.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = std::fs::read_to_string(&table).unwrap();
    assert!(doc.contains("median of 2 runs"), "{doc}");
    // Every attention rule, forward and forward + backward, on both CPU backends, each with
    // a positive time.
    for kernel in ["attention_fwd", "attention_fwd_bwd"] {
        for rule in ["softmax", "signed", "alibi", "softcap"] {
            for backend in ["cpu", "cpu-ref"] {
                let row = doc
                    .lines()
                    .find(|l| {
                        l.starts_with(&format!("| {kernel} |"))
                            && l.contains(&format!("T16 d64 {rule} |"))
                            && l.contains(&format!("| {backend} |"))
                    })
                    .unwrap_or_else(|| panic!("no row {kernel} {rule} {backend} in\n{doc}"));
                let ms: f64 = row
                    .split('|')
                    .nth(4)
                    .unwrap()
                    .trim()
                    .trim_end_matches(" ms")
                    .parse()
                    .unwrap();
                assert!(ms > 0.0, "{row}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
