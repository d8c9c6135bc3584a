//! `weft train`: the main job. A progress bar while it runs; Ctrl-C saves and exits. A run
//! directory that already holds a run is refused unless `--resume` continues it or
//! `--overwrite` moves it aside (`docs/run-directory.md`).

use super::spec::load_checked;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use weft_runtime::train::{start_over, train as run_training, TrainOptions};

/// Arguments of `weft train`.
pub struct TrainArgs {
    pub spec: PathBuf,
    pub backend: String,
    pub steps: Option<u64>,
    pub seed: Option<u64>,
    pub out: Option<PathBuf>,
    pub resume: bool,
    /// Move an existing run in `out` aside before starting (see [`start_over`]).
    pub overwrite: bool,
    /// Initial weights (safetensors) instead of the seeded initialisation.
    pub init: Option<PathBuf>,
}

pub fn train(a: &TrainArgs) -> ExitCode {
    let Some((spec, src)) = load_checked(&a.spec) else {
        return ExitCode::FAILURE;
    };
    let out = a.out.clone().unwrap_or_else(|| {
        let stem = a
            .spec
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "run".into());
        PathBuf::from("runs").join(stem)
    });
    if a.overwrite {
        match start_over(&out) {
            Ok(Some(old)) => eprintln!("moved the earlier run aside to {}", old.display()),
            Ok(None) => {}
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let init = match a.init.as_deref().map(weft_runtime::tensor_file::load) {
        None => None,
        Some(Ok(w)) => Some(w.into_iter().collect::<weft_runtime::ParamStore>()),
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (backend, which) = match weft_runtime::select_backend(&a.backend) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("{which}");
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // A second Ctrl-C while saving falls through to the default handler only after the flag
        // is set; the loop checks it after every step.
        let _ = ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst));
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  [{elapsed} < {eta}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut on_log = |m: &weft_runtime::rundir::StepMetrics, total: u64| {
        bar.set_length(total);
        bar.set_position(m.step);
        bar.set_message(format!(
            "loss {:.4}  lr {:.2e}  {:.0} tok/s",
            m.loss, m.lr, m.tokens_per_s
        ));
    };
    let spec_dir = a.spec.parent().map(PathBuf::from).unwrap_or_default();
    let result = run_training(
        &spec,
        &src,
        backend.as_ref(),
        TrainOptions {
            out: out.clone(),
            spec_dir,
            steps: a.steps,
            seed: a.seed,
            resume: a.resume,
            init: init.as_ref(),
            stop: Some(&stop),
            on_log: &mut on_log,
        },
    );
    bar.finish_and_clear();
    match result {
        Ok(r) => {
            let ck = r
                .last_checkpoint
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "none".into());
            if r.interrupted {
                eprintln!("interrupted at step {}; saved {ck}", r.steps_done);
                eprintln!(
                    "continue with: weft train {} --out {} --resume",
                    a.spec.display(),
                    out.display()
                );
            } else {
                println!(
                    "trained {} steps, final loss {:.4}; checkpoint {ck}",
                    r.steps_done, r.final_loss
                );
            }
            println!(
                "run directory: {}   (open it with: weft view {})",
                out.display(),
                out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
