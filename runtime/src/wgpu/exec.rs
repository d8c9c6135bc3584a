//! One run: check and upload the feeds, poison planned buffers if asked, record all
//! dispatches and readback copies into one command buffer, submit once, wait with a timeout,
//! read back only the requested outputs and hooks.

use super::compiled::Compiled;
use super::WgpuBackend;
use crate::backend::{Outputs, ParamStore};
use crate::error::RunError;
use crate::tensor::{Tensor, TensorData};
use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;
use weft_compiler::ir::{DType, Graph};

/// A run's input tensors: the caller's, plus the ones a rewrite of the graph added (the
/// replacement inputs of [`crate::replace::split`]), without copying the caller's.
#[derive(Clone, Copy)]
pub(super) struct Feeds<'a> {
    pub given: &'a HashMap<String, Tensor>,
    pub extra: &'a [(String, Tensor)],
}

impl<'a> Feeds<'a> {
    fn get(&self, name: &str) -> Option<&'a Tensor> {
        self.extra
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .or_else(|| self.given.get(name))
    }
}

/// Checks every declared input and every parameter the graph uses, with the CPU backend's
/// errors (so both backends reject the same feeds the same way).
pub(super) fn check_feeds(g: &Graph, inputs: Feeds, params: &ParamStore) -> Result<(), RunError> {
    check_inputs(g, inputs)?;
    check_params(g, params)
}

/// Every declared input is fed with its dtype and shape (the CPU backend's errors).
pub(super) fn check_inputs(g: &Graph, inputs: Feeds) -> Result<(), RunError> {
    for info in &g.inputs {
        let t = inputs
            .get(&info.name)
            .ok_or_else(|| RunError::MissingInput {
                name: info.name.clone(),
            })?;
        let ok = t.shape == info.shape
            && matches!(
                (info.dtype, &t.data),
                (DType::I32, TensorData::I32(_))
                    | (DType::F32, TensorData::F32(_) | TensorData::F64(_))
            );
        if !ok {
            return Err(RunError::InputType {
                name: info.name.clone(),
                expected: info.dtype.to_string(),
                want: info.shape.clone(),
                got: t.dtype_name(),
                got_shape: t.shape.clone(),
            });
        }
    }
    Ok(())
}

/// Every parameter the graph uses is given, f32 and of its shape.
pub(super) fn check_params(g: &Graph, params: &ParamStore) -> Result<(), RunError> {
    for info in &g.params {
        let used = g
            .nodes
            .iter()
            .any(|n| matches!(n.op, weft_compiler::ir::Op::Param { index } if g.params[index].name == info.name));
        if !used {
            continue;
        }
        let t = params
            .get(&info.name)
            .ok_or_else(|| RunError::MissingParam {
                name: info.name.clone(),
            })?;
        if t.shape != info.shape || matches!(t.data, TensorData::I32(_)) {
            return Err(RunError::ParamType {
                name: info.name.clone(),
                want: info.shape.clone(),
                got: t.dtype_name(),
                got_shape: t.shape.clone(),
            });
        }
    }
    Ok(())
}

/// Host bytes of a tensor as the device stores it (f64 host data is rounded to f32).
pub(super) fn bytes_of(t: &Tensor) -> Vec<u8> {
    match &t.data {
        TensorData::F32(v) => bytemuck::cast_slice(v).to_vec(),
        TensorData::I32(v) => bytemuck::cast_slice(v).to_vec(),
        TensorData::F64(v) => {
            let f: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            bytemuck::cast_slice(&f).to_vec()
        }
    }
}

/// Writes the feeds (inputs and parameters) into `c`'s buffers; the writes land before the
/// next submission. The caller holds `c.run_lock` and has checked the feeds.
pub(super) fn upload(
    be: &WgpuBackend,
    g: &Graph,
    c: &Compiled,
    inputs: Feeds,
    params: &ParamStore,
) -> Result<(), RunError> {
    for (name, buf) in &c.inputs {
        let t = inputs
            .get(name)
            .ok_or_else(|| RunError::MissingInput { name: name.clone() })?;
        be.queue.write_buffer(buf, 0, &bytes_of(t));
    }
    for (&i, buf) in &c.params {
        be.queue
            .write_buffer(buf, 0, &bytes_of(&params[&g.params[i].name]));
    }
    Ok(())
}

