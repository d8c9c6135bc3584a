//! Integer settings of a spec overridden in its text: tests and tools shrink example specs
//! (`dim`, `ctx`, the train `seq`) without walking the syntax tree themselves.

use crate::ast::{Decl, ExprKind, ModelItem};
use crate::Diagnostic;

/// `src` with each model setting of `model` that the spec assigns set to the given integer,
/// and each train setting of `train` set (`Some`) or removed (`None`) where the spec has it,
/// in canonical (`weft fmt`) form. Settings the spec does not write are left to their
/// defaults.
pub fn with_settings(
    src: &str,
    model: &[(&str, i64)],
    train: &[(&str, Option<i64>)],
) -> Result<String, Vec<Diagnostic>> {
    let mut file = crate::parse(src)?;
    for d in &mut file.decls {
        match d {
            Decl::Model(m) => {
                for it in &mut m.items {
                    let ModelItem::Assign(a) = it else { continue };
                    if let Some((_, v)) = model.iter().find(|(k, _)| *k == a.name.name) {
                        a.value.kind = ExprKind::Int(*v);
                    }
                }
            }
            Decl::Train(t) => {
                t.items
                    .retain(|a| !train.iter().any(|(k, v)| *k == a.name.name && v.is_none()));
                for a in &mut t.items {
                    if let Some((_, Some(v))) = train.iter().find(|(k, _)| *k == a.name.name) {
                        a.value.kind = ExprKind::Int(*v);
                    }
                }
            }
            Decl::Program(_) | Decl::Rule(_) => {}
        }
    }
    Ok(crate::format(&file, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_written_settings_and_removes_train_ones() {
        let src = "model m {\n  vocab = 64\n  dim = 32\n  heads = 2\n  layers = 1\n  ctx = 32\n  block b { x = x + attention(rms_norm(x)) }\n  layers { 0 => b }\n}\ntrain {\n  data = copy_task(len: 4)\n  steps = 3\n  seq = 32\n  batch = 8\n}\n";
        let out = with_settings(
            src,
            &[("dim", 16), ("ctx", 8)],
            &[("seq", None), ("batch", Some(2))],
        )
        .unwrap();
        let c = crate::check_source(&out).unwrap();
        assert_eq!((c.model.config.dim, c.model.config.ctx), (16, 8));
        let t = c.train.unwrap();
        // `seq` removed: its default, the model's ctx.
        assert_eq!((t.seq, t.batch), (8, 2));
    }
}
