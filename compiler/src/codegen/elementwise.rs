//! Elementwise kernels: a fused chain of index-map ops, one invocation per output element.
//! A horizontally fused group ([`super::group`]) stores several same-sized values from one
//! launch.

use super::shader::{dispatch_for, wgsl_type, Shader, WORKGROUP};
use super::template::Template;
use super::{CodegenError, Kernel};
use crate::ir::{numel, ValueId};

const TEMPLATE: &str = include_str!("templates/elementwise.wgsl");

/// The kernel that materialises the index-map values `roots` (all of one element count),
/// each with everything inlined into it.
pub(super) fn kernel(mut s: Shader, roots: &[ValueId]) -> Result<Kernel, CodegenError> {
    let n = numel(s.g.shape(roots[0]));
    let mut stores = Vec::new();
    let mut fns = Vec::new();
    for &root in roots {
        // The root's own function holds the fused expression; loads of stored values stay
        // loads.
        let f = super::expr::inline_body(&mut s, root);
        let ty = wgsl_type(s.g.dtype(root));
        let out = s.write(root);
        fns.push(format!("fn root_{}(i: u32) -> {ty} {{\n{f}\n}}\n", root.0));
        stores.push(format!("    {out}[i] = root_{}(i);", root.0));
    }
    s.const_u32("N", n);
    let main = Template::new("elementwise", TEMPLATE)
        .set("WG", WORKGROUP.to_string())
        .set("STORES", stores.join("\n"))
        .render()?;
    let main = format!("{}\n{main}", fns.join("\n"));
    Ok(s.finish(main, WORKGROUP, dispatch_for(n), roots))
}
