//! Every example spec, shrunk, compiles to kernels that naga accepts (forward and gradient
//! graphs, fused and unfused), and runs on the wgpu backend with the CPU reference's
//! results, forward and backward.

mod wgpu_support;
use weft_compiler::codegen::validate::validate_wgsl;
use weft_compiler::codegen::{compile, CodegenOptions};
use weft_runtime::HookSelection;
use wgpu_support::{check_against_cpu, examples, gpu_or_skip};

const B: usize = 2;
const T: usize = 8;

#[test]
fn every_kernel_of_every_example_validates_under_naga() {
    let names = examples::names();
    assert_eq!(names.len(), 12, "{names:?}");
    let unfused = CodegenOptions {
        fuse: false,
        ..CodegenOptions::default()
    };
    for name in &names {
        let mut kernels = 0;
        for case in [
            examples::forward(name, B, T, 1),
            examples::gradient(name, B, T, 1),
        ] {
            let hooks: Vec<String> = case.graph.hooks.iter().map(|(n, _)| n.clone()).collect();
            for opts in [CodegenOptions::default(), unfused.clone()] {
                for hooks in [Vec::new(), hooks.clone()] {
                    // `compile` validates every module itself; validating again here keeps the
                    // test meaningful should that ever change.
                    let p = compile(&case.graph, &hooks, &opts)
                        .unwrap_or_else(|e| panic!("{}: {e}", case.name));
                    for k in &p.kernels {
                        validate_wgsl(k).unwrap_or_else(|e| panic!("{}: {e}", case.name));
                        kernels += 1;
                    }
                }
            }
        }
        assert!(kernels > 0, "{name}: no kernels");
    }
}

#[test]
fn every_example_forward_matches_cpu_on_wgpu() {
    let Some(gpu) = gpu_or_skip() else { return };
    for name in examples::names() {
        let c = examples::forward(&name, 1, T, 3);
        check_against_cpu(
            gpu,
            &c.name,
            &c.graph,
            &c.inputs,
            &c.params,
            &HookSelection::None,
        );
    }
}

#[test]
fn every_example_gradient_matches_cpu_on_wgpu() {
    let Some(gpu) = gpu_or_skip() else { return };
    for name in examples::names() {
        let c = examples::gradient(&name, 1, T, 3);
        check_against_cpu(
            gpu,
            &c.name,
            &c.graph,
            &c.inputs,
            &c.params,
            &HookSelection::None,
        );
    }
}
