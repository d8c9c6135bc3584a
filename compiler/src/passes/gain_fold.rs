//! Gain folding (PEAR, METHODS §4.4): a per-head output gain τ_h followed by W_O equals W_O
//! with head h's rows scaled by τ_h. This pass removes every gain multiplication from the
//! graph and reports which weights to rescale, so a folded model runs at zero extra cost.
//!
//! Lowering lists each gain site in its manifest (`lower::manifest::GainSite`): the
//! multiplication `heads_out · gain`, the gain parameter `{site}.gain` `[H]` and the output
//! projection `{site}.wo` `[H·d, D]`.

use super::{Dce, Pass};
use crate::error::{IrError, Result};
use crate::ir::{BinaryOp, Graph, Op, ValueId};
use crate::lower::manifest::GainSite;

/// One folded attention: scale rows `h·d .. (h+1)·d` of `wo` by `gain[h]`.
#[derive(Clone, Debug, PartialEq)]
pub struct GainFold {
    pub gain: String,
    pub wo: String,
    pub heads: usize,
}

/// The graph without the gain multiplications of `gains` (the manifest lowering returned
/// with `g`), and the weight rescalings that make it equivalent.
pub fn fold_gains(g: &Graph, gains: &[GainSite]) -> Result<(Graph, Vec<GainFold>)> {
    let mut redirect: Vec<ValueId> = g.ids().collect();
    let mut folds: Vec<GainFold> = Vec::new();
    for site in gains {
        let node = g
            .nodes
            .get(site.apply.index())
            .ok_or_else(|| IrError::Invalid {
                node: site.apply.index() as u32,
                msg: format!("gain site `{}` is not a node of this graph", site.gain),
            })?;
        if !matches!(node.op, Op::Binary(BinaryOp::Mul)) || node.inputs.len() != 2 {
            return Err(IrError::Invalid {
                node: site.apply.index() as u32,
                msg: format!("gain site `{}` is not a multiplication", site.gain),
            });
        }
        redirect[site.apply.index()] = node.inputs[0];
        // A loss view applies the same gain again: one fold per parameter.
        if !folds.iter().any(|f| f.gain == site.gain) {
            folds.push(GainFold {
                gain: site.gain.clone(),
                wo: site.wo.clone(),
                heads: site.heads,
            });
        }
    }
    let keep = vec![true; g.len()];
    let rewired = g.compact(&keep, &redirect)?;
    Ok((Dce.run(&rewired)?, folds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{DType, GraphBuilder, Init};

    #[test]
    fn removes_the_gain_of_the_site_and_reports_the_fold() {
        let mut b = GraphBuilder::new();
        let y = b.input("y", &[1, 2, 3, 4], DType::F32);
        let gain = b.param("l.attn.gain", &[2], Init::Ones, true);
        let g4 = b.reshape(gain, &[1, 2, 1, 1]).unwrap();
        let scaled = b.mul(y, g4).unwrap();
        let out = b.exp(scaled).unwrap();
        b.output("out", out);
        let g = b.finish().unwrap();
        let site = GainSite {
            layer: 0,
            gain: "l.attn.gain".into(),
            wo: "l.attn.wo".into(),
            heads: 2,
            trainable: true,
            apply: scaled,
        };
        // Not a multiplication: refused, naming the site.
        let mut wrong = site.clone();
        wrong.apply = out;
        let e = fold_gains(&g, &[wrong]).unwrap_err().to_string();
        assert!(e.contains("l.attn.gain"), "{e}");
        let (folded, folds) = fold_gains(&g, &[site]).unwrap();
        assert_eq!(
            folds,
            vec![GainFold {
                gain: "l.attn.gain".into(),
                wo: "l.attn.wo".into(),
                heads: 2
            }]
        );
        assert!(
            folded
                .nodes
                .iter()
                .all(|n| !matches!(n.op, Op::Param { .. } | Op::Binary(_))),
            "{folded}"
        );
        assert_eq!(
            folded
                .node(folded.node(folded.output("out").unwrap()).inputs[0])
                .op,
            Op::Input { name: "y".into() }
        );
    }
}
