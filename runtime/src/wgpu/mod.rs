//! The wgpu backend: runs codegen's kernels on any adapter wgpu finds (Vulkan, Metal, DX12,
//! GL; lavapipe on a machine without a GPU).
//!
//! Per graph (and hook set) it compiles once and caches the pipelines, bind groups and
//! buffers ([`compiled`]); each run uploads inputs and parameters, records every dispatch
//! and the readback copies into one command buffer, submits once and waits with a timeout
//! ([`exec`]). Device errors, device loss and timeouts are [`RunError::Device`], never panics.
//!
//! Hook replacement ([`Backend::run_replacing`]) runs the graph rewritten by
//! [`crate::replace::split`]: each replaced value's readers read a `where(mask, with, value)`
//! of two new inputs filled on the host, so one submission still runs the whole graph, and
//! a sweep that patches the same hook points with other values or regions reuses one
//! compiled program.

pub mod autotune;
mod compiled;
mod exec;
pub mod profile;
pub mod resident;

use crate::backend::{Backend, HookSelection, Outputs, ParamStore};
use crate::error::RunError;
use crate::replace::{split, Intervention};
use crate::tensor::Tensor;
use compiled::Compiled;
use exec::Feeds;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weft_compiler::codegen::{compile, CodegenOptions};
use weft_compiler::ir::Graph;

/// Errors the device reported outside a call (validation, loss), drained after each run.
type ErrorLog = Arc<Mutex<Vec<String>>>;

/// A wgpu device with a per-graph cache of compiled programs.
pub struct WgpuBackend {
    device: wgpu::Device,
    queue: wgpu::Queue,
    name: String,
    info: wgpu::AdapterInfo,
    options: CodegenOptions,
    errors: ErrorLog,
    cache: Mutex<HashMap<u64, Arc<Compiled>>>,
    /// Fill planned buffers with NaN (0xFF bytes) before each run, so a kernel that leaves
    /// an element unwritten produces NaN instead of a stale value (tests turn this on).
    pub poison: bool,
    /// How long a run may wait for the device before it is an error (software drivers have
    /// been seen to hang).
    pub timeout: Duration,
    /// Matmul tile choices (autotune cache) this backend compiles with; see [`autotune`].
    tuning: autotune::Tuning,
}

impl WgpuBackend {
    /// Picks an adapter (wgpu's default choice; `WGPU_BACKEND=vulkan|gl|...` narrows it) and
    /// opens a device on it with the adapter's own limits, which codegen then targets: a
    /// native adapter binds more than WebGPU's portable 8 storage buffers per stage, so
    /// more kernels fuse horizontally. On a CPU adapter (lavapipe) matmuls read their A
    /// operand from a buffer rather than through a prologue: the profile of a gpt.weft
    /// training step measured prologues slower there (BENCHMARKS.md).
    pub fn new() -> Result<Self, RunError> {
        let mut be = Self::with_options(Self::native_options())?;
        let gpu = be.info.device_type != wgpu::DeviceType::Cpu;
        be.options.matmul_prologues = gpu;
        // The tiled attention forward's barriers are slow on a CPU adapter too.
        be.options.tiled_attention = gpu;
        Ok(be)
    }

    /// Codegen options that take every limit from the device (see [`WgpuBackend::new`]),
    /// with matmul prologues and the tiled attention forward on (what a GPU runs).
    pub fn native_options() -> CodegenOptions {
        CodegenOptions {
            max_storage_buffers_per_stage: u32::MAX,
            max_storage_buffer_binding_size: u64::MAX,
            tiled_attention: true,
            ..CodegenOptions::default()
        }
    }

    /// Like [`WgpuBackend::new`], with codegen options (e.g. `fuse: false`). The binding
    /// limits in `options` are lowered to the device's where it allows less. Matmul tile
    /// choices cached for this adapter are loaded ([`autotune::TuneCache::FromEnv`]).
    pub fn with_options(options: CodegenOptions) -> Result<Self, RunError> {
        Self::with_tuning(options, autotune::TuneCache::FromEnv)
    }

