//! One pipeline builds every training step: the benchmark's step is the graph `weft train`
//! runs (dropout, frozen parameters and all), for every example spec.

use weft_compiler::lower::dropout_inputs;
use weft_runtime::bench::train_step;
use weft_runtime::train::training_graph;

fn example(name: &str) -> weft_dsl::Checked {
    let path = format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let src = std::fs::read_to_string(&path).unwrap();
    weft_dsl::check_source(&src).unwrap_or_else(|e| panic!("{name}: {e:?}"))
}

#[test]
fn the_benchmark_step_is_the_training_step() {
    let dir = format!("{}/../examples", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.ends_with(".weft").then_some(name)
        })
        .collect();
    names.sort();
    assert!(names.len() >= 10, "{names:?}");
    for name in &names {
        let spec = example(name);
        let bench = train_step(name, &spec, 2, 8).unwrap();
        let train = training_graph(&spec, 2, 8).unwrap();
        assert_eq!(bench.graph.to_string(), train.to_string(), "{name}");
    }
}

#[test]
fn the_step_keeps_dropout_and_frozen_parameters() {
    // Attention dropout becomes mask inputs of the step.
    let g = training_graph(&example("grok_copy.weft"), 2, 8).unwrap();
    assert!(!dropout_inputs(&g).is_empty());
    // `trainable = ["layers.*.attn.gain"]`: gradients of the gains only.
    let g = training_graph(&example("pear.weft"), 2, 8).unwrap();
    let grads: Vec<&str> = g
        .outputs
        .iter()
        .filter_map(|(n, _)| n.strip_prefix("grad."))
        .collect();
    assert!(!grads.is_empty());
    assert!(grads.iter().all(|n| n.ends_with(".attn.gain")), "{grads:?}");
}
