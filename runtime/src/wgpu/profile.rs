//! Per-kernel timing: [`WgpuBackend::profile`] compiles a graph (through the backend's
//! cache), uploads its feeds once, then runs its kernels in launch order, each in command
//! buffers of its own — one dispatch per command buffer, `repeats` times after one warm-up —
//! submitting and waiting for each. Running in launch order means every kernel reads what
//! the kernels before it wrote, as in a real run.
//!
//! A kernel's time is the median over its repeats of the GPU time between timestamps written
//! at the start and the end of its compute pass when the device has
//! `wgpu::Features::TIMESTAMP_QUERY`, else of the host wall clock around submit and wait
//! (which adds the submission and synchronisation overhead of one command buffer to every
//! kernel). The wall clock is always measured too ([`KernelTime::wall_ms`]).
//!
//! [`compare`] maps the kernels of a fused program onto the kernels of the unfused program
//! of the same graph that compute the same IR nodes, which is how a fusion decision that
//! costs time shows up.

use super::compiled::Compiled;
use super::exec::{self, Feeds};
use super::{hook_names, WgpuBackend};
use crate::backend::{HookSelection, ParamStore};
use crate::error::RunError;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::mpsc;
use std::time::Instant;
use weft_compiler::codegen::Kernel;
use weft_compiler::ir::{numel, Graph, Op, ValueId};

/// How a kernel's [`KernelTime::median_ms`] was measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Clock {
    /// GPU timestamps at the start and end of the kernel's compute pass.
    Timestamp,
    /// Host wall clock around submit and wait (includes one submission's overhead).
    Wall,
}

/// The measured time of one kernel of a compiled program.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KernelTime {
    /// The kernel's name in the program (e.g. `matmul_12`, `elementwise_40`).
    pub name: String,
    /// Workgroups dispatched.
    pub dispatch: [u32; 3],
    /// Invocations per workgroup.
    pub workgroup_size: u32,
    /// IR nodes the kernel evaluates (fused producers and epilogue included).
    pub nodes: usize,
    /// Those IR nodes: fused producers first, then the roots it stores (see
    /// [`Kernel::nodes`]).
    pub values: Vec<ValueId>,
    /// `2·M·N·K` (per batch entry) for a kernel that computes a matmul, else `None`.
    pub flops: Option<f64>,
    /// Bytes of every buffer binding, counted once per binding (an upper bound on the
    /// distinct bytes the kernel touches).
    pub bytes: usize,
    /// Median time of one dispatch, in milliseconds, by [`KernelTime::clock`].
    pub median_ms: f64,
    /// Fastest of the repeats, in milliseconds, by the same clock (on a machine shared with
    /// other work, the least disturbed measurement).
    pub min_ms: f64,
    /// Median host wall-clock time of submit + wait of the kernel's command buffer, in
    /// milliseconds (equal to `median_ms` under [`Clock::Wall`]).
    pub wall_ms: f64,
    /// Which clock `median_ms` comes from.
    pub clock: Clock,
}

/// The most repeats one profile times per kernel (two timestamps each must fit one query
/// set of `wgpu::QUERY_SET_MAX_QUERIES`).
pub const MAX_REPEATS: usize = (wgpu::QUERY_SET_MAX_QUERIES / 2) as usize;

/// The timestamp query set of a profile and the buffers its results come back through.
pub(super) struct Timer {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    period_ns: f64,
}