    /// Like [`WgpuBackend::with_options`], with the autotune cache to load and write.
    pub fn with_tuning(
        options: CodegenOptions,
        cache: autotune::TuneCache,
    ) -> Result<Self, RunError> {
        let instance = wgpu::Instance::new({
            // Compute needs no GL/EGL: probing them prints display-server noise on
            // headless machines. `WGPU_BACKEND=gl` still selects GL explicitly.
            let mut d = wgpu::InstanceDescriptor::new_without_display_handle();
            d.backends = wgpu::Backends::PRIMARY;
            d.with_env()
        });
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        }))
        .map_err(|e| RunError::Device(format!("no GPU adapter: {e}")))?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("weft"),
            required_limits: limits.clone(),
            // Only for `profile` (GPU-side kernel times); absent, it times by wall clock.
            required_features: adapter.features() & wgpu::Features::TIMESTAMP_QUERY,
            ..Default::default()
        }))
        .map_err(|e| RunError::Device(format!("cannot open {}: {e}", info.name)))?;
        let errors: ErrorLog = Arc::default();
        let log = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            log.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(e.to_string());
        }));
        let log = errors.clone();
        device.set_device_lost_callback(move |reason, msg| {
            log.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(format!("device lost ({reason:?}): {msg}"));
        });
        let options = CodegenOptions {
            max_storage_buffers_per_stage: options
                .max_storage_buffers_per_stage
                .min(limits.max_storage_buffers_per_shader_stage),
            max_storage_buffer_binding_size: options
                .max_storage_buffer_binding_size
                .min(limits.max_storage_buffer_binding_size),
            max_workgroup_storage_bytes: options
                .max_workgroup_storage_bytes
                .min(limits.max_compute_workgroup_storage_size),
            max_invocations_per_workgroup: options
                .max_invocations_per_workgroup
                .min(limits.max_compute_invocations_per_workgroup),
            ..options
        };
        let tuning = autotune::Tuning::load(&info, cache, &options.tiles);
        Ok(WgpuBackend {
            name: format!("wgpu ({} | {:?})", info.name, info.backend),
            device,
            queue,
            info,
            options,
            errors,
            cache: Mutex::default(),
            poison: false,
            timeout: wait_limit(),
            tuning,
        })
    }

    /// The adapter's name (e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`).
    pub fn adapter_name(&self) -> &str {
        &self.info.name
    }

    /// Full adapter information.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// The codegen options this device was created with (its tile table before cached and
    /// tuned choices; [`WgpuBackend::tuning`] has those).
    pub fn options(&self) -> &CodegenOptions {
        &self.options
    }

    /// The program `run` would execute for `graph` with these hooks (for inspection and
    /// tests: kernel counts, the buffer plan, the WGSL).
    pub fn program(
        &self,
        graph: &Graph,
        hooks: &HookSelection,
    ) -> Result<weft_compiler::codegen::Program, RunError> {
        Ok(compile(
            graph,
            &hook_names(graph, hooks)?,
            &self.codegen_options(),
        )?)
    }

    /// The `n` map callbacks' results on `rx`, once the submission they follow has finished
    /// (fewer if the timeout passes first). Our own wait can return before they arrive:
    /// another thread polling the same device may be running them at that moment (wgpu runs
    /// callbacks outside its locks), so this polls until all are in.
    fn map_results<T>(&self, rx: &std::sync::mpsc::Receiver<T>, n: usize) -> Vec<T> {
        let deadline = std::time::Instant::now() + self.timeout;
        let mut got: Vec<T> = rx.try_iter().collect();
        while got.len() < n && std::time::Instant::now() < deadline {
            let _ = self.device.poll(wgpu::PollType::Poll);
            std::thread::sleep(Duration::from_micros(200));
            got.extend(rx.try_iter());
        }
        got
    }

    /// Errors the device reported since the last call.
    fn take_errors(&self) -> Vec<String> {
        std::mem::take(&mut *self.errors.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The cached compiled graph, compiling (and uploading constants) on first use.
    fn compiled(&self, graph: &Graph, hooks: &[String]) -> Result<Arc<Compiled>, RunError> {
        let mut h = DefaultHasher::new();
        serde_json::to_string(graph)
            .map_err(|e| RunError::Device(format!("cannot fingerprint the graph: {e}")))?
            .hash(&mut h);
        hooks.hash(&mut h);
        let key = h.finish();
        if let Some(c) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(c.clone());
        }
        let program = compile(graph, hooks, &self.codegen_options())?;
        debug_dump(&program);
        let compiled = Compiled::new(&self.device, graph, program)?;
        compiled.upload_consts(&self.queue, graph);
        let errors = self.take_errors();
        if !errors.is_empty() {
            return Err(RunError::Device(errors.join("; ")));
        }
        let compiled = Arc::new(compiled);
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, compiled.clone());
        Ok(compiled)
    }
}

