//! Matmul tilings and the autotuner on wgpu.
//!
//! Every [`TileConfig`] candidate computes every matmul form — sizes that are no multiple of
//! any tile (M=37, N=29, K=70), all four transposes, broadcast batches, an RMSNorm prologue
//! feeding grouped products, a residual epilogue and SwiGLU's shared epilogue — like the CPU
//! reference (relative error 1e-4, random inputs without zeros, planned buffers poisoned so
//! an unwritten element fails), and so do the gradients of every example spec (shrunk). The autotuner writes its cache into a temporary
//! `WEFT_CACHE_DIR`, a second backend compiles with the cached choices without timing
//! anything, and a corrupt cache is a warning. No timing assertions (the machine is loaded).

mod wgpu_support;
use std::collections::HashMap;
use weft_compiler::codegen::tiling::every_matmul_form;
use weft_compiler::codegen::{CodegenOptions, MatmulShape, TileConfig, TuningTable};
use weft_compiler::ir::Graph;
use weft_runtime::wgpu::autotune::{AutotuneOptions, TuneCache};
use weft_runtime::{
    init_params, Backend, CpuBackend, HookSelection, ParamStore, Rng, Tensor, WgpuBackend,
};
use wgpu_support::{assert_close, check_against_cpu, examples, gpu_or_skip, graphs};

/// A graph of every matmul form (`tiling::every_matmul_form`) with its (nonzero, random)
/// inputs.
fn every_form() -> (Graph, HashMap<String, Tensor>, ParamStore) {
    let mut rng = Rng::new(11);
    let g = every_matmul_form();
    let mut ins = HashMap::new();
    for info in &g.inputs {
        let n: usize = info.shape.iter().product();
        let data = (0..n)
            .map(|_| {
                let x = rng.normal() as f32;
                // |x| ≥ 0.05: no zeros.
                x + 0.05f32.copysign(x)
            })
            .collect();
        ins.insert(info.name.clone(), Tensor::f32(&info.shape, data));
    }
    let params = init_params(&g, 3);
    (g, ins, params)
}

/// A backend (no autotune cache) giving every matmul `config`, NaN-poisoned.
fn backend(config: TileConfig) -> WgpuBackend {
    let mut b = WgpuBackend::with_tuning(
        CodegenOptions {
            tiles: TuningTable::uniform(config),
            max_storage_buffers_per_stage: u32::MAX,
            max_storage_buffer_binding_size: u64::MAX,
            ..CodegenOptions::default()
        },
        TuneCache::Off,
    )
    .unwrap();
    b.poison = true;
    b
}

/// Runs `g` with every candidate of one family and compares with the CPU; every matmul
/// kernel must really use the configuration (grouped kernels may fall back, see `matmul.rs`).
fn check_family(workgroup: bool, g: &Graph, ins: &HashMap<String, Tensor>, ps: &ParamStore) {
    for config in TileConfig::candidates() {
        if matches!(config, TileConfig::Workgroup { .. }) != workgroup {
            continue;
        }
        let gpu = backend(config);
        let program = gpu.program(g, &HookSelection::None).unwrap();
        let mm: Vec<_> = program
            .kernels
            .iter()
            .filter(|k| k.matmul.is_some())
            .collect();
        assert!(!mm.is_empty());
        for k in &mm {
            // Only a group of products may stage more than the adapter's workgroup memory
            // and fall back to the default kernel.
            let fell_back = k.tile == Some(TileConfig::default()) && k.matmul.unwrap().products > 1;
            assert!(
                k.tile == Some(config) || fell_back,
                "{}: {:?}",
                k.name,
                k.tile
            );
        }
        assert!(mm.iter().any(|k| k.tile == Some(config)));
        check_against_cpu(&gpu, &format!("{config}"), g, ins, ps, &HookSelection::None);
    }
}

#[test]
fn register_tilings_match_cpu_for_every_matmul_form() {
    let Some(_) = gpu_or_skip() else { return };
    let (g, ins, ps) = every_form();
    check_family(false, &g, &ins, &ps);
}

#[test]
fn workgroup_tilings_match_cpu_for_every_matmul_form() {
    let Some(_) = gpu_or_skip() else { return };
    let (g, ins, ps) = every_form();
    check_family(true, &g, &ins, &ps);
}

#[test]
fn a_transformer_gradient_matches_cpu_with_each_tiling() {
    let Some(_) = gpu_or_skip() else { return };
    let c = graphs::transformer_grad();
    for config in [
        TileConfig::Register {
            workgroup: 128,
            rows: 8,
            cols: 4,
        },
        TileConfig::Workgroup {
            bm: 32,
            bn: 32,
            bk: 8,
            rows: 4,
            cols: 4,
        },
        TileConfig::Workgroup {
            bm: 64,
            bn: 64,
            bk: 16,
            rows: 8,
            cols: 8,
        },
    ] {
        check_against_cpu(
            &backend(config),
            &format!("{} with {config}", c.name),
            &c.graph,
            &c.inputs,
            &c.params,
            &HookSelection::None,
        );
    }
}

#[test]
fn every_example_gradient_matches_cpu_with_each_tiling() {
    let Some(_) = gpu_or_skip() else { return };
    // 8-row tiles of both kinds, 8×8 in workgroup memory (4-row ones are covered above).
    let configs = [
        TileConfig::Register {
            workgroup: 128,
            rows: 8,
            cols: 8,
        },
        TileConfig::Workgroup {
            bm: 64,
            bn: 64,
            bk: 16,
            rows: 8,
            cols: 8,
        },
    ];
    let backends: Vec<WgpuBackend> = configs.into_iter().map(backend).collect();
    let none = HookSelection::None;
    for name in examples::names() {
        let c = examples::gradient(&name, 2, 8, 5);
        let want = CpuBackend::new()
            .run(&c.graph, &c.inputs, &c.params, &none)
            .unwrap();
        for (gpu, config) in backends.iter().zip(configs) {
            let got = gpu.run(&c.graph, &c.inputs, &c.params, &none).unwrap();
            assert_close(
                &format!("{} with {config}", c.name),
                &got.outputs,
                &want.outputs,
            );
        }
    }
}