impl WgpuBackend {
    /// Times every kernel `run` would launch for `graph` with these hooks, in launch order:
    /// feeds are checked and uploaded once as in a run, then each kernel is dispatched alone
    /// (one command buffer per dispatch, submitted and waited for) once to warm up and
    /// `repeats` times (1 to [`MAX_REPEATS`]) to measure; see the [module docs](self).
    ///
    /// Nothing is read back; buffers are left as after a run without poisoning.
    pub fn profile(
        &self,
        graph: &Graph,
        inputs: &HashMap<String, Tensor>,
        params: &ParamStore,
        hooks: &HookSelection,
        repeats: usize,
    ) -> Result<Vec<KernelTime>, RunError> {
        weft_compiler::ir::verify(graph)?;
        let hooks = hook_names(graph, hooks)?;
        let feeds = Feeds {
            given: inputs,
            extra: &[],
        };
        exec::check_feeds(graph, feeds, params)?;
        let compiled = self.compiled(graph, &hooks)?;
        let c: &Compiled = &compiled;
        let _turn = c.run_lock.lock().unwrap_or_else(|p| p.into_inner());
        exec::upload(self, graph, c, feeds, params)?;
        let repeats = repeats.clamp(1, MAX_REPEATS);
        let timer = self.timer(repeats);
        let mut out = Vec::with_capacity(c.program.kernels.len());
        for (k, kernel) in c.program.kernels.iter().enumerate() {
            let (median_ms, min_ms, wall_ms, clock) = self
                .time_dispatch(
                    &c.pipelines[k],
                    &c.bind_groups[k],
                    kernel.dispatch,
                    repeats,
                    timer.as_ref(),
                )
                .map_err(|e| match e {
                    RunError::Device(m) => RunError::Device(format!("{}: {m}", kernel.name)),
                    other => other,
                })?;
            out.push(KernelTime {
                name: kernel.name.clone(),
                dispatch: kernel.dispatch,
                workgroup_size: kernel.workgroup_size,
                nodes: kernel.nodes.len(),
                values: kernel.nodes.clone(),
                flops: matmul_flops(graph, kernel),
                bytes: kernel
                    .bindings()
                    .map(|b| b.elements * b.dtype.size_bytes())
                    .sum(),
                median_ms,
                min_ms,
                wall_ms,
                clock,
            });
        }
        Ok(out)
    }

    /// A query set for `repeats` timed dispatches, when the device has timestamp queries.
    pub(super) fn timer(&self, repeats: usize) -> Option<Timer> {
        if !self
            .device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
        {
            return None;
        }
        let count = 2 * repeats as u32;
        let bytes = u64::from(count) * wgpu::QUERY_SIZE as u64;
        Some(Timer {
            set: self.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("weft profile"),
                ty: wgpu::QueryType::Timestamp,
                count,
            }),
            resolve: self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("weft profile resolve"),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            readback: self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("weft profile readback"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            period_ns: f64::from(self.queue.get_timestamp_period()),
        })
    }

    /// Times one dispatch of `pipeline` with `bind_group`: one warm-up, then `repeats`
    /// command buffers of one dispatch each, each submitted and waited for. Returns the median
    /// and the minimum time in ms (GPU timestamps with `timer`, else wall clock), the median
    /// wall-clock time in ms and which clock the first two are. The timing primitive of
    /// [`WgpuBackend::profile`].
    pub(super) fn time_dispatch(
        &self,
        pipeline: &wgpu::ComputePipeline,
        bind_group: &wgpu::BindGroup,
        dispatch: [u32; 3],
        repeats: usize,
        timer: Option<&Timer>,
    ) -> Result<(f64, f64, f64, Clock), RunError> {
        let mut wall = Vec::with_capacity(repeats);
        for r in 0..=repeats {
            // Run 0 warms up (first-use costs of the pipeline) and is not timed.
            let slot = r.checked_sub(1);
            let mut enc = self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("weft profile"),
                });
            {
                let timestamp_writes = match (timer, slot) {
                    (Some(t), Some(s)) => Some(wgpu::ComputePassTimestampWrites {
                        query_set: &t.set,
                        beginning_of_pass_write_index: Some(2 * s as u32),
                        end_of_pass_write_index: Some(2 * s as u32 + 1),
                    }),
                    _ => None,
                };
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("weft profile kernel"),
                    timestamp_writes,
                });
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, bind_group, &[]);
                let [x, y, z] = dispatch;
                pass.dispatch_workgroups(x, y, z);
            }
            let cmd = enc.finish();
            let t0 = Instant::now();
            let submission = self.queue.submit([cmd]);
            self.wait(submission)?;
            if slot.is_some() {
                wall.push(t0.elapsed().as_secs_f64() * 1e3);
            }
        }
        let wall_ms = median(&mut wall);
        let wall_min = wall.first().copied().unwrap_or(0.0);
        let Some(t) = timer else {
            return Ok((wall_ms, wall_min, wall_ms, Clock::Wall));
        };
        let mut gpu: Vec<f64> = self
            .read_timestamps(t, repeats)?
            .chunks_exact(2)
            .filter(|p| p[1] >= p[0] && p[0] != 0)
            .map(|p| (p[1] - p[0]) as f64 * t.period_ns * 1e-6)
            .collect();
        if gpu.len() < repeats.div_ceil(2) {
            // Timestamps the driver did not really write (zeros, or going backwards).
            return Ok((wall_ms, wall_min, wall_ms, Clock::Wall));
        }
        let med = median(&mut gpu);
        Ok((med, gpu[0], wall_ms, Clock::Timestamp))
    }

    /// The first `2·repeats` timestamps of `t`'s query set, in ticks.
    fn read_timestamps(&self, t: &Timer, repeats: usize) -> Result<Vec<u64>, RunError> {
        let count = 2 * repeats as u32;
        let bytes = u64::from(count) * wgpu::QUERY_SIZE as u64;
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("weft profile timestamps"),
            });
        enc.resolve_query_set(&t.set, 0..count, &t.resolve, 0);
        enc.copy_buffer_to_buffer(&t.resolve, 0, &t.readback, 0, bytes);
        let submission = self.queue.submit([enc.finish()]);
        let (tx, rx) = mpsc::channel();
        let slice = t.readback.slice(..bytes);
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        if let Err(e) = self.wait(submission) {
            t.readback.unmap();
            return Err(e);
        }
        match self.map_results(&rx, 1).pop().ok_or(()) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                t.readback.unmap();
                return Err(RunError::Device(format!("reading timestamps: {e}")));
            }
            Err(_) => {
                t.readback.unmap();
                return Err(RunError::Device(
                    "timestamps not mapped after the device finished".into(),
                ));
            }
        }
        let ticks = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| RunError::Device(format!("reading timestamps: {e}")))?;
            bytemuck::pod_collect_to_vec::<u8, u64>(&view)
        };
        t.readback.unmap();
        Ok(ticks)
    }

    /// Waits for `submission` (at most `self.timeout`); device errors become errors.
    fn wait(&self, submission: wgpu::SubmissionIndex) -> Result<(), RunError> {
        let waited = self.device.poll(wgpu::PollType::Wait {
            submission_index: Some(submission),
            timeout: Some(self.timeout),
        });
        let errors = self.take_errors();
        if !errors.is_empty() {
            return Err(RunError::Device(errors.join("; ")));
        }
        waited.map(|_| ()).map_err(|e| {
            RunError::Device(format!(
                "waiting for the device ({:?} limit): {e}",
                self.timeout
            ))
        })
    }
}

