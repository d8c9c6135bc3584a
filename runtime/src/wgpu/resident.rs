//! Device-resident training on wgpu ([`crate::resident`]): the training graph is compiled
//! once into a program of its own (not the backend's shared cache, so no other run can
//! rewrite its parameter buffers), whose parameter buffers *are* the parameters for the
//! whole run. Each step writes the batch and a few scalars, runs the graph, accumulates
//! gradients when there are micro-batches, measures the global gradient norm (two
//! deterministic reduction kernels), and updates every trainable parameter and its moments
//! in place with one fused kernel per parameter (`optim/*.wgsl`, validated by naga when the
//! trainer is made). One map of a small buffer per step brings back the loss, the
//! objective's parts and the norm.

use super::compiled::Compiled;
use super::exec::{bytes_of, check_inputs, encode_kernels, Feeds};
use super::WgpuBackend;
use crate::backend::ParamStore;
use crate::error::RunError;
use crate::optim::{Gradients, Optimizer, OptimizerConfig, OptimizerState, GRAD_PREFIX};
use crate::resident::{ResidentSetup, ResidentStep, ResidentTrainer, Traffic};
use crate::tensor::Tensor;
use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;
use weft_compiler::codegen::{compile, BufferRef, Kernel};
use weft_compiler::ir::{numel, Graph};

const COMMON: &str = include_str!("optim/common.wgsl");

/// The optimizer kernels: (name, source without the common header).
pub const KERNELS: [(&str, &str); 5] = [
    ("sumsq", include_str!("optim/sumsq.wgsl")),
    ("norm", include_str!("optim/norm.wgsl")),
    ("adamw", include_str!("optim/adamw.wgsl")),
    ("sgd", include_str!("optim/sgd.wgsl")),
    ("accumulate", include_str!("optim/accumulate.wgsl")),
];

/// Invocations per workgroup of every optimizer kernel (the `@workgroup_size` in the files).
const WG: u32 = 256;
/// At most this many workgroups per update dispatch; invocations stride over the rest.
const MAX_GROUPS: u32 = 4096;
/// At most this many partial sums per parameter in the norm reduction.
const MAX_PARTS: u32 = 256;

/// The full WGSL of optimizer kernel `name` (common header + body), checked by naga and by
/// codegen's barrier analysis: an error names the kernel.
pub fn kernel_source(name: &str) -> Result<String, RunError> {
    let body = KERNELS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| *b)
        .ok_or_else(|| RunError::Device(format!("no optimizer kernel `{name}`")))?;
    let wgsl = format!("{COMMON}\n{body}");
    let kernel = Kernel {
        name: format!("optim_{name}"),
        wgsl: wgsl.clone(),
        inputs: Vec::new(),
        outputs: Vec::new(),
        workgroup_size: WG,
        dispatch: [1, 1, 1],
        nodes: Vec::new(),
        matmul: None,
        tile: None,
    };
    weft_compiler::codegen::validate::validate_wgsl(&kernel)
        .and_then(|_| weft_compiler::codegen::validate::check_barriers(&kernel))
        .map_err(|e| RunError::Device(format!("optimizer kernel `{name}`: {e}")))?;
    Ok(wgsl)
}

/// Host mirror of `Step` in `common.wgsl` (12 four-byte fields).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct StepScalars {
    lr: f32,
    decay: f32,
    beta1: f32,
    beta2: f32,
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    bc1: f32,
    bc2_sqrt: f32,
    eps: f32,
    inv_k: f32,
    clip: f32,
    momentum_on: u32,
}

/// Host mirror of `Info` in `common.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Info {
    n: u32,
    decays: u32,
    part: u32,
    parts: u32,
}

/// One parameter of the graph and its device buffer.
struct Param {
    name: String,
    shape: Vec<usize>,
    buffer: wgpu::Buffer,
}

