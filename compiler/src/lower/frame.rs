//! The state of one block instance while it is lowered: its layer, naming prefixes, the
//! tensors bound so far, call-site counters and the routers' state across `repeat`.

use super::hooks;
use crate::ir::ValueId;
use std::collections::{BTreeMap, HashMap};
use weft_dsl::check::value::Value;

/// Balance-loss statistics of one route call site, summed over iterations.
pub(crate) struct BalanceStats {
    pub name: String,
    pub weight: f32,
    pub choices: usize,
    pub p_sum: ValueId,
    pub f_sum: ValueId,
    pub count: usize,
}

/// Per-layer naming and state while evaluating one block instance.
pub(crate) struct Frame {
    /// The layer index `i`.
    pub layer: usize,
    /// `layers.{i}` (or a pool module's `layers.{i}.POOL.{j}`).
    pub prefix: String,
    /// Block parameter values from the layer rule.
    pub params: BTreeMap<String, Value>,
    pub env: HashMap<String, ValueId>,
    /// Call-site counters per kind (`attn`, `mlp`, `norm`, `route`).
    pub counters: HashMap<&'static str, usize>,
    /// The current `repeat` iteration (MoM), for hook names and shared routers.
    pub iteration: Option<usize>,
    /// Router state carried across iterations, per route call site.
    pub router_state: HashMap<usize, ValueId>,
    /// Balance-loss statistics per route call site, summed over iterations.
    pub balance: HashMap<usize, BalanceStats>,
    /// Route call sites seen in the current iteration (so each gets a stable index).
    pub route_sites: HashMap<usize, usize>,
}

impl Frame {
    pub fn new(layer: usize, prefix: String, params: BTreeMap<String, Value>, x: ValueId) -> Frame {
        Frame {
            layer,
            prefix,
            params,
            env: HashMap::from([("x".to_string(), x)]),
            counters: HashMap::new(),
            iteration: None,
            router_state: HashMap::new(),
            balance: HashMap::new(),
            route_sites: HashMap::new(),
        }
    }

    /// The next call-site name for a kind: `attn`, then `attn2`, `attn3`...
    /// Inside `repeat`, the counters restart each iteration so weights are shared.
    pub fn site(&mut self, kind: &'static str) -> String {
        let n = self.counters.entry(kind).or_insert(0);
        *n += 1;
        hooks::join(&self.prefix, &hooks::call_site(kind, *n))
    }

    /// Hook prefix: `layers.{i}` or `layers.{i}.iter{j}`.
    pub fn hook_prefix(&self) -> String {
        match self.iteration {
            Some(j) => hooks::iteration(&self.prefix, j),
            None => self.prefix.clone(),
        }
    }

    /// A stable index for the route call at this source position.
    pub fn route_site(&mut self, at: usize) -> usize {
        let next = self.route_sites.len();
        *self.route_sites.entry(at).or_insert(next)
    }
}
