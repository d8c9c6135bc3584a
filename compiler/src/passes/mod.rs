//! Graph passes behind one interface ([`Pass`]: `&Graph → Graph`), one file each, plus the
//! memory planner (an analysis: it annotates rather than rewrites).
//!
//! Passes keep the param and input tables intact (a frozen, unused parameter still belongs
//! to the checkpoint) and renumber handles densely, preserving topological order.

mod const_fold;
mod cse;
mod dce;
mod gain_fold;
mod memory_plan;

pub use const_fold::ConstFold;
pub use cse::Cse;
pub use dce::Dce;
pub use gain_fold::{fold_gains, GainFold};
pub use memory_plan::{plan_memory, MemoryPlan};

use crate::error::Result;
use crate::ir::{verify, Graph};

/// A graph-to-graph rewrite.
pub trait Pass {
    /// Name for logs and `WEFT_DEBUG` output.
    fn name(&self) -> &'static str;
    /// Rewrites `g`; the result verifies if `g` did.
    fn run(&self, g: &Graph) -> Result<Graph>;
}

/// Runs passes in order, verifying after each (a pass bug surfaces at the pass that made it).
pub fn run_passes(g: &Graph, passes: &[&dyn Pass]) -> Result<Graph> {
    let mut g = g.clone();
    for p in passes {
        g = p.run(&g)?;
        verify(&g)?;
    }
    Ok(g)
}

/// The default clean-up pipeline: fold constants, merge duplicates, drop dead code.
pub fn optimize(g: &Graph) -> Result<Graph> {
    run_passes(g, &[&ConstFold, &Cse, &Dce])
}