/// One parameter the optimizer updates.
struct Trained {
    /// Index into `params`.
    param: usize,
    /// The graph's `grad.{name}` output buffer.
    source: wgpu::Buffer,
    /// The running sum over micro-batches (`None`: the update reads `source` directly).
    acc: Option<wgpu::Buffer>,
    m: Option<wgpu::Buffer>,
    v: Option<wgpu::Buffer>,
    groups: u32,
    parts: u32,
    sumsq: wgpu::BindGroup,
    update: wgpu::BindGroup,
    accumulate: Option<wgpu::BindGroup>,
}

impl Trained {
    /// What the norm and update kernels read: the sum over micro-batches, or the gradient.
    fn grad(&self) -> &wgpu::Buffer {
        self.acc.as_ref().unwrap_or(&self.source)
    }
}

struct Pipe {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

/// The wgpu [`ResidentTrainer`].
pub(super) struct WgpuResident<'a> {
    be: &'a WgpuBackend,
    graph: Graph,
    compiled: Compiled,
    config: OptimizerConfig,
    /// Optimizer steps taken (AdamW's bias correction uses the next one).
    t: u64,
    accumulate: usize,
    clip: f64,
    params: Vec<Param>,
    trained: Vec<Trained>,
    step_buf: wgpu::Buffer,
    norm_buf: wgpu::Buffer,
    norm_bind: wgpu::BindGroup,
    /// Every micro-batch's loss, copied on the device for the norm kernel: a non-finite loss
    /// skips the update as a non-finite gradient norm does. `None` without a `loss` output.
    losses: Option<(wgpu::Buffer, wgpu::Buffer)>,
    pipes: HashMap<&'static str, Pipe>,
    /// Outputs read back each step (`loss`, `term.*`, `aux.*`): name, buffer, bytes.
    scalars: Vec<(String, wgpu::Buffer, u64)>,
    /// Mappable: every micro-batch's scalars, then the norm.
    staging: wgpu::Buffer,
    traffic: Traffic,
}

fn buffer(
    device: &wgpu::Device,
    label: &str,
    bytes: u64,
    usage: wgpu::BufferUsages,
) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes.max(4).next_multiple_of(4),
        usage,
        mapped_at_creation: false,
    })
}

/// Binding `i` = `bufs[i]`, whole buffers.
fn entries<'b>(bufs: &[&'b wgpu::Buffer]) -> Vec<wgpu::BindGroupEntry<'b>> {
    bufs.iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupEntry {
            binding: i as u32,
            resource: b.as_entire_binding(),
        })
        .collect()
}

const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_DST)
    .union(wgpu::BufferUsages::COPY_SRC);

