//! The data model on synthetic run directories written with `weft_rundir`,
//! including partial and corrupt ones: everything is read or reported, nothing panics.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use weft_rundir::{trace_kind, RunFiles, StepMetrics, METRICS_FILE};
use weft_viewer::data::attention::AttentionMaps;
use weft_viewer::data::head_scores::HeadTable;
use weft_viewer::data::model::ModelSummary;
use weft_viewer::data::routing::{RoutedLayer, Routing};
use weft_viewer::data::{RunWatcher, Severity, Source, TraceStore};
use weft_viewer::synthetic::Synthetic;

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weft-viewer-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    d
}

fn step_line(step: u64) -> StepMetrics {
    StepMetrics {
        step,
        tokens: step * 64,
        loss: 3.0 / step as f64,
        lr: 1e-3,
        grad_norm: 1.0,
        tokens_per_s: 100.0,
        wall_s: step as f64,
        ..Default::default()
    }
}

fn messages(w: &RunWatcher) -> Vec<String> {
    w.snapshot()
        .problems
        .iter()
        .map(|p| p.message.clone())
        .collect()
}

#[test]
fn reads_a_complete_synthetic_run() {
    let dir = tmp("complete");
    Synthetic::small().write(&dir).unwrap();
    let w = RunWatcher::open(Source::from_path(&dir));
    let snap = w.snapshot();
    assert!(snap.problems.is_empty(), "{:?}", snap.problems);
    assert_eq!(snap.metrics.train.len(), 10);
    assert_eq!(snap.metrics.eval.len(), 2);
    let names: Vec<String> = snap.metrics.series().into_iter().map(|s| s.name).collect();
    for n in [
        "loss",
        "term.0.nll",
        "balance.route0",
        "lr",
        "copy_accuracy",
    ] {
        assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
    }
    // Tokens at an eval step are interpolated from train lines.
    assert_eq!(snap.metrics.tokens_at(50), Some(50.0 * 16.0 * 12.0));
    assert_eq!(snap.traces.steps(trace_kind::ATTENTION), [50, 100]);
    assert_eq!(snap.traces.at(trace_kind::ATTENTION, 100).len(), 3);
    assert_eq!(snap.traces.names(trace_kind::HEAD_SCORES).len(), 2);
    assert!(snap.spec.as_deref().unwrap().contains("model cog_lm"));

    let mut store = TraceStore::new(snap.traces_dir());
    let layers = snap.traces.at(trace_kind::ATTENTION, 100);
    let first = AttentionMaps::new(store.get(layers[0]).unwrap()).unwrap();
    let middle = AttentionMaps::new(store.get(layers[1]).unwrap()).unwrap();
    assert!(!first.is_signed(), "layer 0 keeps softmax");
    assert!(middle.is_signed(), "middle layers are Cog");
    assert!((0..3).any(|h| middle.stats(0, h).negative_mass > 0.01));
    // Rows of a signed map sum to 1 in |w|.
    let row: f32 = middle.map(0, 0)[5 * 12..6 * 12]
        .iter()
        .map(|w| w.abs())
        .sum();
    assert!((row - 1.0).abs() < 1e-4, "{row}");
    assert_eq!(middle.tokens(0).unwrap().len(), 12);

    let pools: Vec<_> = snap
        .traces
        .at(trace_kind::ROUTING, 100)
        .into_iter()
        .map(|e| std::sync::Arc::new(Routing::new(&store.get(e).unwrap()).unwrap()))
        .collect();
    assert_eq!(pools.len(), 2);
    let layer = RoutedLayer::new(pools);
    assert_eq!(layer.stages.len(), 8, "4 iterations × 2 pools");
    for it in 0..4 {
        let u = layer.pools[0].utilisation(it);
        assert_eq!(u.len(), 5, "4 modules + SKIP");
        assert!((u.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    let depths: Vec<usize> = (0..12).map(|t| layer.effective_depth(0, t)).collect();
    assert!(depths.iter().all(|&d| d <= 8));
    assert!(
        depths.iter().any(|&d| d < 8),
        "some tokens skip: {depths:?}"
    );

    let scores = snap.traces.history("induction_score");
    let early = HeadTable::new(&store.get(scores[0]).unwrap()).unwrap();
    let late = HeadTable::new(&store.get(scores[1]).unwrap()).unwrap();
    assert_eq!((late.layers, late.heads), (3, 3));
    assert!(
        late.get(0, 2) > early.get(0, 2),
        "induction grows over training"
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_live_run_is_picked_up_line_by_line_and_a_torn_line_waits() {
    let dir = tmp("live");
    let mut run = RunFiles::create(&dir, "model m {}\n").unwrap();
    let mut w = RunWatcher::open(Source::from_path(&dir));
    assert!(w.snapshot().metrics.train.is_empty());
    assert!(w.snapshot().problems.is_empty(), "{:?}", messages(&w));
    run.metrics().log(&step_line(1)).unwrap();
    run.metrics().log(&step_line(2)).unwrap();
    assert!(w.poll_now());
    assert_eq!(w.snapshot().metrics.train.len(), 2);
    let v0 = w.snapshot().version;
    assert!(!w.poll_now(), "nothing new");
    assert_eq!(w.snapshot().version, v0);

    // Half a line: not read, reported as still being written; then completed.
    let path = dir.join(METRICS_FILE);
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"{\"kind\":\"train\",\"step\":3,\"lo").unwrap();
    w.poll_now();
    assert_eq!(w.snapshot().metrics.train.len(), 2);
    let torn = w
        .snapshot()
        .problems
        .iter()
        .find(|p| p.message.contains("incomplete"))
        .expect("torn line reported");
    assert_eq!(torn.severity, Severity::Note);
    f.write_all(b"ss\":1.0}\n").unwrap();
    w.poll_now();
    assert_eq!(w.snapshot().metrics.train.len(), 3);
    assert_eq!(w.snapshot().metrics.train[2].loss, Some(1.0));
    assert!(!messages(&w).iter().any(|m| m.contains("incomplete")));

    // A trace written later appears at the next poll.
    Synthetic {
        trace_steps: vec![7],
        steps: 0,
        routing: false,
        ..Synthetic::small()
    }
    .write(&dir)
    .unwrap();
    w.poll_now();
    assert_eq!(w.snapshot().traces.steps(trace_kind::ATTENTION), [7]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_resumed_run_that_rewrites_metrics_has_no_duplicate_steps() {
    let dir = tmp("resume");
    let mut run = RunFiles::create(&dir, "").unwrap();
    for s in 1..=4 {
        run.metrics().log(&step_line(s)).unwrap();
    }
    let mut w = RunWatcher::open(Source::from_path(&dir));
    assert_eq!(w.snapshot().metrics.train.len(), 4);
    run.metrics().truncate_after(2).unwrap();
    run.metrics().log(&step_line(3)).unwrap();
    w.poll_now();
    let steps: Vec<u64> = w.snapshot().metrics.train.iter().map(|p| p.step).collect();
    assert_eq!(steps, [1, 2, 3]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn corrupt_lines_null_values_and_unknown_kinds_are_tolerated() {
    let dir = tmp("corrupt-metrics");
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join(METRICS_FILE),
        concat!(
            "{\"kind\":\"train\",\"step\":1,\"tokens\":10,\"loss\":2.0,\"lr\":0.1}\n",
            "this is not json\n",
            "{\"kind\":\"train\",\"step\":2,\"tokens\":20,\"loss\":null,\"lr\":0.1}\n",
            "{\"kind\":\"probe\",\"step\":2}\n",
            "{\"kind\":\"eval\",\"step\":2,\"copy\":{\"acc\":0.5,\"n\":10},\"note\":\"x\"}\n",
        ),
    )
    .unwrap();
    let w = RunWatcher::open(Source::from_path(&dir));
    let snap = w.snapshot();
    assert_eq!(snap.metrics.train.len(), 2);
    assert_eq!(snap.metrics.skipped, 1);
    let loss = snap
        .metrics
        .series()
        .into_iter()
        .find(|s| s.name == "loss")
        .unwrap();
    assert_eq!(loss.diverged_at(), Some(2), "null loss reads as diverged");
    assert_eq!(snap.metrics.eval[0].values["copy.acc"], Some(0.5));
    assert!(!snap.metrics.eval[0].values.contains_key("note"));
    let bad = snap
        .problems
        .iter()
        .find(|p| p.message.contains("not JSON"))
        .unwrap();
    assert_eq!(bad.severity, Severity::Warning);
    assert!(messages(&w).iter().any(|m| m.contains("no spec.weft")));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_and_corrupt_trace_files_are_reported_not_fatal() {
    let dir = tmp("corrupt-traces");
    Synthetic::small().write(&dir).unwrap();
    let traces = dir.join("traces");
    // One indexed file deleted, one overwritten with garbage, one truncated.
    fs::remove_file(traces.join("layers.0.attn.pattern/step-00000050.safetensors")).unwrap();
    fs::write(
        traces.join("layers.1.attn.pattern/step-00000050.safetensors"),
        b"garbage",
    )
    .unwrap();
    let t = traces.join("layers.2.attn.pattern/step-00000050.safetensors");
    let bytes = fs::read(&t).unwrap();
    fs::write(&t, &bytes[..bytes.len() / 2]).unwrap();
    // And a torn index line.
    let mut idx = OpenOptions::new()
        .append(true)
        .open(traces.join("index.jsonl"))
        .unwrap();
    idx.write_all(b"{\"step\": 9, \"na").unwrap();

    let w = RunWatcher::open(Source::from_path(&dir));
    let snap = w.snapshot();
    let msgs = messages(&w);
    assert!(
        msgs.iter()
            .any(|m| m.contains("1 indexed trace file(s) are missing")),
        "{msgs:?}"
    );
    assert!(msgs.iter().any(|m| m.contains("index.jsonl is incomplete")));
    let mut store = TraceStore::new(snap.traces_dir());
    let at50 = snap.traces.at(trace_kind::ATTENTION, 50);
    assert_eq!(at50.len(), 3);
    for e in &at50 {
        assert!(store.get(e).is_err(), "{} should fail", e.file);
    }
    assert_eq!(store.failures().len(), 3);
    // The other step still loads.
    for e in snap.traces.at(trace_kind::ATTENTION, 100) {
        AttentionMaps::new(store.get(e).unwrap()).unwrap();
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn traces_without_an_index_are_found_by_scanning() {
    let dir = tmp("no-index");
    Synthetic::small().write(&dir).unwrap();
    fs::remove_file(dir.join("traces/index.jsonl")).unwrap();
    // A temporary file of a writer in progress is not a trace.
    fs::write(
        dir.join("traces/layers.0.attn.pattern/.step-00000150.safetensors.tmp.1"),
        b"partial",
    )
    .unwrap();
    let w = RunWatcher::open(Source::from_path(&dir));
    let snap = w.snapshot();
    assert_eq!(
        snap.traces.len(),
        14,
        "3 layers + 2 scores + 2 routes, at 2 steps"
    );
    assert_eq!(snap.traces.steps(trace_kind::ROUTING), [50, 100]);
    let e = snap.traces.at(trace_kind::ATTENTION, 100)[1];
    assert_eq!(e.shape("pattern"), Some(&[1, 3, 12, 12][..]));
    assert_eq!(e.layer(), Some(1));
    assert!(messages(&w).iter().any(|m| m.contains("found by scanning")));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_missing_directory_or_spec_is_an_error_in_the_window() {
    let w = RunWatcher::open(Source::RunDir(tmp("nowhere")));
    assert_eq!(w.snapshot().problems[0].severity, Severity::Error);
    let w = RunWatcher::open(Source::Spec(tmp("nowhere.weft")));
    assert_eq!(w.snapshot().problems[0].severity, Severity::Error);
    assert!(w.snapshot().spec.is_none());
}

#[test]
fn a_spec_reads_as_layers_pools_routers_and_parameter_counts() {
    let src = include_str!("../../examples/mom.weft");
    let m = ModelSummary::from_source(src, "mom.weft").unwrap();
    assert_eq!(m.name, "mom_lm");
    assert_eq!(m.layers.len(), 3);
    assert_eq!(m.layers[1].iterations, 4);
    let routes: Vec<_> = m.layers[1]
        .components
        .iter()
        .filter_map(|c| c.pool.clone())
        .collect();
    assert_eq!(routes, ["attn", "ffn"]);
    let pools: Vec<String> = m
        .pools
        .iter()
        .map(|p| format!("{}[{}] used by {:?}", p.name, p.size, p.used_by))
        .collect();
    assert_eq!(
        pools,
        ["attn[4] used by [(1, 0)]", "ffn[4] used by [(1, 1)]"]
    );
    assert!(m.pools.iter().all(|p| p.params > 0));
    assert!(m.layers[1].hooks.iter().any(|h| h == "iter*.route0.choice"));
    assert!(m.layers[0].hooks.iter().any(|h| h == "attn.pattern"));
    // Counts add up to the whole model.
    let sum: usize = m.inputs.iter().map(|c| c.params).sum::<usize>()
        + m.layers.iter().map(|l| l.params).sum::<usize>()
        + m.outputs.iter().map(|c| c.params).sum::<usize>();
    assert_eq!(sum, m.total_params);

    let cog =
        ModelSummary::from_source(include_str!("../../examples/cog_attention.weft"), "c").unwrap();
    assert_eq!(cog.layers[1].args, "rule: signed");
    assert_eq!(cog.layers[0].args, "rule: softmax");
    // The Attention panel's rule names, by hook prefix.
    assert_eq!(cog.attention_rules["layers.0.attn"], "softmax · document");
    assert_eq!(cog.attention_rules["layers.1.attn"], "signed · document");
    let rules = ModelSummary::from_source(
        include_str!("../../examples/attention_rules.weft"),
        "rules.weft",
    )
    .unwrap();
    assert_eq!(rules.attention_rules["layers.0.attn"], "rule alibi_local");
    assert_eq!(rules.attention_rules["layers.1.attn"], "rule softcap");

    let err = ModelSummary::from_source("model m { dim = }", "bad.weft").unwrap_err();
    assert!(err.contains("bad.weft"), "{err}");
}

/// Synthetic MoICE traces (used by the frame-time measurement) have the layout of a real
/// run's (`tests/fixtures/moice_run`, written by the runtime's trace writer) and read back
/// with the same invariants: distinct bases by decreasing weight, weights summing to 1.
#[test]
fn synthetic_moice_traces_match_a_real_run() {
    use weft_rundir::read_trace;
    use weft_viewer::data::bases::BaseChoices;
    let dir = tmp("moice-synthetic");
    Synthetic {
        moice: true,
        routing: false,
        ..Synthetic::small()
    }
    .write(&dir)
    .unwrap();
    let w = RunWatcher::open(Source::from_path(&dir));
    let snap = w.snapshot();
    assert!(snap.problems.is_empty(), "{:?}", snap.problems);
    assert_eq!(snap.traces.steps(trace_kind::BASE_ROUTING), [50, 100]);
    let real_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/moice_run");
    let real = RunWatcher::open(Source::from_path(&real_dir));
    let real_e = real.snapshot().traces.at(trace_kind::BASE_ROUTING, 6)[0].clone();
    let real_t = read_trace(&real.snapshot().traces_dir().join(&real_e.file)).unwrap();
    let layout = |t: &weft_rundir::Trace| {
        let tensors: Vec<(String, String, usize)> = t
            .tensors
            .iter()
            .map(|(k, v)| (k.clone(), v.dtype_name().to_string(), v.shape.len()))
            .collect();
        let attrs: Vec<String> = t.attrs.keys().cloned().collect();
        (t.kind.clone(), tensors, t.axes.clone(), attrs)
    };
    let entries = snap.traces.at(trace_kind::BASE_ROUTING, 100);
    assert_eq!(entries.len(), 3);
    for (l, e) in entries.iter().enumerate() {
        assert_eq!(e.name, format!("layers.{l}.attn.router"));
        let t = read_trace(&snap.traces_dir().join(&e.file)).unwrap();
        assert_eq!(layout(&t), layout(&real_t));
        let c = BaseChoices::new(&t).unwrap();
        assert_eq!(c.layer, Some(l));
        assert_eq!(
            (c.batch, c.heads, c.tokens, c.k, c.n_bases),
            (1, 3, 12, 2, 5)
        );
        assert_eq!(c.bases, BaseChoices::new(&real_t).unwrap().bases);
        for h in 0..3 {
            for t in 0..12 {
                let ch = c.choices(0, h, t);
                assert!(ch[0] != ch[1] && ch.iter().all(|&b| (0..5).contains(&b)));
                let w = c.weights(0, h, t).unwrap();
                assert!(w[0] >= w[1] && ((w[0] + w[1]) - 1.0).abs() < 1e-4);
            }
            assert!((c.head_usage(h).iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
        assert_eq!(c.token_label(0, 1), "h");
    }
    fs::remove_dir_all(&dir).unwrap();
}
