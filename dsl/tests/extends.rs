//! `model NAME extends "base.weft" { ... }`: resolution by `check_file`, overrides by name,
//! diagnostics that point into the right file, and the examples that use it.

use std::path::{Path, PathBuf};
use weft_dsl::check::value::Value;
use weft_dsl::{check_file, check_source};

const BASE: &str = "model llama {
  vocab = 64; dim = 32; heads = 4; kv_heads = 2; layers = 2; ctx = 32
  block decoder {
    x = x + attention(rms_norm(x, eps: 1e-5), position: rope(base: 10000.0, layout: half))
    x = x + swiglu(rms_norm(x, eps: 1e-5), hidden: 64)
  }
  layers { 0 .. layers => decoder }
}
";

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weft-extends-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(d.join("sub")).unwrap();
    d
}

fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

#[test]
fn derived_items_override_by_name_and_new_ones_are_added() {
    let d = dir("override");
    write(&d.join("sub/llama.weft"), BASE);
    let spec = write(
        &d.join("moice.weft"),
        "model moice extends \"sub/llama.weft\" {
  ctx = 64
  block decoder {
    x = x + attention(rms_norm(x, eps: 1e-5), position: rope(bases: [10000, 20000], router: swiglu))
    x = x + swiglu(rms_norm(x, eps: 1e-5), hidden: 64)
  }
  note = \"derived\"
}
train {
  data = copy_task(len: 8)
  steps = 10
  trainable = [\"*.router.*\"]
}
",
    );
    let c = check_file(&spec).unwrap_or_else(|e| panic!("{}", e[0].render()));
    assert_eq!(c.model.name, "moice");
    assert_eq!(c.model.config.ctx, 64, "overridden setting");
    assert_eq!(c.model.config.kv_heads, 2, "inherited setting");
    assert_eq!(
        c.model.setting("note").and_then(Value::as_name),
        Some("derived")
    );
    assert_eq!(c.model.layers.len(), 2, "inherited schedule");
    let body = format!("{:?}", c.model.blocks["decoder"].body);
    assert!(
        body.contains("bases"),
        "the derived block replaced the base's"
    );
    assert!(c.train.is_some());
}

#[test]
fn errors_point_into_the_file_that_has_them() {
    let d = dir("errors");
    write(&d.join("sub/llama.weft"), BASE);
    // An error in the derived file is reported against it.
    let spec = write(
        &d.join("bad.weft"),
        "model bad extends \"sub/llama.weft\" {\n  heads = 3\n}\n",
    );
    let errs = check_file(&spec).unwrap_err();
    assert!(errs.iter().any(|e| e.path == spec), "{errs:?}");
    // A missing base is reported at the `extends` clause.
    let spec = write(
        &d.join("missing.weft"),
        "model m extends \"nowhere.weft\" {\n}\n",
    );
    let errs = check_file(&spec).unwrap_err();
    let r = errs[0].render();
    assert!(
        r.contains("missing.weft:1:") && r.contains("nowhere.weft"),
        "{r}"
    );
    // An error that lies in the base is shown in the base file.
    write(
        &d.join("sub/broken.weft"),
        "model b {\n  vocab = 64; dim = 32; heads = 4; layers = 1; ctx = 8\n  block decoder { x = x + attention(rms_norm(x), weights: sigend) }\n  layers { 0 => decoder }\n}\n",
    );
    let spec = write(
        &d.join("on_broken.weft"),
        "model m extends \"sub/broken.weft\" {\n  ctx = 16\n}\n",
    );
    let errs = check_file(&spec).unwrap_err();
    assert!(
        errs[0].path.ends_with("sub/broken.weft") && errs[0].render().contains("sigend"),
        "{}",
        errs[0].render()
    );
    // Cycles end with an error instead of recursing.
    write(&d.join("a.weft"), "model a extends \"b.weft\" {\n}\n");
    write(&d.join("b.weft"), "model b extends \"a.weft\" {\n}\n");
    let errs = check_file(&d.join("a.weft")).unwrap_err();
    assert!(errs[0].render().contains("extends itself"), "{errs:?}");
}

#[test]
fn check_source_alone_cannot_resolve_extends() {
    let errs = check_source("model m extends \"base.weft\" {\n}\n").unwrap_err();
    assert!(errs.iter().any(|d| d.code == "extends"), "{errs:?}");
}

#[test]
fn the_imported_examples_check() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/imported");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "weft") {
            check_file(&p).unwrap_or_else(|e| panic!("{}", e[0].render()));
            let src = std::fs::read_to_string(&p).unwrap();
            let ast = weft_dsl::parse(&src).unwrap();
            assert_eq!(
                weft_dsl::format(&ast, Some(&src)),
                src,
                "{} is not in canonical form",
                p.display()
            );
            n += 1;
        }
    }
    assert!(
        n >= 2,
        "examples/imported has the base and the derived spec"
    );
}
