//! Naming where a non-finite value first appeared, so a diverged run says which op and layer
//! broke rather than just "loss is NaN".

use crate::data::Batch;
use crate::optim::Gradients;
use crate::{Backend, HookSelection, ParamStore};
use weft_compiler::lower::{lower, LowerOptions};
use weft_dsl::Checked;

/// Re-runs the forward pass with every hook point captured and names the first (in graph
/// order) holding a NaN or infinity.
pub fn locate(
    spec: &Checked,
    backend: &dyn Backend,
    params: &ParamStore,
    batch: &Batch,
    b: usize,
    t: usize,
) -> String {
    let Ok(g) = lower(spec, &LowerOptions::new(b, t)) else {
        return "could not re-lower the spec to locate it".into();
    };
    let ins = super::inputs_for(&g, batch);
    let Ok(out) = backend.run(&g, &ins, params, &HookSelection::All) else {
        return "could not re-run the forward pass to locate it".into();
    };
    let mut hooks: Vec<(usize, &str)> = g
        .hooks
        .iter()
        .map(|(n, v)| (v.index(), n.as_str()))
        .collect();
    hooks.sort();
    for (node, name) in hooks {
        let Some(t) = out.hooks.get(name) else {
            continue;
        };
        if let Some(i) = t.to_f64_vec().iter().position(|x| !x.is_finite()) {
            let op = g.node(weft_compiler::ir::ValueId(node as u32)).op.name();
            return format!("first non-finite value at hook `{name}` (op `{op}`, flat index {i})");
        }
    }
    "every hook point is finite: the loss computation itself overflowed".into()
}

/// Names the parameters whose gradients are not finite.
pub fn locate_grad(grads: &Gradients) -> String {
    let bad: Vec<&str> = grads
        .iter()
        .filter(|(_, t)| t.to_f64_vec().iter().any(|x| !x.is_finite()))
        .map(|(n, _)| n)
        .take(5)
        .collect();
    if bad.is_empty() {
        "the gradient norm overflowed".into()
    } else {
        format!(
            "non-finite gradient of {}",
            bad.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// The first parameter holding a NaN or infinity, in words (`None` when all are finite).
pub fn non_finite_param(params: &ParamStore) -> Option<String> {
    let mut names: Vec<&String> = params.keys().collect();
    names.sort();
    names.into_iter().find_map(|n| {
        let t = &params[n];
        let i = t.to_f64_vec().iter().position(|x| !x.is_finite())?;
        Some(format!("parameter `{n}` is not finite (flat index {i})"))
    })
}
