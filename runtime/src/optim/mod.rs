//! Optimizers, learning-rate schedules, gradient clipping and accumulation.
//!
//! A training step, as the loop in `weft train` drives it:
//!
//! ```text
//! let lr = schedule.lr(optimizer.config().lr(), step, total_steps);
//! let mut acc = GradAccumulator::new();
//! for micro in 0..accumulate {
//!     let out = backend.run(&train_graph, &batch_inputs, &params, &HookSelection::None)?;
//!     acc.add(Gradients::from_outputs(&out));
//! }
//! let mut grads = acc.finish().expect("at least one micro-batch");
//! let grad_norm = clip_grad_norm(&mut grads, clip);   // pre-clip norm, for metrics
//! optimizer.step(&mut params, &grads, lr)?;
//! ```
//!
//! Parameters are a [`ParamStore`](crate::ParamStore); gradients are the graph outputs named
//! `grad.{param}`. Only parameters that have a gradient are touched, so a parameter that autodiff
//! did not select (frozen) stays bit-identical.
//!
//! On a backend with memory of its own (wgpu) the loop hands this whole sequence to a
//! [`ResidentTrainer`](crate::resident::ResidentTrainer), which runs it as device kernels
//! with the same formulas in f32 (`runtime/src/wgpu/optim/*.wgsl`), so parameters and state
//! never cross to the host between steps.

mod accumulate;
mod adamw;
mod clip;
mod error;
mod gradients;
mod optimizer;
mod schedule;
mod sgd;

pub use accumulate::GradAccumulator;
pub use adamw::AdamW;
pub use clip::{clip_factor, clip_grad_norm, global_norm};
pub use error::OptimError;
pub use gradients::{Gradients, GRAD_PREFIX};
pub use optimizer::{Optimizer, OptimizerConfig, OptimizerState};
pub use schedule::Schedule;
pub use sgd::Sgd;
