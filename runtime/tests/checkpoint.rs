//! Checkpoints: bit-exact round trips, refusal of damaged or foreign files with errors that
//! say what is wrong, and crash safety of the `latest` pointer under SIGKILL.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use weft_runtime::checkpoint::{
    self, load, read_meta, save, spec_hash, CheckpointDir, CheckpointMeta, Expect, Problem,
};
use weft_runtime::optim::{AdamW, Gradients, Optimizer, OptimizerConfig, Schedule};
use weft_runtime::{ParamStore, Rng, Tensor};

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weft-ckpt-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn params(seed: u64, scale: usize) -> ParamStore {
    let mut rng = Rng::new(seed);
    let mut p = ParamStore::new();
    for (name, shape) in [
        ("embed.weight", vec![16 * scale, 8]),
        ("layers.0.attn.wq", vec![8, 8]),
        ("final_norm.scale", vec![8]),
    ] {
        let n = shape.iter().product();
        p.insert(
            name.into(),
            Tensor::f32(&shape, (0..n).map(|_| rng.normal() as f32).collect()),
        );
    }
    // Values a lossy writer would mangle.
    p.get_mut("final_norm.scale").unwrap().data = weft_runtime::TensorData::F32(vec![
        f32::NAN,
        -0.0,
        f32::INFINITY,
        1e-45,
        f32::MAX,
        1.0,
        -1.0,
        0.1,
    ]);
    p
}

fn trained_optimizer(p: &mut ParamStore) -> Optimizer {
    let mut opt = Optimizer::new(OptimizerConfig::Adamw(AdamW::default()));
    let mut g = Gradients::new();
    for (n, t) in p.iter() {
        g.insert(n.clone(), Tensor::f32(&t.shape, vec![0.25; t.numel()]));
    }
    g.retain(|n| n != "final_norm.scale");
    opt.step(p, &g, 1e-3).unwrap();
    opt.step(p, &g, 1e-3).unwrap();
    opt
}

fn meta(step: u64) -> CheckpointMeta {
    let mut m = CheckpointMeta::new(spec_hash("model a {}"), step);
    m.tokens_seen = step * 4096;
    m.optimizer = Some(OptimizerConfig::Adamw(AdamW::default()));
    m.optimizer_step = 2;
    m.schedule = Some(Schedule::Cosine {
        warmup: 10,
        floor: 0.1,
    });
    m.seed = 42;
    m.data.step = step;
    m.data.samples = step * 16;
    m.extra.insert("note".into(), "hello".into());
    m
}

fn bits(p: &ParamStore) -> BTreeMap<String, (Vec<usize>, Vec<u32>)> {
    p.iter()
        .map(|(k, t)| {
            (
                k.clone(),
                (
                    t.shape.clone(),
                    t.as_f32().unwrap().iter().map(|x| x.to_bits()).collect(),
                ),
            )
        })
        .collect()
}

fn expect_shapes(p: &ParamStore) -> BTreeMap<String, Vec<usize>> {
    p.iter()
        .map(|(k, t)| (k.clone(), t.shape.clone()))
        .collect()
}

