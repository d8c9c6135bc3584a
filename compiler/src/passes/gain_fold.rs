//! Gain folding (PEAR, METHODS §4.4): a per-head output gain τ_h followed by W_O equals W_O
//! with head h's rows scaled by τ_h. This pass removes every gain multiplication from the
//! graph and reports which weights to rescale, so a folded model runs at zero extra cost.
//!
//! Lowering labels each gain multiplication `{site}.gain_apply`, with the gain parameter
//! `{site}.gain` `[H]` and the output projection `{site}.wo` `[H·d, D]`.

use super::{Dce, Pass};
use crate::error::Result;
use crate::ir::{Graph, Op, ValueId};

/// One folded attention: scale rows `h·d .. (h+1)·d` of `wo` by `gain[h]`.
#[derive(Clone, Debug, PartialEq)]
pub struct GainFold {
    pub gain: String,
    pub wo: String,
    pub heads: usize,
}

/// The graph without gain ops, and the weight rescalings that make it equivalent.
pub fn fold_gains(g: &Graph) -> Result<(Graph, Vec<GainFold>)> {
    let mut redirect: Vec<ValueId> = g.ids().collect();
    let mut folds = Vec::new();
    for v in g.ids() {
        let Some(label) = g.labels.get(v.index()).and_then(|l| l.as_deref()) else {
            continue;
        };
        let Some(site) = label.strip_suffix(".gain_apply") else {
            continue;
        };
        let node = g.node(v);
        if !matches!(node.op, Op::Binary(crate::ir::BinaryOp::Mul)) || node.inputs.len() != 2 {
            continue;
        }
        redirect[v.index()] = node.inputs[0];
        let gain = format!("{site}.gain");
        let heads = g
            .param_index(&gain)
            .map(|i| g.params[i].shape.iter().product())
            .unwrap_or(0);
        folds.push(GainFold {
            gain,
            wo: format!("{site}.wo"),
            heads,
        });
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
    fn removes_labelled_gain_and_reports_the_fold() {
        let mut b = GraphBuilder::new();
        let y = b.input("y", &[1, 2, 3, 4], DType::F32);
        let gain = b.param("l.attn.gain", &[2], Init::Ones, true);
        let g4 = b.reshape(gain, &[1, 2, 1, 1]).unwrap();
        b.set_label(Some("l.attn.gain_apply".into()));
        let scaled = b.mul(y, g4).unwrap();
        b.set_label(None);
        let out = b.exp(scaled).unwrap();
        b.output("out", out);
        let g = b.finish().unwrap();
        let (folded, folds) = fold_gains(&g).unwrap();
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
