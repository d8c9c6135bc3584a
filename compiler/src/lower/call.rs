//! A typed tensor construct applied to its input, with parameters named after its call site
//! in the frame (`attn`, `mlp`, `norm1`, `dropout`).

use super::frame::Frame;
use super::manifest::NormSite;
use super::{attention, ffn, hooks, Lowerer, Result};
use crate::ir::ValueId;
use crate::IrError;
use weft_dsl::typed::TensorCall;

/// A tensor builtin applied to its input, with parameters named after the call site.
pub(crate) fn apply(
    l: &mut Lowerer,
    f: &mut Frame,
    call: &TensorCall,
    input: ValueId,
) -> Result<ValueId> {
    let ffn = match call {
        TensorCall::Attention(a) => {
            let site = f.site("attn");
            return attention::attention(l, f, &site, a, input);
        }
        TensorCall::Mlp(m) => ffn::Ffn::Mlp(m),
        TensorCall::Swiglu(s) => ffn::Ffn::Swiglu(s),
        TensorCall::Norm(n) => {
            let site = f.site("norm");
            if l.view_prefix.is_empty() && !l.manifest.norms.iter().any(|s| s.params == site) {
                l.manifest.norms.push(NormSite {
                    layer: f.layer,
                    params: site.clone(),
                    kind: n.kind,
                    eps: n.eps,
                });
            }
            return ffn::norm(l, n, &site, input);
        }
        TensorCall::Dropout { p } => {
            let site = f.site("dropout");
            return l.dropout(&site, *p, input);
        }
        TensorCall::Route(_) => {
            return Err(IrError::Builder(
                "`route` has no tensor input: it is lowered where it is called".into(),
            ))
        }
    };
    let site = f.site("mlp");
    let out = ffn::feed_forward(l, &site, ffn, input)?;
    let hook = hooks::join(&f.hook_prefix(), hooks::MLP_OUT);
    l.hook(&hook, out);
    Ok(out)
}
