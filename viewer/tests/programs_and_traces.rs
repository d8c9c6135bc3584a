//! Program results (`programs/*.json`), MoICE base choices and DR-ICL per-demonstration
//! traces, read from real `weft run` / `weft train` output committed under `tests/fixtures`
//! (see its README for the commands that made each file).

mod common;

use common::{copy_dir, fixture};
use std::fs;
use std::path::PathBuf;
use weft_rundir::{read_trace, trace_kind};
use weft_viewer::data::bases::BaseChoices;
use weft_viewer::data::programs::{ProbeResult, Program};
use weft_viewer::data::segments::Segments;
use weft_viewer::data::{RunWatcher, Severity, Source};

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weft-viewer-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    d
}

/// A directory as `weft run --out DIR` leaves it: only `programs/`.
fn programs_dir(tag: &str) -> PathBuf {
    let d = tmp(tag);
    copy_dir(&fixture("programs"), &d.join("programs"));
    d
}

fn program(w: &RunWatcher, file: &str) -> std::sync::Arc<Program> {
    let e = w
        .snapshot()
        .programs
        .iter()
        .find(|e| e.file == file)
        .unwrap_or_else(|| panic!("{file} not listed"));
    e.program.clone().unwrap()
}

#[test]
fn every_program_fixture_is_read_into_its_view() {
    let d = programs_dir("programs");
    let w = RunWatcher::open(Source::from_path(&d));
    let snap = w.snapshot();
    let files: Vec<&str> = snap.programs.iter().map(|e| e.file.as_str()).collect();
    assert_eq!(
        files,
        [
            "collapse.json",
            "distance.json",
            "final_layer.json",
            "inject.json",
            "length_sweep.json",
            "needle_sweep.json",
            "orders.json",
            "shots_sweep.json",
            "sweep.json",
        ]
    );
    // Only notes (no metrics, no spec): every file parsed.
    assert!(
        snap.problems.iter().all(|p| p.severity == Severity::Note),
        "{:?}",
        snap.problems
    );

    let p = program(&w, "distance.json");
    assert_eq!(
        (p.name.as_str(), p.probe.as_str()),
        ("distance", "attention_distance")
    );
    assert_eq!(p.args, "len: 1024");
    assert_eq!(p.weights, None);
    let Ok(ProbeResult::AttentionDistance(dist)) = &p.result else {
        panic!("{:?}", p.result)
    };
    assert_eq!(dist.len, 256);
    assert_eq!(dist.layers(), 2);
    assert!(dist
        .mean
        .iter()
        .all(|l| l.len() == 4 && l.iter().all(|h| h.len() == 256)));
    assert!(dist.mean_abs.is_some());

    let p = program(&w, "sweep.json");
    let Ok(ProbeResult::BatchIcl(b)) = &p.result else {
        panic!("{:?}", p.result)
    };
    assert_eq!(b.layers, [0.0, 1.0, 2.0, 3.0, 4.0]);
    assert_eq!(b.accuracy.len(), 5);
    assert_eq!(b.best_layer, Some(0.0));
    assert_eq!(b.references, [("zero-shot".to_string(), 0.8125)]);
    assert!(p.scalars.iter().any(|(k, v)| k == "queries" && v == "32"));

    let p = program(&w, "inject.json");
    assert!(matches!(&p.result, Ok(ProbeResult::BatchIcl(b)) if b.layers == [2.0]));

    let p = program(&w, "orders.json");
    let Ok(ProbeResult::IclOrders(o)) = &p.result else {
        panic!("{:?}", p.result)
    };
    assert_eq!(o.by_order.len(), 24);
    assert!(o.worst <= o.mean && o.mean <= o.best);

    // Small models trained for a few dozen steps (README): mostly near chance, so shapes and a
    // few values read back are checked, not what the models learned.
    let p = program(&w, "length_sweep.json");
    let Ok(ProbeResult::LengthSweep(s)) = &p.result else {
        panic!("{:?}", p.result)
    };
    assert_eq!(s.train_len, Some(128.0));
    assert_eq!(s.lengths, [128.0, 256.0, 512.0, 1024.0]);
    assert_eq!(s.accuracy, [0.0, 0.0, 0.09375, 0.03125]);
    assert_eq!(s.loss.as_ref().map(Vec::len), Some(4));
    assert_eq!(
        p.weights.as_deref(),
        Some("/tmp/fx/hope/checkpoints/step-00000060.safetensors")
    );
    let p = program(&w, "needle_sweep.json");
    let Ok(ProbeResult::NeedleSweep(s)) = &p.result else {
        panic!("{:?}", p.result)
    };
    assert_eq!(s.positions.len(), 8);
    assert_eq!((s.positions[0], s.positions[7]), (0.0, 1.0));
    assert_eq!(s.len, Some(256.0));
    assert_eq!(s.loss.as_ref().map(Vec::len), Some(8));
    let p = program(&w, "shots_sweep.json");
    let Ok(ProbeResult::ShotsSweep(s)) = &p.result else {
        panic!("{:?}", p.result)
    };
    assert_eq!(s.shots, [1.0, 4.0, 16.0, 64.0]);
    assert_eq!(s.accuracy, [0.53125, 0.484375, 0.453125, 0.4375]);
    assert_eq!(s.zero_shot, Some(0.578125));
    assert!(matches!(s.zero_shot_loss, Some(l) if (l - 1.0306).abs() < 1e-4));
    assert_eq!(s.loss.as_ref().map(Vec::len), Some(4));
    let p = program(&w, "final_layer.json");
    let Ok(ProbeResult::FinalLayer(t)) = &p.result else {
        panic!("{:?}", p.result)
    };
    let pairs: Vec<&str> = t.pairs.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(
        pairs,
        [
            "p_answer",
            "rank",
            "accuracy",
            "entropy",
            "logit_diff",
            "p_answer_mid"
        ]
    );
    assert_eq!(
        t.pairs[0],
        ("p_answer".into(), "0.0154".into(), "0.0146".into())
    );
    let rows: Vec<&str> = t.rows.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        t.rows[..2],
        [
            ("intervention".into(), "self_only".into()),
            ("layer".into(), "3".into())
        ]
    );
    assert!(rows.contains(&"intercept_norm") && !rows.contains(&"rank_after"));

    // A probe without a plot is shown as its JSON.
    let p = program(&w, "collapse.json");
    assert_eq!(p.result, Ok(ProbeResult::Other));
    assert!(p.pretty.contains("\"normalised\""));
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn malformed_program_files_are_errors_not_panics() {
    let d = tmp("programs-bad");
    let dir = d.join("programs");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("torn.json"), b"{\"program\": \"x\", \"pro").unwrap();
    fs::write(dir.join("array.json"), b"[1, 2, 3]").unwrap();
    fs::write(
        dir.join("noresult.json"),
        br#"{"program": "a", "probe": "batch_icl"}"#,
    )
    .unwrap();
    fs::write(
        dir.join("short.json"),
        br#"{"program": "s", "probe": "batch_icl", "result": {"layers": [0, 1], "accuracy": [0.5]}}"#,
    )
    .unwrap();
    fs::write(
        dir.join("cube.json"),
        br#"{"program": "d", "probe": "attention_distance", "result": {"len": 2, "mean": [[1, 2]]}}"#,
    )
    .unwrap();
    // A writer's temporary file is not a result.
    fs::write(dir.join(".sweep.json.tmp.123"), b"{").unwrap();
    let w = RunWatcher::open(Source::from_path(&d));
    let snap = w.snapshot();
    assert_eq!(snap.programs.len(), 5);
    let err = |f: &str| -> String {
        let e = snap.programs.iter().find(|e| e.file == f).unwrap();
        match &e.program {
            Err(e) => e.clone(),
            Ok(p) => p.result.clone().unwrap_err(),
        }
    };
    assert!(
        err("torn.json").starts_with("not JSON"),
        "{}",
        err("torn.json")
    );
    assert!(err("array.json").contains("not a JSON object"));
    assert_eq!(err("noresult.json"), "no `result` field");
    assert_eq!(
        err("short.json"),
        "`layers` has 2 values but `accuracy` has 1"
    );
    assert!(err("cube.json").contains("layers × heads × values"));
    let warnings: Vec<&str> = snap
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Warning)
        .map(|p| p.message.as_str())
        .collect();
    assert_eq!(warnings.len(), 5, "{warnings:?}");
    assert!(warnings
        .iter()
        .any(|m| m.starts_with("programs/short.json: ")));
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn program_results_appear_change_and_disappear_live() {
    let d = tmp("programs-live");
    fs::create_dir_all(&d).unwrap();
    let mut w = RunWatcher::open(Source::from_path(&d));
    assert!(w.snapshot().programs.is_empty());
    let dir = d.join("programs");
    fs::create_dir_all(&dir).unwrap();
    fs::copy(fixture("programs/inject.json"), dir.join("inject.json")).unwrap();
    assert!(w.poll_now());
    assert_eq!(w.snapshot().programs.len(), 1);
    assert!(!w.poll_now(), "nothing changed");
    // Rewritten (as `weft run` does, atomically) with another result.
    fs::copy(fixture("programs/sweep.json"), dir.join("inject.json")).unwrap();
    assert!(w.poll_now());
    assert!(matches!(
        &program(&w, "inject.json").result,
        Ok(ProbeResult::BatchIcl(b)) if b.layers.len() == 5
    ));
    fs::remove_file(dir.join("inject.json")).unwrap();
    assert!(w.poll_now());
    assert!(w.snapshot().programs.is_empty());
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn moice_base_choices_of_a_real_run() {
    let d = tmp("moice");
    copy_dir(&fixture("moice_run"), &d);
    let w = RunWatcher::open(Source::from_path(&d));
    let snap = w.snapshot();
    assert!(snap.problems.iter().all(|p| p.severity == Severity::Note));
    assert_eq!(snap.traces.steps(trace_kind::BASE_ROUTING), [6]);
    let entries = snap.traces.at(trace_kind::BASE_ROUTING, 6);
    assert_eq!(entries.len(), 2);
    for (l, e) in entries.iter().enumerate() {
        let t = read_trace(&snap.traces_dir().join(&e.file)).unwrap();
        let c = BaseChoices::new(&t).unwrap();
        assert_eq!(c.layer, Some(l));
        assert_eq!(
            (c.batch, c.heads, c.tokens, c.k, c.n_bases),
            (1, 4, 256, 2, 5)
        );
        assert_eq!(
            c.bases.as_deref(),
            Some(&[10000.0, 12000.0, 15000.0, 20000.0, 30000.0][..])
        );
        assert_eq!(c.base_label(0), "10000");
        for h in 0..4 {
            for t in 0..256 {
                let ch = c.choices(0, h, t);
                // Two distinct bases by decreasing weight; weights renormalised to 1.
                assert!(ch[0] != ch[1] && ch.iter().all(|&b| (0..5).contains(&b)));
                let w = c.weights(0, h, t).unwrap();
                assert!(w[0] >= w[1] && ((w[0] + w[1]) - 1.0).abs() < 1e-4);
            }
        }
        let u = c.usage();
        assert!((u.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        for h in 0..4 {
            assert!((c.head_usage(h).iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
        assert!(!c.token_label(0, 0).is_empty());
    }
    let _ = fs::remove_dir_all(&d);
}

#[test]
fn dricl_per_demonstration_loss_and_weight_of_a_real_run() {
    let d = tmp("dricl");
    copy_dir(&fixture("dricl_run"), &d);
    let w = RunWatcher::open(Source::from_path(&d));
    let snap = w.snapshot();
    assert_eq!(snap.traces.steps(trace_kind::SEGMENTS), [4, 12]);
    let e = snap.traces.history("loss.segments");
    let t = read_trace(&snap.traces_dir().join(&e[1].file)).unwrap();
    let s = Segments::new(&t).unwrap();
    assert_eq!(s.step, 12);
    assert_eq!(s.sequences, 32);
    assert_eq!(s.loss.len(), 63);
    // Every held-out sequence has a first demonstration; fewer have later ones.
    assert_eq!(s.count[0], 32);
    assert!(s.count.windows(2).all(|c| c[0] >= c[1]));
    assert!(s.count[62] >= 1);
    assert!(s.loss.iter().all(|l| l.is_finite() && *l > 0.0));
    let weight = s.weight.unwrap();
    // The first demonstration has no predecessor: advantage 0, weight exp(0) = 1.
    assert!((weight[0] - 1.0).abs() < 1e-6);
    assert!(weight.iter().all(|w| w.is_finite() && *w > 0.0));
    let _ = fs::remove_dir_all(&d);
}
