//! Elementwise kernels: a fused chain of index-map ops, one invocation per output element.

use super::shader::{dispatch_for, Shader, WORKGROUP};
use super::template::Template;
use super::{CodegenError, Kernel};
use crate::ir::{numel, ValueId};

const TEMPLATE: &str = include_str!("templates/elementwise.wgsl");

/// The kernel that materialises index-map value `root` (and everything inlined into it).
pub(super) fn kernel(mut s: Shader, root: ValueId) -> Result<Kernel, CodegenError> {
    let n = numel(s.g.shape(root));
    // The root's own function holds the fused expression; loads of stored values stay loads.
    let f = super::expr::inline_body(&mut s, root);
    let ty = super::shader::wgsl_type(s.g.dtype(root));
    let out = s.write(root);
    s.const_u32("N", n);
    let main = Template::new("elementwise", TEMPLATE)
        .set("WG", WORKGROUP.to_string())
        .set("OUT", out)
        .set("ROOT", "root")
        .render()?;
    let main = format!("fn root(i: u32) -> {ty} {{\n{f}\n}}\n\n{main}");
    Ok(s.finish(main, WORKGROUP, dispatch_for(n), root))
}
