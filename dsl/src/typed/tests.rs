//! The typed values and the builtins table stay in step: every builtin of a kind has a
//! variant, every variant names a builtin, and a call with only the table's defaults (and
//! sample values for required arguments) converts.

use super::*;
use crate::builtins::{names_of, Kind, Ty, BUILTINS};
use crate::check::ModelInfo;
use std::collections::BTreeSet;

const MODEL: &str = "model m {
  vocab = 64
  dim = 16
  heads = 2
  layers = 1
  ctx = 16
  pool experts[2] { mlp(rms_norm(x)) }
  block b { x = x + attention(rms_norm(x)) }
  layers { 0 => b }
}
";

fn model() -> ModelInfo {
    crate::check_source(MODEL).expect("test model checks").model
}

/// A value of `ty` for a required argument.
fn sample(ty: Ty) -> &'static str {
    match ty {
        Ty::Int => "1",
        Ty::Float => "1.0",
        Ty::Bool => "true",
        Ty::Str => "\"data.txt\"",
        Ty::Choice(c) => c[0],
        Ty::Of(Kind::Tensor) => "x",
        Ty::Of(Kind::Router) => "mlp()",
        Ty::Of(_) => unreachable!("no required argument of another kind"),
        Ty::Pool => "experts",
        Ty::Rule => "softmax",
        Ty::IntList => "[1]",
        Ty::FloatList => "[1.0, 0.5, 0.25, 0.125]",
        Ty::StrList => "[\"<mask>\"]",
        Ty::ListOf(_) => "[]",
    }
}

/// Every builtin of `T::KIND`, called with its defaults, converts to a variant of the same
/// name; the names of `T` are exactly the table's.
fn in_step<T: Resolved>() {
    let table: BTreeSet<&str> = names_of(T::KIND).collect();
    let typed: BTreeSet<&str> = T::NAMES.iter().copied().collect();
    assert_eq!(table, typed, "{:?}: table and type disagree", T::KIND);
    let m = model();
    for b in BUILTINS.iter().filter(|b| b.kind == T::KIND) {
        let args: Vec<String> = b
            .params
            .iter()
            .filter(|p| p.default.is_none())
            .map(|p| match p.ty {
                // Written positionally: `pool` is a keyword.
                Ty::Pool | Ty::Of(Kind::Tensor) => sample(p.ty).to_string(),
                _ => format!("{}: {}", p.name, sample(p.ty)),
            })
            .collect();
        let src = format!("{}({})", b.name, args.join(", "));
        let call = m
            .call_source(&src, T::KIND)
            .unwrap_or_else(|e| panic!("{src}: {e:?}"));
        let v = T::from_call(&call).unwrap_or_else(|e| panic!("{src}: {e}"));
        assert_eq!(v.name(), b.name);
    }
    let unknown = crate::check::value::CallValue {
        name: "no_such_builtin".into(),
        args: Default::default(),
        span: crate::Span::default(),
    };
    let e = T::from_call(&unknown).unwrap_err();
    assert_eq!(e.arg, None, "{e}");
}

#[test]
fn types_and_table_agree() {
    in_step::<TensorCall>();
    in_step::<PositionRule>();
    in_step::<Router>();
    in_step::<Optimizer>();
    in_step::<Schedule>();
    in_step::<DataSource>();
    in_step::<Transform>();
    in_step::<Loss>();
    in_step::<Reweight>();
    in_step::<Probe>();
}

#[test]
fn every_kind_has_a_type() {
    // A new kind in the table needs a `Resolved` type above.
    let kinds: BTreeSet<String> = BUILTINS.iter().map(|b| format!("{:?}", b.kind)).collect();
    let typed: BTreeSet<String> = [
        TensorCall::KIND,
        PositionRule::KIND,
        Router::KIND,
        Optimizer::KIND,
        Schedule::KIND,
        DataSource::KIND,
        Transform::KIND,
        Loss::KIND,
        Reweight::KIND,
        Probe::KIND,
    ]
    .iter()
    .map(|k| format!("{k:?}"))
    .collect();
    assert_eq!(kinds, typed);
}

#[test]
fn a_checked_train_section_is_typed_with_its_defaults() {
    let src = format!(
        "{MODEL}train {{
  data = copy_task(len: 4)
  steps = 3
  optimizer = sgd(lr: 0.5)
  loss = 0.5 * nll(mask: answers) + 0.5 * segment_nll(reweight: advantage())
  eval = [copy_accuracy(len: 4)]
}}
program p = pear(heads: 2)
"
    );
    let c = crate::check_source(&src).unwrap();
    let t = c.train.as_ref().unwrap();
    assert_eq!(t.data, DataSource::CopyTask { len: 4, vocab: 64 });
    assert_eq!((t.steps, t.batch, t.seq, t.accumulate), (3, 16, 16, 1));
    assert_eq!((t.clip, t.log_every, t.eval_every), (1.0, 10, 100));
    assert_eq!(
        t.optimizer,
        Optimizer::Sgd {
            lr: 0.5,
            momentum: 0.0,
            weight_decay: 0.0
        }
    );
    assert_eq!(t.schedule, Schedule::Constant { warmup: 0 });
    assert_eq!(c.trainable(), vec!["*".to_string()]);
    assert_eq!(t.loss.len(), 2);
    assert_eq!(
        t.loss[1].loss,
        Loss::SegmentNll {
            reweight: Some(Reweight::Advantage {
                gamma: 11.0,
                window: 10
            }),
            view: LossView::Same
        }
    );
    assert_eq!(
        t.eval,
        vec![Probe::CopyAccuracy {
            len: 4,
            samples: 64
        }]
    );
    assert!(matches!(
        c.programs[0].probe,
        Probe::Pear {
            heads: 2,
            steps: 60,
            ..
        }
    ));
    let cfg = &c.model.config;
    assert_eq!((cfg.kv_heads, cfg.head_dim), (2, 8));
    assert_eq!(cfg.final_norm, NormKind::RmsNorm);
}

#[test]
fn a_position_rule_keeps_its_optional_arguments() {
    let m = model();
    let c = m
        .call_source("rope(bases: [10000.0, 500.0], top_k: 1)", Kind::Position)
        .unwrap();
    let p = PositionRule::from_call(&c).unwrap();
    assert_eq!(p.moice_bases(), Some(&[10000.0, 500.0][..]));
    let c = m.call_source("rope()", Kind::Position).unwrap();
    let p = PositionRule::from_call(&c).unwrap();
    assert_eq!(p.moice_bases(), None);
    assert!(matches!(
        p,
        PositionRule::Rope {
            bases: None,
            top_k: None,
            ..
        }
    ));
}

/// `ModelConfig` has one field per `MODEL_SETTINGS` entry, so a setting added to the table is
/// read typed (and a field never outlives its setting).
#[test]
fn model_config_and_settings_table_agree() {
    let cfg = serde_json::to_value(&model().config).unwrap();
    let fields: BTreeSet<&str> = cfg
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let table: BTreeSet<&str> = crate::builtins::MODEL_SETTINGS
        .iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(fields, table);
}
