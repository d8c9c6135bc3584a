//! The context an experiment runs in: its specs, its backend, its run directories.

use crate::{Experiment, Options, ReproError};
use std::path::{Path, PathBuf};
use weft_dsl::typed::DataSource;
use weft_dsl::Checked;
use weft_runtime::probes::{Model, ProbeError};
use weft_runtime::rundir::{read_metrics, StepMetrics};
use weft_runtime::train::{train, TrainOptions};
use weft_runtime::{Backend, ParamStore};

/// A checked spec of `examples/repro/`, with train settings an experiment may override.
pub struct Spec {
    pub checked: Checked,
    pub source: String,
    pub path: PathBuf,
}

impl Spec {
    /// Overrides a `train { }` setting (steps, batch, seq, eval_every...) for this experiment.
    pub fn set(&mut self, key: &str, v: i64) {
        if let Some(t) = self.checked.train.as_mut() {
            t.set_int(key, v);
        }
    }

    /// Points the spec's `data = text(...)` at `path` (a corpus the experiment wrote; made
    /// absolute so it does not resolve against the spec's folder).
    pub fn set_data_path(&mut self, path: &Path) -> Result<(), ReproError> {
        let abs = std::path::absolute(path).map_err(|source| ReproError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        match self.checked.train.as_mut().map(|t| &mut t.data) {
            Some(DataSource::Text { path, .. }) => {
                *path = abs.display().to_string();
                Ok(())
            }
            _ => Err(ReproError::Spec(format!(
                "{}: the experiment writes its corpus, so `data` must be `text(...)`",
                self.path.display()
            ))),
        }
    }

    /// An integer `train { }` setting.
    pub fn train_int(&self, key: &str) -> Option<i64> {
        self.checked.train.as_ref().and_then(|t| t.int(key))
    }

    /// Replaces the optimizer's weight decay (adamw or sgd), keeping its other arguments.
    pub fn set_weight_decay(&mut self, wd: f64) {
        let Some(t) = self.checked.train.as_mut() else {
            return;
        };
        *t.optimizer.weight_decay_mut() = wd;
    }
}

/// A finished training run.
pub struct Trained {
    pub name: String,
    pub dir: PathBuf,
    pub params: ParamStore,
    pub final_loss: f64,
    pub wall_s: f64,
}

impl Trained {
    /// Every `kind: eval` metrics line of the run, in step order.
    pub fn evals(&self) -> Vec<serde_json::Value> {
        read_metrics(&self.dir.join("metrics.jsonl"))
            .unwrap_or_default()
            .into_iter()
            .filter(|l| l["kind"] == "eval")
            .collect()
    }

    /// Number of scalars in the model's parameters.
    pub fn param_count(&self) -> usize {
        self.params
            .values()
            .map(|t| t.shape.iter().product::<usize>())
            .sum()
    }

    /// The last validation loss the run logged (NaN if none).
    pub fn val_loss(&self) -> f64 {
        self.evals()
            .iter()
            .rev()
            .find_map(|l| l["val_loss"].as_f64())
            .unwrap_or(f64::NAN)
    }

    /// `(step, value)` of a scalar an eval probe logged every `eval_every` steps.
    pub fn probe_curve(&self, probe: &str, field: &str) -> Vec<(u64, f64)> {
        self.evals()
            .iter()
            .filter(|l| l["probe"] == probe)
            .filter_map(|l| Some((l["step"].as_u64()?, l[field].as_f64()?)))
            .collect()
    }
}

/// One experiment's context.
pub struct Lab {
    name: &'static str,
    opts: Options,
    backend: Box<dyn Backend>,
    backend_line: String,
    runs: Vec<PathBuf>,
}

impl Lab {
    pub(crate) fn new(e: &Experiment, o: &Options) -> Result<Self, ReproError> {
        let (backend, backend_line) =
            weft_runtime::select_backend(&o.backend).map_err(ReproError::Other)?;
        Ok(Lab {
            name: e.name,
            opts: o.clone(),
            backend,
            backend_line,
            runs: Vec::new(),
        })
    }

    /// `full` normally, `quick` in quick mode.
    pub fn pick<T>(&self, full: T, quick: T) -> T {
        if self.opts.quick {
            quick
        } else {
            full
        }
    }

    pub fn quick(&self) -> bool {
        self.opts.quick
    }

    pub fn seed(&self) -> u64 {
        self.opts.seed
    }

    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// The backend and adapter, as `weft train` prints them.
    pub fn backend_line(&self) -> String {
        self.backend_line.clone()
    }

    /// This experiment's output folder (`out/NAME`).
    pub fn dir(&self) -> PathBuf {
        self.opts.out.join(self.name)
    }

    pub(crate) fn runs(&self) -> Vec<PathBuf> {
        self.runs.clone()
    }

    /// Loads and checks `examples/repro/NAME/FILE`.
    pub fn spec(&self, file: &str) -> Result<Spec, ReproError> {
        let path = self
            .opts
            .root
            .join("examples/repro")
            .join(self.name)
            .join(file);
        let source = std::fs::read_to_string(&path).map_err(|source| ReproError::Io {
            path: path.clone(),
            source,
        })?;
        let checked = weft_dsl::check_source(&source).map_err(|d| {
            ReproError::Spec(format!(
                "{} has {} error(s); run `weft check {}`",
                path.display(),
                d.len(),
                path.display()
            ))
        })?;
        Ok(Spec {
            checked,
            source,
            path,
        })
    }

    /// Trains `spec` into `out/NAME/runs/RUN` (replacing an earlier run there), starting from
    /// `init` when given, with the experiment's seed.
    pub fn train(
        &mut self,
        spec: &Spec,
        run: &str,
        init: Option<&ParamStore>,
    ) -> Result<Trained, ReproError> {
        self.train_seeded(spec, run, init, self.opts.seed)
    }

    /// As [`Lab::train`] with an explicit seed (one run per seed of a multi-seed experiment).
    pub fn train_seeded(
        &mut self,
        spec: &Spec,
        run: &str,
        init: Option<&ParamStore>,
        seed: u64,
    ) -> Result<Trained, ReproError> {
        let dir = self.dir().join("runs").join(run);
        let _ = std::fs::remove_dir_all(&dir);
        let t0 = std::time::Instant::now();
        let mut on_log = |_: &StepMetrics, _: u64| {};
        let r = train(
            &spec.checked,
            &spec.source,
            self.backend.as_ref(),
            TrainOptions {
                out: dir.clone(),
                spec_dir: spec
                    .path
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default(),
                steps: None,
                seed: Some(seed),
                resume: false,
                stop: None,
                init,
                on_log: &mut on_log,
            },
        )
        .map_err(|source| ReproError::Train {
            run: run.into(),
            source: Box::new(source),
        })?;
        self.runs.push(dir.clone());
        Ok(Trained {
            name: run.into(),
            dir,
            params: r.params,
            final_loss: r.final_loss,
            wall_s: t0.elapsed().as_secs_f64(),
        })
    }

    /// A probe-ready view of a trained model.
    pub fn model<'a>(&'a self, spec: &'a Spec, params: &'a ParamStore) -> Model<'a> {
        Model::new(&spec.checked, params, self.backend.as_ref())
    }

    /// Runs a probe, naming it in the error.
    pub fn probe<T>(
        &self,
        what: &str,
        f: impl FnOnce() -> Result<T, ProbeError>,
    ) -> Result<T, ReproError> {
        f().map_err(|source| ReproError::Probe {
            what: what.into(),
            source: Box::new(source),
        })
    }
}