#[test]
fn round_trip_is_bit_exact_with_optimizer_state_and_metadata() {
    let dir = tmpdir("roundtrip");
    let mut p = params(1, 1);
    let opt = trained_optimizer(&mut p);
    let path = dir.join("a.safetensors");
    save(&path, &meta(7), &p, Some(opt.state())).unwrap();
    let expect = Expect {
        spec_hash: Some(spec_hash("model a {}")),
        params: Some(expect_shapes(&p)),
    };
    let c = load(&path, &expect).unwrap();
    assert_eq!(bits(&c.params), bits(&p));
    assert_eq!(c.meta, meta(7));
    assert_eq!(c.optimizer.step, 2);
    assert_eq!(c.optimizer.m, opt.state().m);
    assert_eq!(c.optimizer.v, opt.state().v);
    assert!(
        c.optimizer.m.contains_key("embed.weight")
            && !c.optimizer.m.contains_key("final_norm.scale")
    );
    assert_eq!(read_meta(&path).unwrap().step, 7);
    // The header carries `format: pt` and the metadata JSON, as documented.
    let bytes = std::fs::read(&path).unwrap();
    let (_, md) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let md = md.metadata().clone().unwrap();
    assert_eq!(md["format"], "pt");
    let j: serde_json::Value = serde_json::from_str(&md[checkpoint::META_KEY]).unwrap();
    assert_eq!(j["format"], checkpoint::FORMAT);
    assert_eq!(j["optimizer"]["kind"], "adamw");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn damaged_or_foreign_files_are_refused_with_the_reason() {
    let dir = tmpdir("damaged");
    let p = params(2, 1);
    let path = dir.join("good.safetensors");
    save(&path, &meta(1), &p, None).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let any = Expect::default();
    let msg = |path: &Path| load(path, &any).unwrap_err().to_string();

    // Truncated in the data, and inside the header.
    let cut = dir.join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    let e = load(&cut, &any).unwrap_err();
    assert!(matches!(e.problem, Problem::Truncated { .. }), "{e}");
    let m = e.to_string();
    assert!(
        m.contains("cut.safetensors") && m.contains("truncated"),
        "{m}"
    );
    std::fs::write(&cut, &bytes[..20]).unwrap();
    assert!(msg(&cut).contains("truncated"), "{}", msg(&cut));

    // Not safetensors at all.
    let junk = dir.join("junk.safetensors");
    std::fs::write(&junk, b"hello").unwrap();
    assert!(
        msg(&junk).contains("not a safetensors file"),
        "{}",
        msg(&junk)
    );
    std::fs::write(&junk, b"#!/bin/sh\necho this is a shell script\n").unwrap();
    assert!(
        msg(&junk).contains("not a safetensors file"),
        "{}",
        msg(&junk)
    );

    // A header that lies about a tensor's size (shape says 4×4, offsets cover 2×2... of f32).
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
    let lie = header.replacen("\"shape\":[8,8]", "\"shape\":[8,9]", 1);
    assert_ne!(lie, header);
    let mut lying = (lie.len() as u64).to_le_bytes().to_vec();
    lying.extend_from_slice(lie.as_bytes());
    lying.extend_from_slice(&bytes[8 + n..]);
    let liar = dir.join("liar.safetensors");
    std::fs::write(&liar, &lying).unwrap();
    let e = load(&liar, &any).unwrap_err();
    assert!(matches!(e.problem, Problem::BadHeader(_)), "{e}");

    // Another spec: both hashes shown.
    let other = Expect {
        spec_hash: Some(spec_hash("model b {}")),
        ..Default::default()
    };
    let m = load(&path, &other).unwrap_err().to_string();
    assert!(
        m.contains(&spec_hash("model a {}")) && m.contains(&spec_hash("model b {}")),
        "{m}"
    );

    // Missing and misshapen tensors: name, expected and found shape.
    let mut want = expect_shapes(&p);
    want.insert("unembed.weight".into(), vec![8, 16]);
    let e = load(
        &path,
        &Expect {
            params: Some(want),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("unembed.weight") && e.to_string().contains("[8, 16]"),
        "{e}"
    );
    let mut want = expect_shapes(&p);
    want.insert("layers.0.attn.wq".into(), vec![8, 4]);
    let e = load(
        &path,
        &Expect {
            params: Some(want),
            ..Default::default()
        },
    )
    .unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("layers.0.attn.wq") && m.contains("[8, 8]") && m.contains("[8, 4]"),
        "{m}"
    );

    // Valid safetensors without weft metadata (e.g. from PyTorch).
    let plain = dir.join("plain.safetensors");
    let data = vec![0u8; 16];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4], &data).unwrap();
    std::fs::write(&plain, safetensors::serialize([("w", view)], None).unwrap()).unwrap();
    assert!(msg(&plain).contains("no weft metadata"), "{}", msg(&plain));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn checkpoint_dir_points_latest_at_the_newest_and_prunes() {
    let dir = tmpdir("dir");
    let cd = CheckpointDir::open(dir.join("checkpoints")).unwrap();
    let e = cd.load_latest(&Expect::default()).unwrap_err();
    assert!(matches!(e.problem, Problem::NoLatest), "{e}");
    let p = params(3, 1);
    for step in [10, 20, 30] {
        cd.save(&meta(step), &p, None).unwrap();
    }
    assert_eq!(cd.latest().unwrap().unwrap(), cd.file_for(30));
    assert_eq!(cd.load_latest(&Expect::default()).unwrap().meta.step, 30);
    cd.prune(2).unwrap();
    assert!(!cd.file_for(10).exists() && cd.file_for(20).exists() && cd.file_for(30).exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

const CHILD_ENV: &str = "WEFT_CHECKPOINT_WRITER_DIR";

/// Not a test on its own: with the env var set (by the SIGKILL test, re-running this binary)
/// it writes checkpoints in a loop until it is killed.
#[test]
fn checkpoint_writer_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let cd = CheckpointDir::open(PathBuf::from(dir)).unwrap();
    let mut p = params(4, 2048); // ~1 MB of parameters: the kill lands mid-write often
    let opt = trained_optimizer(&mut p);
    for step in 1.. {
        cd.save(&meta(step), &p, Some(opt.state())).unwrap();
        cd.prune(3).unwrap();
    }
}

#[test]
fn sigkill_while_writing_never_corrupts_latest() {
    let dir = tmpdir("sigkill");
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng::new(std::process::id() as u64);
    let mut last_step = 0;
    for round in 0..5 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "checkpoint_writer_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Wait for progress past what earlier rounds saved, then kill at a random moment.
        let cd = CheckpointDir::open(&dir).unwrap();
        let start = Instant::now();
        loop {
            let step = cd
                .latest()
                .ok()
                .flatten()
                .and_then(|p| read_meta(&p).ok())
                .map_or(0, |m| m.step);
            if step > last_step {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "round {round}: the writer made no progress"
            );
            if let Some(status) = child.try_wait().unwrap() {
                panic!("round {round}: the writer exited: {status}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(rng.below(150)));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();

        let c = CheckpointDir::open(&dir)
            .unwrap()
            .load_latest(&Expect {
                spec_hash: Some(spec_hash("model a {}")),
                params: Some(expect_shapes(&params(4, 2048))),
            })
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(c.meta.step > last_step);
        last_step = c.meta.step;
        let leftovers = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
            .count();
        assert_eq!(
            leftovers, 0,
            "opening the directory clears a killed writer's temp files"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