impl<'a> WgpuResident<'a> {
    /// Compiles `graph` (a training step), uploads the parameters and the optimizer state
    /// once and builds the optimizer kernels' pipelines and bind groups.
    pub fn new(be: &'a WgpuBackend, graph: &Graph, s: &ResidentSetup) -> Result<Self, RunError> {
        weft_compiler::ir::verify(graph)?;
        if s.accumulate == 0 {
            return Err(RunError::Device(
                "resident training needs at least one micro-batch".into(),
            ));
        }
        super::exec::check_params(graph, s.params)?;
        let program = compile(graph, &[], &be.codegen_options())?;
        super::debug_dump(&program);
        let device = &be.device;
        let compiled = Compiled::build(device, graph, program, false)?;
        compiled.upload_consts(&be.queue, graph);
        let mut traffic = Traffic::default();

        let mut pipes = HashMap::new();
        for (name, _) in KERNELS {
            let wgsl = kernel_source(name)?;
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(name),
                source: wgpu::ShaderSource::Wgsl(wgsl.into()),
            });
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(name),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
            let layout = pipeline.get_bind_group_layout(0);
            pipes.insert(name, Pipe { pipeline, layout });
        }

        // Every parameter of the graph: the compiled program's buffer where it reads one
        // (so the graph sees each update without a copy), else a buffer of our own.
        let mut params = Vec::new();
        for (i, info) in graph.params.iter().enumerate() {
            let t = s
                .params
                .get(&info.name)
                .ok_or_else(|| RunError::MissingParam {
                    name: info.name.clone(),
                })?;
            let buf = match compiled.params.get(&i) {
                Some(b) => b.clone(),
                None => buffer(device, &info.name, (numel(&info.shape) * 4) as u64, STORAGE),
            };
            let bytes = bytes_of(t);
            traffic.other_up += bytes.len() as u64;
            be.queue.write_buffer(&buf, 0, &bytes);
            params.push(Param {
                name: info.name.clone(),
                shape: info.shape.clone(),
                buffer: buf,
            });
        }

        let adam = matches!(s.optimizer.config(), OptimizerConfig::Adamw(_));
        let momentum = match s.optimizer.config() {
            OptimizerConfig::Adamw(_) => true,
            OptimizerConfig::Sgd(g) => g.momentum != 0.0,
        };
        let state = s.optimizer.state();
        state
            .validate(s.params)
            .map_err(|e| RunError::Device(e.to_string()))?;
        let step_buf = buffer(
            device,
            "optim step",
            std::mem::size_of::<StepScalars>() as u64,
            STORAGE,
        );
        let norm_buf = buffer(device, "optim norm", 8, STORAGE);
        // A placeholder for SGD without momentum (bound, never read).
        let placeholder = buffer(device, "optim placeholder", 4, STORAGE);

        // Gradient outputs of trainable parameters, in name order.
        let mut grads: Vec<(usize, BufferRef)> = Vec::new();
        for r in &compiled.program.outputs {
            let Some(name) = r.name.strip_prefix(GRAD_PREFIX) else {
                continue;
            };
            if !s.trainable.iter().any(|t| t == name) {
                continue;
            }
            let Some(i) = params.iter().position(|p| p.name == name) else {
                return Err(RunError::Device(format!(
                    "gradient output `{}` has no parameter",
                    r.name
                )));
            };
            if r.shape != params[i].shape {
                return Err(RunError::Device(format!(
                    "gradient `{}` has shape {:?}, the parameter {:?}",
                    r.name, r.shape, params[i].shape
                )));
            }
            grads.push((i, r.buffer.clone()));
        }
        grads.sort_by(|a, b| params[a.0].name.cmp(&params[b.0].name));

        // One partial sum per workgroup of each parameter's norm kernel, in name order.
        let parts: Vec<u32> = grads
            .iter()
            .map(|(i, _)| {
                (numel(&params[*i].shape) as u32)
                    .div_ceil(WG)
                    .clamp(1, MAX_PARTS)
            })
            .collect();
        let part: u32 = parts.iter().sum();
        let partials = buffer(
            device,
            "optim partials",
            u64::from(part.max(1)) * 4,
            STORAGE,
        );
        let bind = |pipe: &str, bufs: &[&wgpu::Buffer]| -> wgpu::BindGroup {
            device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(pipe),
                layout: &pipes[pipe].layout,
                entries: &entries(bufs),
            })
        };
        let mut trained = Vec::new();
        let mut offset = 0u32;
        for ((i, r), parts) in grads.into_iter().zip(parts) {
            let p = &params[i];
            let n = numel(&p.shape);
            let n32 = u32::try_from(n).map_err(|_| {
                RunError::Device(format!(
                    "parameter `{}` has more than 2^32 elements",
                    p.name
                ))
            })?;
            let bytes = (n * 4) as u64;
            let source = compiled.buffer(&r).clone();
            // The update writes the parameter and reads the gradient in one dispatch: they
            // must be different buffers, and with micro-batches the sum needs its own.
            let own = matches!(r, BufferRef::Param(j) if j == i);
            let acc = (s.accumulate > 1 || own)
                .then(|| buffer(device, &format!("grad sum {}", p.name), bytes, STORAGE));
            let mut moment = |prefix: &str, map: &BTreeMap<String, Tensor>| {
                let b = buffer(device, &format!("{prefix}{}", p.name), bytes, STORAGE);
                // wgpu zeroes new buffers: only a resumed run's state is sent.
                if let Some(t) = map.get(&p.name) {
                    let data = bytes_of(t);
                    traffic.other_up += data.len() as u64;
                    be.queue.write_buffer(&b, 0, &data);
                }
                b
            };
            let m = momentum.then(|| moment("opt.m.", &state.m));
            let v = adam.then(|| moment("opt.v.", &state.v));
            let info = buffer(device, &format!("info {}", p.name), 16, STORAGE);
            let decays = u32::from(p.shape.len() >= 2);
            be.queue.write_buffer(
                &info,
                0,
                bytemuck::bytes_of(&Info {
                    n: n32,
                    decays,
                    part: offset,
                    parts,
                }),
            );
            offset += parts;
            let grad = acc.as_ref().unwrap_or(&source);
            let update = match (&m, &v) {
                (Some(m), Some(v)) if adam => bind(
                    "adamw",
                    &[&step_buf, &info, &norm_buf, &p.buffer, grad, m, v],
                ),
                _ => {
                    let m = m.as_ref().unwrap_or(&placeholder);
                    bind("sgd", &[&step_buf, &info, &norm_buf, &p.buffer, grad, m])
                }
            };
            trained.push(Trained {
                param: i,
                groups: n32.div_ceil(WG).clamp(1, MAX_GROUPS),
                parts,
                sumsq: bind("sumsq", &[&step_buf, &info, grad, &partials]),
                update,
                accumulate: acc
                    .as_ref()
                    .map(|a| bind("accumulate", &[&info, &source, a])),
                acc,
                m,
                v,
                source,
            });
        }
        let norm_info = buffer(device, "info norm", 16, STORAGE);
        be.queue.write_buffer(
            &norm_info,
            0,
            bytemuck::bytes_of(&Info {
                n: part,
                decays: 0,
                part: 0,
                parts: 0,
            }),
        );
        let mut scalars = Vec::new();
        for r in &compiled.program.outputs {
            // What the loop reads: the objective and its parts, never logits or gradients.
            let wanted =
                r.name == "loss" || r.name.starts_with("term.") || r.name.starts_with("aux.");
            if !wanted {
                continue;
            }
            // The first element: these are scalars.
            scalars.push((r.name.clone(), compiled.buffer(&r.buffer).clone(), 4));
        }
        // The norm kernel reads every micro-batch's loss (zeros, finite, without one).
        let loss_copies = buffer(device, "optim losses", 4 * s.accumulate as u64, STORAGE);
        be.queue
            .write_buffer(&loss_copies, 0, &vec![0; 4 * s.accumulate]);
        let losses = scalars
            .iter()
            .find(|(name, ..)| name == "loss")
            .map(|(_, buf, _)| (buf.clone(), loss_copies.clone()));
        let norm_bind = bind(
            "norm",
            &[&step_buf, &norm_info, &partials, &norm_buf, &loss_copies],
        );
        let per_micro: u64 = scalars.iter().map(|s| s.2).sum();
        let staging = buffer(
            device,
            "optim readback",
            per_micro * s.accumulate as u64 + 4,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        );
        let errors = be.take_errors();
        if !errors.is_empty() {
            return Err(RunError::Device(errors.join("; ")));
        }
        Ok(WgpuResident {
            be,
            graph: graph.clone(),
            compiled,
            config: s.optimizer.config().clone(),
            t: state.step,
            accumulate: s.accumulate,
            clip: s.clip,
            params,
            trained,
            step_buf,
            norm_buf,
            norm_bind,
            losses,
            pipes,
            scalars,
            staging,
            traffic,
        })
    }

    /// The scalars of step `t` (1-based) at learning rate `lr`, from the f64 hyperparameters.
    fn step_scalars(&self, lr: f64, t: u64) -> StepScalars {
        let inv_k = (1.0 / self.accumulate as f64) as f32;
        let clip = self.clip as f32;
        match &self.config {
            OptimizerConfig::Adamw(a) => StepScalars {
                lr: lr as f32,
                decay: (1.0 - lr * a.weight_decay) as f32,
                beta1: a.beta1 as f32,
                beta2: a.beta2 as f32,
                one_minus_beta1: (1.0 - a.beta1) as f32,
                one_minus_beta2: (1.0 - a.beta2) as f32,
                bc1: (1.0 - a.beta1.powf(t as f64)) as f32,
                bc2_sqrt: (1.0 - a.beta2.powf(t as f64)).sqrt() as f32,
                eps: a.eps as f32,
                inv_k,
                clip,
                momentum_on: 1,
            },
            OptimizerConfig::Sgd(g) => StepScalars {
                lr: lr as f32,
                decay: g.weight_decay as f32,
                beta1: g.momentum as f32,
                beta2: 0.0,
                one_minus_beta1: 0.0,
                one_minus_beta2: 0.0,
                bc1: 1.0,
                bc2_sqrt: 1.0,
                eps: 0.0,
                inv_k,
                clip,
                momentum_on: u32::from(g.momentum != 0.0),
            },
        }
    }

    /// Copies `bufs` (buffer, bytes) to the host in one submission, as f32 each.
    fn read(&mut self, bufs: &[(&wgpu::Buffer, u64)]) -> Result<Vec<Vec<f32>>, RunError> {
        let total: u64 = bufs.iter().map(|b| b.1.next_multiple_of(4)).sum();
        let staging = buffer(
            &self.be.device,
            "resident readback",
            total,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        );
        let mut enc = self.be.device.create_command_encoder(&Default::default());
        let mut at = 0;
        for (b, bytes) in bufs {
            let bytes = bytes.next_multiple_of(4);
            enc.copy_buffer_to_buffer(b, 0, &staging, at, bytes);
            at += bytes;
        }
        let data = self.submit_and_map(enc, &staging)?;
        self.traffic.other_down += total;
        let mut out = Vec::new();
        let mut at = 0usize;
        for (_, bytes) in bufs {
            let n = *bytes as usize;
            out.push(bytemuck::pod_collect_to_vec(&data[at..at + n]));
            at += n.next_multiple_of(4);
        }
        Ok(out)
    }

    /// Submits `enc`, waits (with the backend's timeout) and returns `staging`'s bytes.
    fn submit_and_map(
        &self,
        enc: wgpu::CommandEncoder,
        staging: &wgpu::Buffer,
    ) -> Result<Vec<u8>, RunError> {
        let be = self.be;
        let submission = be.queue.submit([enc.finish()]);
        let (tx, rx) = mpsc::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        let waited = be.device.poll(wgpu::PollType::Wait {
            submission_index: Some(submission),
            timeout: Some(be.timeout),
        });
        let errors = be.take_errors();
        // Wait for the callback only when the device finished well (it may never come else).
        let mapped = if errors.is_empty() && waited.is_ok() {
            be.map_results(&rx, 1)
        } else {
            rx.try_iter().collect()
        }
        .pop()
        .ok_or(());
        let fail = |why: String| {
            if matches!(mapped, Ok(Ok(()))) {
                staging.unmap();
            }
            Err(RunError::Device(why))
        };
        if !errors.is_empty() {
            return fail(errors.join("; "));
        }
        if let Err(e) = waited {
            return fail(format!(
                "waiting for the device ({:?} limit): {e}",
                be.timeout
            ));
        }
        match &mapped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return fail(format!("reading back: {e}")),
            Err(_) => return fail("reading back: not mapped after the device finished".into()),
        }
        let data = staging
            .slice(..)
            .get_mapped_range()
            .map_err(|e| RunError::Device(format!("reading back: {e}")))?
            .to_vec();
        staging.unmap();
        Ok(data)
    }

    fn dispatch(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        pipe: &str,
        bind: &wgpu::BindGroup,
        groups: u32,
    ) {
        pass.set_pipeline(&self.pipes[pipe].pipeline);
        pass.set_bind_group(0, bind, &[]);
        pass.dispatch_workgroups(groups, 1, 1);
    }
}