/// Two shapes: q and k of one normed input (a grouped kernel) and a product with a
/// residual epilogue.
fn small_model() -> (Graph, HashMap<String, Tensor>, ParamStore) {
    let (g, ins, ps) = every_form();
    // Keep it cheap: only the prologue/epilogue outputs.
    let mut g2 = g.clone();
    g2.outputs
        .retain(|(n, _)| matches!(n.as_str(), "q" | "k" | "residual"));
    let g2 = weft_compiler::passes::optimize(&g2).unwrap();
    let ins = ins
        .into_iter()
        .filter(|(n, _)| g2.inputs.iter().any(|i| &i.name == n))
        .collect();
    (g2, ins, ps)
}

#[test]
fn autotune_caches_choices_per_adapter_and_a_second_backend_reuses_them() {
    let Some(_) = gpu_or_skip() else { return };
    let dir = std::env::temp_dir().join(format!("weft-autotune-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // The cache directory is passed, not set in the environment: setting variables while
    // other threads (and the Vulkan driver) read them is a race.
    let cached = || {
        WgpuBackend::with_tuning(WgpuBackend::native_options(), TuneCache::Dir(dir.clone()))
            .unwrap()
    };
    let (g, ins, ps) = small_model();
    let candidates = vec![
        TileConfig::default(),
        TileConfig::Register {
            workgroup: 128,
            rows: 8,
            cols: 4,
        },
        TileConfig::Workgroup {
            bm: 32,
            bn: 32,
            bk: 8,
            rows: 4,
            cols: 4,
        },
    ];
    let opts = AutotuneOptions {
        repeats: 2,
        retune: false,
        candidates: candidates.clone(),
    };
    let mut first = cached();
    first.poison = true;
    let file = first.autotune_cache_file().unwrap().to_path_buf();
    assert!(file.starts_with(&dir), "{}", file.display());
    let name = file.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        name.starts_with("autotune-") && name.ends_with(".json"),
        "{name}"
    );
    let report = first.autotune(&g, &opts).unwrap();
    eprintln!("{}", report.table());
    assert_eq!(report.cache_file.as_deref(), Some(file.as_path()));
    assert_eq!(report.shapes.len(), 2, "{report:?}");
    let mut chosen: Vec<(MatmulShape, TileConfig)> = Vec::new();
    for s in &report.shapes {
        assert!(!s.cached);
        assert!(candidates.contains(&s.choice.config), "{:?}", s.choice);
        let times: Vec<_> = s.choice.candidates.iter().map(|c| c.config).collect();
        assert_eq!(times, candidates);
        for c in &s.choice.candidates {
            let ms =
                c.ms.unwrap_or_else(|| panic!("{} not timed: {:?}", c.config, c.note));
            assert!(ms.is_finite() && ms > 0.0);
        }
        chosen.push((s.choice.shape, s.choice.config));
    }
    assert_eq!(report.timed, 2 * candidates.len());
    assert_eq!(first.autotune_timings(), report.timed);
    assert!(file.exists());
    // Runs after tuning use the choices and are still right.
    check_against_cpu(&first, "tuned", &g, &ins, &ps, &HookSelection::None);

    // A second backend of the same adapter loads the choices and times nothing.
    let second = cached();
    assert!(second.autotune_warnings().is_empty());
    for (s, c) in &chosen {
        assert_eq!(second.tuning().get(s), *c);
    }
    let program = second.program(&g, &HookSelection::None).unwrap();
    for k in program.kernels.iter().filter(|k| k.matmul.is_some()) {
        let want = chosen.iter().find(|(s, _)| Some(*s) == k.matmul).unwrap().1;
        assert_eq!(k.tile, Some(want), "{}", k.name);
    }
    let again = second.autotune(&g, &opts).unwrap();
    assert!(again.shapes.iter().all(|s| s.cached));
    assert_eq!((again.timed, second.autotune_timings()), (0, 0));

    // Without a cache (what `WEFT_AUTOTUNE=0` selects) nothing is loaded.
    let off = WgpuBackend::with_tuning(WgpuBackend::native_options(), TuneCache::Off).unwrap();
    assert!(off.tuning().shapes.is_empty());

    // A corrupt file is a warning naming it, the backend works with defaults, and tuning
    // replaces the file (atomically: no temporary file is left).
    std::fs::write(&file, "{\"version\": 1, \"choi").unwrap();
    let mut broken = cached();
    broken.poison = true;
    let warnings = broken.autotune_warnings();
    assert!(
        warnings.len() == 1 && warnings[0].contains("corrupt") && warnings[0].contains(&name),
        "{warnings:?}"
    );
    assert!(broken.tuning().shapes.is_empty());
    check_against_cpu(
        &broken,
        "corrupt cache",
        &g,
        &ins,
        &ps,
        &HookSelection::None,
    );
    let retuned = broken
        .autotune(
            &g,
            &AutotuneOptions {
                repeats: 1,
                ..opts.clone()
            },
        )
        .unwrap();
    assert_eq!(retuned.timed, 2 * candidates.len());
    let reloaded = cached();
    assert!(reloaded.autotune_warnings().is_empty());
    assert_eq!(reloaded.tuned_choices().len(), 2);
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
