//! Hook-point and parameter names: the one place that spells them (docs/parameters.md).
//! Lowering names everything through these functions, and consumers that address a hook
//! by layer (probes, traces) call them too instead of formatting strings by hand.

/// `layers.{i}`: the prefix of layer `i`'s parameters and hooks.
pub fn layer(i: usize) -> String {
    format!("layers.{i}")
}

/// `{layer}.iter{j}`: the hook prefix inside iteration `j` of a block's `repeat`.
pub fn iteration(layer_prefix: &str, j: usize) -> String {
    format!("{layer_prefix}.iter{j}")
}

/// The `n`-th (from 1) call site of a kind within a layer: `attn`, `attn2`, ...; norms are
/// always numbered (`norm1`, `norm2`, ...).
pub fn call_site(kind: &str, n: usize) -> String {
    if kind == "norm" {
        format!("norm{n}")
    } else if n == 1 {
        kind.to_string()
    } else {
        format!("{kind}{n}")
    }
}

/// `layers.{i}.attn`: the first attention of layer `i` (hooks and parameters).
pub fn attn(i: usize) -> String {
    format!("{}.attn", layer(i))
}

/// `{prefix}.route{r}`: the `r`-th route call of a layer (from 0).
pub fn route(prefix: &str, r: usize) -> String {
    format!("{prefix}.route{r}")
}

/// `{layer}.{pool}.{j}`: module `j` of a pool, as used by one layer.
pub fn pool_module(layer_prefix: &str, pool: &str, j: usize) -> String {
    format!("{layer_prefix}.{pool}.{j}")
}

/// `{hook}.base{e}`: the attention over rotary base `e` of a MoICE mixture.
pub fn moice_base(hook: &str, e: usize) -> String {
    format!("{hook}.base{e}")
}

/// `view.{name}.`: the prefix of every hook of a loss view's forward pass.
pub fn view_prefix(name: &str) -> String {
    format!("view.{name}.")
}

/// Hook suffixes of an attention (after its hook prefix).
pub mod attention {
    /// Queries `[B,H,T,d]` (before rotation).
    pub const Q: &str = "q";
    /// Keys `[B,KV,T,d]` (before rotation).
    pub const K: &str = "k";
    /// Values `[B,KV,T,d]`.
    pub const V: &str = "v";
    /// Raw scores `[B,H,T,T]` (captured only).
    pub const SCORES: &str = "scores";
    /// Final weights `[B,H,T,T]` (captured only).
    pub const PATTERN: &str = "pattern";
    /// Each head's output after its slice of W_O `[B,T,H,D]` (captured only).
    pub const RESULT: &str = "result";
    /// The attention's output `[B,T,D]`.
    pub const OUT: &str = "out";
}

/// `{prefix}.{suffix}`.
pub fn join(prefix: &str, suffix: &str) -> String {
    format!("{prefix}.{suffix}")
}

/// Layer hook suffix: the residual stream entering the layer `[B,T,D]`.
pub const RESID_PRE: &str = "resid_pre";
/// Layer hook suffix: the residual stream after the first of several `x = ...` writes.
pub const RESID_MID: &str = "resid_mid";
/// Layer hook suffix: the residual stream leaving the layer.
pub const RESID_POST: &str = "resid_post";
/// Layer hook suffix: the feed-forward output before it joins the residual stream.
pub const MLP_OUT: &str = "mlp_out";