/// With [`WgpuBackend::poison`], fills every planned buffer with NaN (0xFF bytes) before the
/// next submission, so an element a kernel leaves unwritten reads as NaN, not a stale value.
pub(super) fn poison(be: &WgpuBackend, c: &Compiled) {
    if be.poison {
        for buf in &c.planned {
            be.queue
                .write_buffer(buf, 0, &vec![0xFF; buf.size() as usize]);
        }
    }
}

pub(super) fn run(
    be: &WgpuBackend,
    g: &Graph,
    c: &Compiled,
    inputs: Feeds,
    params: &ParamStore,
) -> Result<Outputs, RunError> {
    let _turn = c.run_lock.lock().unwrap_or_else(|p| p.into_inner());
    upload(be, g, c, inputs, params)?;
    poison(be, c);
    let mut enc = be
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("weft run"),
        });
    encode_kernels(c, &mut enc);
    let readbacks: Vec<_> = c.program.outputs.iter().chain(&c.program.hooks).collect();
    for (r, staging) in readbacks.iter().zip(&c.staging) {
        let bytes = staging.size().min(c.buffer(&r.buffer).size());
        enc.copy_buffer_to_buffer(c.buffer(&r.buffer), 0, staging, 0, bytes);
    }
    let submission = be.queue.submit([enc.finish()]);
    let (tx, rx) = mpsc::channel();
    for (i, staging) in c.staging.iter().enumerate() {
        let tx = tx.clone();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send((i, r));
        });
    }
    drop(tx);
    let waited = be.device.poll(wgpu::PollType::Wait {
        submission_index: Some(submission),
        timeout: Some(be.timeout),
    });
    let errors = be.take_errors();
    if !errors.is_empty() {
        unmap_all(c);
        return Err(RunError::Device(errors.join("; ")));
    }
    if let Err(e) = waited {
        unmap_all(c);
        return Err(RunError::Device(format!(
            "waiting for the device ({:?} limit): {e}",
            be.timeout
        )));
    }
    let mut mapped: Vec<Option<String>> =
        vec![Some("not mapped after the device finished".into()); c.staging.len()];
    for (i, r) in be.map_results(&rx, c.staging.len()) {
        mapped[i] = r.err().map(|e| e.to_string());
    }
    if let Some((i, Some(why))) = mapped.iter().enumerate().find(|(_, m)| m.is_some()) {
        unmap_all(c);
        return Err(RunError::Device(format!(
            "reading back `{}`: {why}",
            readbacks[i].name
        )));
    }
    let mut outputs = BTreeMap::new();
    let mut hooks = BTreeMap::new();
    let n_out = c.program.outputs.len();
    for (i, (r, staging)) in readbacks.iter().zip(&c.staging).enumerate() {
        let n: usize = r.shape.iter().product();
        let t = {
            let view = staging
                .slice(..)
                .get_mapped_range()
                .map_err(|e| RunError::Device(format!("reading back `{}`: {e}", r.name)))?;
            let data = &view[..n * 4];
            match r.dtype {
                DType::I32 => Tensor::i32(&r.shape, bytemuck::pod_collect_to_vec(data)),
                _ => Tensor::f32(&r.shape, bytemuck::pod_collect_to_vec(data)),
            }
        };
        staging.unmap();
        if i < n_out {
            outputs.insert(r.name.clone(), t);
        } else {
            hooks.insert(r.name.clone(), t);
        }
    }
    Ok(Outputs { outputs, hooks })
}

/// Records every kernel of `c` in launch order, as one compute pass: wgpu orders the
/// dispatches' storage accesses within it.
pub(super) fn encode_kernels(c: &Compiled, enc: &mut wgpu::CommandEncoder) {
    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some("weft kernels"),
        timestamp_writes: None,
    });
    for (k, kernel) in c.program.kernels.iter().enumerate() {
        pass.set_pipeline(&c.pipelines[k]);
        pass.set_bind_group(0, &c.bind_groups[k], &[]);
        let [x, y, z] = kernel.dispatch;
        pass.dispatch_workgroups(x, y, z);
    }
}

fn unmap_all(c: &Compiled) {
    for s in &c.staging {
        s.unmap();
    }
}
