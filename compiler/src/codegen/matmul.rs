//! Matmul kernels: batched, broadcast batch dims, transpose flags as strides, 4×4 register
//! tiles per invocation (see `templates/matmul.wgsl` for why no workgroup memory), with an
//! optional prologue (an inlined A operand) and epilogue (an inlined elementwise consumer).

use super::shader::{dispatch_for, u, Shader, WORKGROUP};
use super::template::Template;
use super::{CodegenError, Kernel};
use crate::ir::{numel, Op, ValueId};

const TEMPLATE: &str = include_str!("templates/matmul.wgsl");

/// `Σ_k coord_k(bi) · stride_k`: the element offset of the operand matrix that output batch
/// entry `bi` uses, with broadcast (extent-1) operand axes contributing nothing.
fn batch_offset(out_batch: &[usize], operand_batch: &[usize], matrix: usize) -> String {
    let off = out_batch.len() - operand_batch.len();
    let mut terms = Vec::new();
    let mut out_stride = 1;
    let mut op_stride = matrix;
    let mut out_strides = vec![0; out_batch.len()];
    for k in (0..out_batch.len()).rev() {
        out_strides[k] = out_stride;
        out_stride *= out_batch[k];
    }
    for k in (0..operand_batch.len()).rev() {
        let ext = operand_batch[k];
        if ext != 1 {
            let ok = off + k;
            let coord = if ok == 0 {
                format!("(bi / {})", u(out_strides[ok]))
            } else {
                format!("((bi / {}) % {})", u(out_strides[ok]), u(out_batch[ok]))
            };
            terms.push(format!("{coord} * {}", u(op_stride)));
        }
        op_stride *= ext;
    }
    if terms.is_empty() {
        "0u".into()
    } else {
        terms.join(" + ")
    }
}

/// The kernel computing matmul `root`. Operands are read through their value functions, so
/// an inlined A (a prologue such as a norm's scale) is evaluated at each load. With `host`
/// (see `Storage::Epilogue`), each accumulated element is passed through the host's inlined
/// elementwise chain and the host, not the product, is stored.
pub(super) fn kernel(
    mut s: Shader,
    root: ValueId,
    host: Option<ValueId>,
) -> Result<Kernel, CodegenError> {
    let g = s.g;
    let node = g.node(root);
    let Op::MatMul {
        transpose_a,
        transpose_b,
    } = node.op
    else {
        return Err(CodegenError::Template {
            template: "matmul".into(),
            message: format!("`{}` is not a matmul", node.op.name()),
        });
    };
    let (sa, sb, so) = (
        g.shape(node.inputs[0]),
        g.shape(node.inputs[1]),
        &node.shape,
    );
    let (ra, rb, ro) = (sa.len(), sb.len(), so.len());
    let (m, n) = (so[ro - 2], so[ro - 1]);
    let k = if transpose_a { sa[ra - 2] } else { sa[ra - 1] };
    let batch = numel(&so[..ro - 2]);
    // op(A) as m×k and op(B) as k×n in their stored layouts.
    let (a_rs, a_cs) = if transpose_a { (1, m) } else { (k, 1) };
    let (b_rs, b_cs) = if transpose_b { (1, k) } else { (n, 1) };
    let a = s.value_fn(node.inputs[0]);
    let b = s.value_fn(node.inputs[1]);
    let c = s.write(host.unwrap_or(root));
    let store = match host {
        None => format!("{c}[idx] = rows[r][c];"),
        Some(h) => {
            s.private_f32(super::shader::ACCUMULATOR);
            let body = super::expr::inline_body(&mut s, h);
            s.function(format!(
                "// epilogue: {h}\nfn epilogue(i: u32) -> f32 {{\n{body}\n}}"
            ));
            format!(
                "{} = rows[r][c];\n                {c}[idx] = epilogue(idx);",
                super::shader::ACCUMULATOR
            )
        }
    };
    for (name, v) in [
        ("M", m),
        ("N", n),
        ("K", k),
        ("BATCH", batch),
        ("TILES_M", m.div_ceil(4)),
        ("TILES_N", n.div_ceil(4)),
        ("A_RS", a_rs),
        ("A_CS", a_cs),
        ("B_RS", b_rs),
        ("B_CS", b_cs),
    ] {
        s.const_u32(name, v);
    }
    let main = Template::new("matmul", TEMPLATE)
        .set("WG", WORKGROUP.to_string())
        .set("A_BATCH", batch_offset(&so[..ro - 2], &sa[..ra - 2], m * k))
        .set("B_BATCH", batch_offset(&so[..ro - 2], &sb[..rb - 2], k * n))
        .set("A", a)
        .set("B", b)
        .set("STORE", store)
        .render()?;
    let items = batch * m.div_ceil(4) * n.div_ceil(4);
    Ok(s.finish(main, WORKGROUP, dispatch_for(items), host.unwrap_or(root)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_offsets_skip_broadcast_axes() {
        assert_eq!(batch_offset(&[2, 3], &[], 12), "0u");
        assert_eq!(batch_offset(&[2, 3], &[3], 12), "((bi / 1u) % 3u) * 12u");
        assert_eq!(batch_offset(&[2, 3], &[2, 1], 12), "(bi / 3u) * 12u");
    }
}
