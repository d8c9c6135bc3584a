//! A graph compiled for one device: the codegen [`Program`] plus every wgpu object it needs
//! — pipelines, bind groups, planned buffers, buffers for inputs, params and constants, and
//! staging buffers for readback. Built once per (graph, hook set) and cached, because
//! creating wgpu objects is expensive and a training loop runs the same graph every step.

use crate::error::RunError;
use std::collections::HashMap;
use weft_compiler::codegen::{Access, BufferRef, Program, Readback};
use weft_compiler::ir::{numel, ConstValue, Graph, Op};

/// Device objects of one compiled graph.
pub(super) struct Compiled {
    pub program: Program,
    pub pipelines: Vec<wgpu::ComputePipeline>,
    pub bind_groups: Vec<wgpu::BindGroup>,
    /// Planned buffers, by plan index.
    pub planned: Vec<wgpu::Buffer>,
    /// Buffers of runtime inputs and parameters the program reads, rewritten each run.
    pub inputs: HashMap<String, wgpu::Buffer>,
    pub params: HashMap<usize, wgpu::Buffer>,
    /// Constant tensors, uploaded once.
    pub consts: HashMap<u32, wgpu::Buffer>,
    /// One mappable buffer per readback (outputs, then hooks).
    pub staging: Vec<wgpu::Buffer>,
    /// Held for a whole run: runs of one compiled graph share its buffers, so two threads
    /// running the same graph take turns rather than overwrite each other's feeds.
    pub run_lock: std::sync::Mutex<()>,
}

fn storage_buffer(device: &wgpu::Device, label: &str, bytes: usize) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes.max(4).next_multiple_of(4) as u64,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}

impl Compiled {
    /// Creates every device object for `program`.
    pub fn new(device: &wgpu::Device, g: &Graph, program: Program) -> Result<Self, RunError> {
        Self::build(device, g, program, true)
    }

    /// Like [`Compiled::new`]; without `staging` no readback buffer is made (a resident
    /// trainer reads back only a few scalars, through its own buffer, and must not hold a
    /// host-visible copy of every gradient).
    pub fn build(
        device: &wgpu::Device,
        g: &Graph,
        program: Program,
        staging: bool,
    ) -> Result<Self, RunError> {
        let mut planned = Vec::new();
        for (i, &bytes) in program.buffers.buffer_bytes.iter().enumerate() {
            planned.push(storage_buffer(device, &format!("planned {i}"), bytes));
        }
        let mut inputs = HashMap::new();
        let mut params = HashMap::new();
        let mut consts = HashMap::new();
        let readbacks: Vec<&Readback> = program.outputs.iter().chain(&program.hooks).collect();
        let refs = program
            .kernels
            .iter()
            .flat_map(|k| k.bindings().map(|b| &b.buffer))
            .chain(readbacks.iter().map(|r| &r.buffer));
        for r in refs {
            match r {
                BufferRef::Input(name) if !inputs.contains_key(name) => {
                    let info = g
                        .inputs
                        .iter()
                        .find(|i| &i.name == name)
                        .ok_or_else(|| RunError::MissingInput { name: name.clone() })?;
                    let bytes = numel(&info.shape) * info.dtype.size_bytes();
                    inputs.insert(name.clone(), storage_buffer(device, name, bytes));
                }
                BufferRef::Param(i) if !params.contains_key(i) => {
                    let info = &g.params[*i];
                    let bytes = numel(&info.shape) * 4;
                    params.insert(*i, storage_buffer(device, &info.name, bytes));
                }
                BufferRef::Const(v) if !consts.contains_key(&v.0) => {
                    let Op::Const { value } = &g.node(*v).op else {
                        continue;
                    };
                    let bytes = value.len() * value.dtype().size_bytes();
                    consts.insert(v.0, storage_buffer(device, &format!("const {v}"), bytes));
                }
                _ => {}
            }
        }
        let mut compiled = Compiled {
            pipelines: Vec::new(),
            bind_groups: Vec::new(),
            planned,
            inputs,
            params,
            consts,
            staging: Vec::new(),
            run_lock: std::sync::Mutex::new(()),
            program,
        };
        for k in &compiled.program.kernels {
            let entries: Vec<wgpu::BindGroupLayoutEntry> = k
                .bindings()
                .map(|b| wgpu::BindGroupLayoutEntry {
                    binding: b.binding,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage {
                            read_only: b.access == Access::Read,
                        },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                })
                .collect();
            let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(&k.name),
                entries: &entries,
            });
            let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(&k.name),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&k.name),
                source: wgpu::ShaderSource::Wgsl(k.wgsl.as_str().into()),
            });
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&k.name),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
            let bind_entries: Vec<wgpu::BindGroupEntry> = k
                .bindings()
                .map(|b| wgpu::BindGroupEntry {
                    binding: b.binding,
                    resource: compiled.buffer(&b.buffer).as_entire_binding(),
                })
                .collect();
            let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(&k.name),
                layout: &layout,
                entries: &bind_entries,
            });
            compiled.pipelines.push(pipeline);
            compiled.bind_groups.push(bind_group);
        }
        for r in compiled
            .program
            .outputs
            .iter()
            .chain(&compiled.program.hooks)
            .filter(|_| staging)
        {
            let bytes = (numel(&r.shape) * r.dtype.size_bytes()).max(4) as u64;
            compiled
                .staging
                .push(device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(&r.name),
                    size: bytes.next_multiple_of(4),
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }));
        }
        Ok(compiled)
    }

    /// The device buffer behind a reference (codegen only emits references it planned).
    pub fn buffer(&self, r: &BufferRef) -> &wgpu::Buffer {
        match r {
            BufferRef::Input(n) => &self.inputs[n],
            BufferRef::Param(i) => &self.params[i],
            BufferRef::Const(v) => &self.consts[&v.0],
            BufferRef::Planned(i) => &self.planned[*i],
        }
    }

    /// Writes every constant tensor (once, right after creation).
    pub fn upload_consts(&self, queue: &wgpu::Queue, g: &Graph) {
        for (&v, buf) in &self.consts {
            if let Op::Const { value } = &g.nodes[v as usize].op {
                match value {
                    ConstValue::F32(x) => queue.write_buffer(buf, 0, bytemuck::cast_slice(x)),
                    ConstValue::I32(x) => queue.write_buffer(buf, 0, bytemuck::cast_slice(x)),
                }
            }
        }
    }
}