/// The median of `xs` (the upper one of an even count; 0 when empty); sorts `xs`.
fn median(xs: &mut [f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// `2·M·N·K·batch` of the matmul `kernel` computes (as its root or under an epilogue).
fn matmul_flops(g: &Graph, kernel: &Kernel) -> Option<f64> {
    let flops: f64 = kernel
        .nodes
        .iter()
        .map(|&v| g.node(v))
        .filter_map(|n| match n.op {
            Op::MatMul { transpose_a, .. } => {
                let a = g.shape(n.inputs[0]);
                let k = if transpose_a {
                    a[a.len() - 2]
                } else {
                    a[a.len() - 1]
                };
                Some(2.0 * numel(&n.shape) as f64 * k as f64)
            }
            _ => None,
        })
        .sum();
    (flops > 0.0).then_some(flops)
}

/// Sum of `times`' medians in milliseconds.
pub fn total_ms(times: &[KernelTime]) -> f64 {
    times.iter().map(|t| t.median_ms).sum()
}

fn dispatch_str(d: [u32; 3]) -> String {
    format!("{}x{}x{}", d[0], d[1], d[2])
}

fn rate(t: &KernelTime) -> String {
    match t.flops {
        Some(f) if t.median_ms > 0.0 => format!("{:.2} GFLOP/s", f / (t.median_ms * 1e-3) / 1e9),
        _ => "-".into(),
    }
}

/// A markdown table of `times` in launch order — kernel, dispatch, IR nodes, median time,
/// share of the sum, matmul throughput — with the sum as its last row, then the `top`
/// slowest kernels.
pub fn table(times: &[KernelTime], top: usize) -> String {
    let total = total_ms(times).max(1e-12);
    let clock = match times.first().map(|t| t.clock) {
        Some(Clock::Timestamp) => "GPU timestamps",
        _ => "wall clock",
    };
    let mut s = format!(
        "{} kernels, sum of medians {total:.3} ms ({clock}; sum of wall-clock medians {:.3} ms)\n\n\
         | # | kernel | dispatch | nodes | median ms | min ms | share | matmul rate |\n\
         |---:|---|---|---:|---:|---:|---:|---:|\n",
        times.len(),
        times.iter().map(|t| t.wall_ms).sum::<f64>()
    );
    let row = |s: &mut String, i: usize, t: &KernelTime| {
        let _ = writeln!(
            s,
            "| {i} | {} | {} | {} | {:.3} | {:.3} | {:.1}% | {} |",
            t.name,
            dispatch_str(t.dispatch),
            t.nodes,
            t.median_ms,
            t.min_ms,
            100.0 * t.median_ms / total,
            rate(t)
        );
    };
    for (i, t) in times.iter().enumerate() {
        row(&mut s, i, t);
    }
    let _ = writeln!(
        s,
        "| | **total** | | | **{total:.3}** | {:.3} | 100% | |",
        times.iter().map(|t| t.min_ms).sum::<f64>()
    );
    let mut order: Vec<usize> = (0..times.len()).collect();
    order.sort_by(|&a, &b| times[b].median_ms.total_cmp(&times[a].median_ms));
    let _ = write!(
        s,
        "\nTop {} by time:\n\n\
         | # | kernel | dispatch | nodes | median ms | min ms | share | matmul rate |\n\
         |---:|---|---|---:|---:|---:|---:|---:|\n",
        top.min(times.len())
    );
    for &i in order.iter().take(top) {
        row(&mut s, i, &times[i]);
    }
    s
}

/// A fused kernel next to the unfused kernels that compute the same IR nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct Replacement {
    /// The fused kernel.
    pub fused: String,
    /// Its median time (ms).
    pub fused_ms: f64,
    /// Unfused kernels whose root is one of the fused kernel's nodes.
    pub unfused: Vec<String>,
    /// Sum of their median times (ms).
    pub unfused_ms: f64,
}

/// For each kernel of `fused`, the kernels of `unfused` (a profile of the same graph with
/// `fuse: false`, whose kernels store one root each, their last node) whose root it
/// evaluates (of several kernels with one root, the one of the same name if there is one),
/// sorted by `fused_ms − unfused_ms`, most costly fusion first.
pub fn compare(fused: &[KernelTime], unfused: &[KernelTime]) -> Vec<Replacement> {
    let mut by_root: HashMap<ValueId, Vec<&KernelTime>> = HashMap::new();
    for t in unfused {
        if let Some(&root) = t.values.last() {
            by_root.entry(root).or_default().push(t);
        }
    }
    let mut out: Vec<Replacement> = fused
        .iter()
        .map(|f| {
            // A root computed by several kernels (attention's backward) pairs by name.
            let replaced: Vec<&KernelTime> = f
                .values
                .iter()
                .filter_map(|v| by_root.get(v))
                .flat_map(|ks| match ks.iter().find(|k| k.name == f.name) {
                    Some(same) => vec![*same],
                    None => ks.clone(),
                })
                .collect();
            Replacement {
                fused: f.name.clone(),
                fused_ms: f.median_ms,
                unfused: replaced.iter().map(|t| t.name.clone()).collect(),
                unfused_ms: replaced.iter().map(|t| t.median_ms).sum(),
            }
        })
        .collect();
    out.sort_by(|a, b| (b.fused_ms - b.unfused_ms).total_cmp(&(a.fused_ms - a.unfused_ms)));
    out
}

/// A markdown summary of [`compare`]'s rows: how many fused kernels cost more or less than
/// the unfused kernels they replace (and by how much in all), then the `top` costliest and
/// the `top` most profitable. Unfused times of nodes a fused program recomputes in several
/// kernels count once per kernel, so these sums need not add up to the difference of totals.
pub fn compare_table(rows: &[Replacement], top: usize) -> String {
    let delta = |r: &Replacement| r.fused_ms - r.unfused_ms;
    let (worse, better): (Vec<&Replacement>, Vec<&Replacement>) =
        rows.iter().partition(|r| delta(r) > 0.0);
    let mut s = format!(
        "{} fused kernels cost more than the unfused kernels they replace (in all {:+.3} ms), \
         {} cost less ({:+.3} ms).\n\n\
         | fused kernel | fused ms | unfused kernels | unfused ms | fused − unfused ms |\n\
         |---|---:|---|---:|---:|\n",
        worse.len(),
        worse.iter().map(|r| delta(r)).sum::<f64>(),
        better.len(),
        better.iter().map(|r| delta(r)).sum::<f64>()
    );
    let best = &better[better.len().saturating_sub(top)..];
    for (k, r) in worse.iter().take(top).chain(best).enumerate() {
        if k == worse.len().min(top) && k > 0 {
            let _ = writeln!(s, "| … | | | | |");
        }
        let _ = writeln!(
            s,
            "| {} | {:.3} | {} | {:.3} | {:+.3} |",
            r.fused,
            r.fused_ms,
            r.unfused.join(" "),
            r.unfused_ms,
            delta(r)
        );
    }
    s
}