/// `WEFT_DEBUG=1` lists kernels and launches, `=3` also prints the WGSL.
fn debug_dump(p: &weft_compiler::codegen::Program) {
    let level: u32 = std::env::var("WEFT_DEBUG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if level == 0 {
        return;
    }
    eprintln!(
        "weft: {} kernels, {} planned buffers ({} bytes)",
        p.kernels.len(),
        p.buffers.buffer_bytes.len(),
        p.buffers.peak_bytes
    );
    for k in &p.kernels {
        eprintln!(
            "  {} dispatch {:?} x {} ({} nodes)",
            k.name,
            k.dispatch,
            k.workgroup_size,
            k.nodes.len()
        );
        if level >= 3 {
            eprintln!("{}", k.wgsl);
        }
    }
}

fn hook_names(graph: &Graph, hooks: &HookSelection) -> Result<Vec<String>, RunError> {
    match hooks {
        HookSelection::None => Ok(Vec::new()),
        HookSelection::All => Ok(graph.hooks.iter().map(|(n, _)| n.clone()).collect()),
        HookSelection::Names(names) => {
            for n in names {
                if graph.hook(n).is_none() {
                    return Err(RunError::UnknownHook { name: n.clone() });
                }
            }
            Ok(names.clone())
        }
    }
}

impl Backend for WgpuBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(
        &self,
        graph: &Graph,
        inputs: &HashMap<String, Tensor>,
        params: &ParamStore,
        hooks: &HookSelection,
    ) -> Result<Outputs, RunError> {
        self.run_replacing(graph, inputs, params, hooks, &[])
    }

    /// Parameters, gradients and AdamW/SGD state stay in this device's buffers; the
    /// gradient norm, clipping and the update are kernels ([`resident`]).
    fn resident_trainer<'a>(
        &'a self,
        graph: &Graph,
        setup: &crate::resident::ResidentSetup,
    ) -> Option<Result<Box<dyn crate::resident::ResidentTrainer + 'a>, RunError>> {
        Some(
            resident::WgpuResident::new(self, graph, setup)
                .map(|r| Box::new(r) as Box<dyn crate::resident::ResidentTrainer + 'a>),
        )
    }

    /// Runs `graph` rewritten by [`split`] (when anything is replaced): readers of a
    /// replaced hook point read the replacement, captured hooks report the value computed
    /// before it, as on the CPU backend. Replacements are checked as the CPU backend checks
    /// them ([`crate::replace::resolve_all`]) and fail with the same errors.
    fn run_replacing(
        &self,
        graph: &Graph,
        inputs: &HashMap<String, Tensor>,
        params: &ParamStore,
        hooks: &HookSelection,
        replace: &[Intervention],
    ) -> Result<Outputs, RunError> {
        weft_compiler::ir::verify(graph)?;
        let hooks = hook_names(graph, hooks)?;
        let rewritten;
        let (graph, feeds) = if replace.is_empty() {
            let feeds = Feeds {
                given: inputs,
                extra: &[],
            };
            (graph, feeds)
        } else {
            rewritten = split(graph, replace)?;
            let feeds = Feeds {
                given: inputs,
                extra: &rewritten.inputs,
            };
            (&rewritten.graph, feeds)
        };
        exec::check_feeds(graph, feeds, params)?;
        let compiled = self.compiled(graph, &hooks)?;
        exec::run(self, graph, &compiled, feeds, params)
    }
}

/// How long a submission may take before it counts as hung: 60 s, or `WEFT_GPU_TIMEOUT_S`
/// (a software adapter such as lavapipe on a loaded machine can need longer; CI sets it).
fn wait_limit() -> Duration {
    let secs = std::env::var("WEFT_GPU_TIMEOUT_S")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&s| s > 0)
        .unwrap_or(60);
    Duration::from_secs(secs)
}
