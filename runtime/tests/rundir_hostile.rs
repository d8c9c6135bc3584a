//! Every file of a real run directory, damaged (emptied, truncated, overwritten in the
//! middle, replaced by a megabyte of garbage, given an enormous safetensors header length),
//! never panics the code that reads it back — resuming, loading checkpoints, reading traces
//! and metrics — and every error names the damaged file.

mod rundir_support;

use std::path::{Path, PathBuf};
use weft_runtime::checkpoint::{self, Expect};
use weft_runtime::rundir::{read_metrics, read_trace};
use weft_runtime::train::{train, TrainOptions, TrainReport};
use weft_runtime::CpuBackend;

const SPEC: &str = rundir_support::TINY_SPEC;

fn tmpdir(name: &str) -> PathBuf {
    rundir_support::tmpdir("hostile", name)
}

fn resume(out: &Path, steps: u64) -> Result<TrainReport, String> {
    let spec = weft_dsl::check_source(SPEC).unwrap();
    let mut on_log = |_: &_, _: u64| {};
    train(
        &spec,
        SPEC,
        &CpuBackend::new(),
        TrainOptions {
            out: out.to_path_buf(),
            spec_dir: PathBuf::from("."),
            steps: Some(steps),
            seed: Some(2),
            resume: true,
            stop: None,
            init: None,
            on_log: &mut on_log,
        },
    )
    .map_err(|e| e.to_string())
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn copy_dir(from: &Path, to: &Path) {
    for f in files(from) {
        let rel = f.strip_prefix(from).unwrap();
        std::fs::create_dir_all(to.join(rel).parent().unwrap()).unwrap();
        std::fs::copy(&f, to.join(rel)).unwrap();
    }
}

/// Ways to damage a file's bytes.
fn damage(kind: usize, bytes: &[u8]) -> Vec<u8> {
    match kind {
        0 => Vec::new(),
        1 => bytes[..bytes.len() / 2].to_vec(),
        2 => {
            let mut b = bytes.to_vec();
            let mid = b.len() / 2;
            let end = (mid + 16).min(b.len());
            b[mid..end].fill(0xFF);
            b
        }
        3 => (0..1 << 20).map(|i| (i * 7 + 3) as u8).collect(),
        // An enormous safetensors header length (or first 8 bytes of any file).
        _ => {
            let mut b = bytes.to_vec();
            if b.len() >= 8 {
                b[..8].copy_from_slice(&(u64::MAX - 7).to_le_bytes());
            }
            b
        }
    }
}

#[test]
fn damaged_files_give_errors_naming_them_never_panics() {
    let base = tmpdir("base");
    // Resuming where nothing was saved fails, and leaves nothing that blocks a fresh run.
    let msg = resume(&base, 4).unwrap_err();
    assert!(msg.contains("latest"), "{msg}");
    let spec = weft_dsl::check_source(SPEC).unwrap();
    let mut on_log = |_: &_, _: u64| {};
    train(
        &spec,
        SPEC,
        &CpuBackend::new(),
        TrainOptions {
            out: base.clone(),
            spec_dir: PathBuf::from("."),
            steps: None,
            seed: Some(2),
            resume: false,
            stop: None,
            init: None,
            on_log: &mut on_log,
        },
    )
    .unwrap();
    let all = files(&base);
    assert!(all.iter().any(|f| f.ends_with("checkpoints/latest")));
    assert!(all.iter().any(|f| f.to_string_lossy().contains("traces/")));
    let mut checked = 0;
    for (i, f) in all.iter().enumerate() {
        let rel = f.strip_prefix(&base).unwrap().to_path_buf();
        let name = rel.file_name().unwrap().to_string_lossy().into_owned();
        for kind in 0..5 {
            let dir = tmpdir(&format!("case{i}-{kind}"));
            copy_dir(&base, &dir);
            let target = dir.join(&rel);
            std::fs::write(&target, damage(kind, &std::fs::read(f).unwrap())).unwrap();
            let what = format!("{} damaged by {kind}", rel.display());
            // Readers of this file alone.
            let direct: Option<String> = if name.ends_with(".safetensors")
                && rel.starts_with("checkpoints")
            {
                let r = std::panic::catch_unwind(|| checkpoint::load(&target, &Expect::default()));
                let r = r.unwrap_or_else(|_| panic!("{what}: load panicked"));
                r.err().map(|e| e.to_string())
            } else if name.ends_with(".safetensors") {
                let r = std::panic::catch_unwind(|| read_trace(&target));
                let r = r.unwrap_or_else(|_| panic!("{what}: read_trace panicked"));
                r.err().map(|e| e.to_string())
            } else if name.ends_with(".jsonl") {
                let r = std::panic::catch_unwind(|| read_metrics(&target));
                r.unwrap_or_else(|_| panic!("{what}: read_metrics panicked"))
                    .expect("unparsable lines are skipped");
                None
            } else {
                None
            };
            if let Some(msg) = direct {
                assert!(
                    msg.contains(&name),
                    "{what}: error does not name the file: {msg}"
                );
            }
            // Resuming the whole directory.
            let r = std::panic::catch_unwind(|| resume(&dir, 6));
            match r.unwrap_or_else(|_| panic!("{what}: resume panicked")) {
                Ok(rep) => {
                    // Only files resuming does not read may be damaged and still resume.
                    let needed = name == "latest"
                        || (rel.starts_with("checkpoints") && name.contains("00000004"));
                    assert!(!needed, "{what}: resumed from a damaged file");
                    assert_eq!(rep.steps_done, 6, "{what}");
                }
                Err(msg) => {
                    assert!(
                        msg.contains(&name) || msg.contains("checkpoints"),
                        "{what}: the resume error does not name the file: {msg}"
                    );
                }
            }
            checked += 1;
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
    assert!(checked >= 30, "{checked} cases");
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_damaged_latest_checkpoint_names_the_older_ones_to_fall_back_on() {
    let out = tmpdir("fallback");
    let spec = weft_dsl::check_source(SPEC).unwrap();
    let mut on_log = |_: &_, _: u64| {};
    train(
        &spec,
        SPEC,
        &CpuBackend::new(),
        TrainOptions {
            out: out.clone(),
            spec_dir: PathBuf::from("."),
            steps: None,
            seed: Some(2),
            resume: false,
            stop: None,
            init: None,
            on_log: &mut on_log,
        },
    )
    .unwrap();
    let latest = out.join("checkpoints/step-00000004.safetensors");
    let bytes = std::fs::read(&latest).unwrap();
    std::fs::write(&latest, &bytes[..bytes.len() - 100]).unwrap();
    let msg = resume(&out, 6).unwrap_err();
    assert!(
        msg.contains("step-00000004.safetensors") && msg.contains("truncated"),
        "{msg}"
    );
    assert!(
        msg.contains("step-00000003.safetensors"),
        "names a loadable older one: {msg}"
    );
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn damaged_weights_and_tokenizer_files_name_the_file() {
    use std::collections::BTreeMap;
    use weft_runtime::data::{TextData, Tokenizer};
    use weft_runtime::{tensor_file, Tensor};
    let dir = tmpdir("inputs");
    std::fs::create_dir_all(&dir).unwrap();
    // Weights (`--init`, `--weights`, `--replace`): safetensors written by weft.
    let w = dir.join("weights.safetensors");
    let tensors = BTreeMap::from([
        (
            "a".to_string(),
            Tensor::f32(&[2, 3], vec![1.0, -2.0, 3.5, 0.0, 1e-3, 7.0]),
        ),
        ("b".to_string(), Tensor::i32(&[4], vec![1, 2, 3, 4])),
    ]);
    tensor_file::save(&w, &tensors).unwrap();
    let good = std::fs::read(&w).unwrap();
    for kind in 0..5 {
        std::fs::write(&w, damage(kind, &good)).unwrap();
        let r = std::panic::catch_unwind(|| tensor_file::load(&w));
        let msg = r
            .unwrap_or_else(|_| panic!("weights damaged by {kind}: load panicked"))
            .expect_err("damaged weights load")
            .to_string();
        assert!(msg.contains("weights.safetensors"), "damage {kind}: {msg}");
    }
    // A HF tokenizer.json (text data, `--tokenizer`).
    let tok = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,
        "pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
        "model":{"type":"WordLevel","vocab":{"<unk>":0,"the":1,"cat":2,"sat":3},"unk_token":"<unk>"}}"#;
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, tok).unwrap();
    let text = dir.join("c.txt");
    std::fs::write(&text, "the cat sat the cat sat the cat").unwrap();
    // The tokenizer is read when the text is loaded with it.
    let load = || {
        let t = Tokenizer::from_name("tokenizer.json", &dir)?;
        TextData::load(&text, t, None, 0.0, 8, 0)
    };
    load().unwrap();
    let wrong = [
        tok.replace(r#""type":"WordLevel""#, r#""type":"NoSuchModel""#),
        tok.replace(r#""sat":3"#, r#""sat":99999999999999999999999"#),
        tok.replace(r#""sat":3"#, r#""sat":"three""#),
    ];
    for (kind, bytes) in (0..5)
        .map(|k| damage(k, tok.as_bytes()))
        .chain(wrong.iter().map(|s| s.as_bytes().to_vec()))
        .enumerate()
    {
        std::fs::write(&path, &bytes).unwrap();
        let r = std::panic::catch_unwind(load);
        let msg = r
            .unwrap_or_else(|_| panic!("tokenizer damaged by {kind}: panicked"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_else(|| panic!("tokenizer damaged by {kind}: accepted"));
        assert!(msg.contains("tokenizer.json"), "damage {kind}: {msg}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