impl ResidentTrainer for WgpuResident<'_> {
    fn step(
        &mut self,
        micro: &[HashMap<String, Tensor>],
        lr: f64,
    ) -> Result<ResidentStep, RunError> {
        if micro.len() != self.accumulate {
            return Err(RunError::Device(format!(
                "{} micro-batches for a trainer made for {}",
                micro.len(),
                self.accumulate
            )));
        }
        for ins in micro {
            check_inputs(
                &self.graph,
                Feeds {
                    given: ins,
                    extra: &[],
                },
            )?;
        }
        let t_enc = std::time::Instant::now();
        let _turn = self
            .compiled
            .run_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let be = self.be;
        let next = self.t + 1;
        let scalars = self.step_scalars(lr, next);
        be.queue
            .write_buffer(&self.step_buf, 0, bytemuck::bytes_of(&scalars));
        let mut up = std::mem::size_of::<StepScalars>() as u64;
        let per_micro: u64 = self.scalars.iter().map(|s| s.2).sum();
        let mut last = None;
        for (k, ins) in micro.iter().enumerate() {
            super::exec::poison(be, &self.compiled);
            // Written before this submission, after the previous one: the queue orders them.
            for (name, buf) in &self.compiled.inputs {
                let t = ins
                    .get(name)
                    .ok_or_else(|| RunError::MissingInput { name: name.clone() })?;
                let bytes = bytes_of(t);
                up += bytes.len() as u64;
                be.queue.write_buffer(buf, 0, &bytes);
            }
            let mut enc = be
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("weft resident step"),
                });
            encode_kernels(&self.compiled, &mut enc);
            if let Some((loss, copies)) = &self.losses {
                enc.copy_buffer_to_buffer(loss, 0, copies, 4 * k as u64, 4);
            }
            if k == 0 {
                for t in &self.trained {
                    if let Some(acc) = &t.acc {
                        let bytes = acc.size().min(t.source.size());
                        enc.copy_buffer_to_buffer(&t.source, 0, acc, 0, bytes);
                    }
                }
            } else {
                let mut pass = enc.begin_compute_pass(&Default::default());
                for t in &self.trained {
                    if let Some(b) = &t.accumulate {
                        self.dispatch(&mut pass, "accumulate", b, t.groups);
                    }
                }
            }
            let mut at = per_micro * k as u64;
            for (_, buf, bytes) in &self.scalars {
                enc.copy_buffer_to_buffer(buf, 0, &self.staging, at, *bytes);
                at += bytes;
            }
            if k + 1 == micro.len() {
                {
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("weft optimizer"),
                        timestamp_writes: None,
                    });
                    for t in &self.trained {
                        self.dispatch(&mut pass, "sumsq", &t.sumsq, t.parts);
                    }
                    self.dispatch(&mut pass, "norm", &self.norm_bind, 1);
                    let update = match self.config {
                        OptimizerConfig::Adamw(_) => "adamw",
                        OptimizerConfig::Sgd(_) => "sgd",
                    };
                    for t in &self.trained {
                        self.dispatch(&mut pass, update, &t.update, t.groups);
                    }
                }
                enc.copy_buffer_to_buffer(&self.norm_buf, 0, &self.staging, at, 4);
                last = Some(enc);
            } else {
                be.queue.submit([enc.finish()]);
            }
        }
        let enc = last.expect("at least one micro-batch");
        let t_wait = std::time::Instant::now();
        let data = self.submit_and_map(enc, &self.staging)?;
        if std::env::var_os("WEFT_STEP_PROFILE").is_some() {
            eprintln!(
                "  resident step: {:.2} ms encoding and uploading, {:.2} ms until read back",
                (t_wait - t_enc).as_secs_f64() * 1e3,
                t_wait.elapsed().as_secs_f64() * 1e3
            );
        }
        let down = self.staging.size();
        let mut outputs = Vec::new();
        let mut at = 0usize;
        for _ in 0..micro.len() {
            let mut out = BTreeMap::new();
            for (name, _, bytes) in &self.scalars {
                let x = f32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes"));
                out.insert(name.clone(), x as f64);
                at += *bytes as usize;
            }
            outputs.push(out);
        }
        let norm = f32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes")) as f64;
        if norm.is_finite() {
            self.t = next;
        }
        self.traffic.step_up += up;
        self.traffic.step_down += down;
        self.traffic.steps += 1;
        Ok(ResidentStep {
            outputs,
            grad_norm: norm,
        })
    }

    fn params(&mut self) -> Result<ParamStore, RunError> {
        let bufs: Vec<(wgpu::Buffer, u64)> = self
            .params
            .iter()
            .map(|p| (p.buffer.clone(), (numel(&p.shape) * 4) as u64))
            .collect();
        let refs: Vec<(&wgpu::Buffer, u64)> = bufs.iter().map(|(b, n)| (b, *n)).collect();
        let data = self.read(&refs)?;
        Ok(self
            .params
            .iter()
            .zip(data)
            .map(|(p, d)| (p.name.clone(), Tensor::f32(&p.shape, d)))
            .collect())
    }

    fn optimizer(&mut self) -> Result<Optimizer, RunError> {
        let mut bufs: Vec<(String, bool, wgpu::Buffer, u64)> = Vec::new();
        for t in &self.trained {
            let p = &self.params[t.param];
            let bytes = (numel(&p.shape) * 4) as u64;
            if let Some(m) = &t.m {
                bufs.push((p.name.clone(), true, m.clone(), bytes));
            }
            if let Some(v) = &t.v {
                bufs.push((p.name.clone(), false, v.clone(), bytes));
            }
        }
        let refs: Vec<(&wgpu::Buffer, u64)> = bufs.iter().map(|b| (&b.2, b.3)).collect();
        let data = self.read(&refs)?;
        let mut state = OptimizerState {
            step: self.t,
            ..Default::default()
        };
        for ((name, is_m, _, _), d) in bufs.into_iter().zip(data) {
            let shape = self
                .params
                .iter()
                .find(|p| p.name == name)
                .map(|p| p.shape.clone());
            let t = Tensor::f32(&shape.unwrap_or_default(), d);
            if is_m {
                state.m.insert(name, t);
            } else {
                state.v.insert(name, t);
            }
        }
        Ok(Optimizer::with_state(self.config.clone(), state))
    }

    fn gradients(&mut self) -> Result<Gradients, RunError> {
        let bufs: Vec<(String, Vec<usize>, wgpu::Buffer)> = self
            .trained
            .iter()
            .map(|t| {
                let p = &self.params[t.param];
                (p.name.clone(), p.shape.clone(), t.grad().clone())
            })
            .collect();
        let refs: Vec<(&wgpu::Buffer, u64)> = bufs
            .iter()
            .map(|(_, s, b)| (b, (numel(s) * 4) as u64))
            .collect();
        let data = self.read(&refs)?;
        let inv_k = 1.0 / self.accumulate as f32;
        let mut g = Gradients::new();
        for ((name, shape, _), mut d) in bufs.into_iter().zip(data) {
            if self.accumulate > 1 {
                d.iter_mut().for_each(|x| *x *= inv_k);
            }
            g.insert(name, Tensor::f32(&shape, d));
        }
        Ok(g)
    }

    fn traffic(&self) -> Traffic {
        self.traffic
    }
}
