//! The formatter's contract: printing then parsing gives the same AST (spans aside), and
//! formatting is idempotent — for every example and for generated ASTs.

use proptest::prelude::*;
use weft_dsl::ast::*;
use weft_dsl::{format, parse, Span};

fn examples() -> Vec<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir)
        .expect("examples/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "weft"))
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read_to_string(&p).expect("readable"),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_example_round_trips_and_is_already_canonical() {
    let all = examples();
    assert_eq!(all.len(), 12, "twelve example specs");
    for (name, src) in all {
        let ast = parse(&src).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let out = format(&ast, Some(&src));
        let again = parse(&out).unwrap_or_else(|e| panic!("{name} reformatted: {e:?}\n{out}"));
        assert_eq!(ast.without_spans(), again.without_spans(), "{name}");
        assert_eq!(
            format(&again, Some(&out)),
            out,
            "{name}: fmt is not idempotent"
        );
        assert_eq!(
            out, src,
            "{name} is not in canonical form (run `weft fmt --write`)"
        );
        // Comments survive formatting.
        assert_eq!(src.matches('#').count(), out.matches('#').count(), "{name}");
    }
}

fn sp() -> Span {
    Span::default()
}

const KEYWORDS: &[&str] = &[
    "model", "block", "pool", "repeat", "train", "program", "true", "false",
];

fn ident() -> impl Strategy<Value = Ident> {
    "[a-z_][a-z0-9_]{0,6}"
        .prop_filter("not a keyword", |s| !KEYWORDS.contains(&s.as_str()))
        .prop_map(|name| Ident { name, span: sp() })
}

fn leaf() -> impl Strategy<Value = Expr> {
    prop_oneof![
        (0i64..1_000_000_000_000).prop_map(ExprKind::Int),
        prop_oneof![0.0f64..1e-3, 0.0f64..10.0, 0.0f64..1e12].prop_map(ExprKind::Float),
        "[ -~]{0,8}".prop_map(ExprKind::Str),
        any::<bool>().prop_map(ExprKind::Bool),
        ident().prop_map(|i| ExprKind::Ident(i.name)),
    ]
    .prop_map(|kind| Expr { kind, span: sp() })
}

fn expr() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(4, 24, 4, |inner| {
        let op = prop_oneof![
            Just(BinOp::Add),
            Just(BinOp::Sub),
            Just(BinOp::Mul),
            Just(BinOp::Div)
        ];
        let arg = (proptest::option::of(ident()), inner.clone())
            .prop_map(|(name, value)| Arg { name, value });
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(ExprKind::List),
            (ident(), prop::collection::vec(arg, 0..4))
                .prop_map(|(func, args)| ExprKind::Call { func, args }),
            (op, inner.clone(), inner.clone()).prop_map(|(op, l, r)| ExprKind::Binary {
                op,
                lhs: Box::new(l),
                rhs: Box::new(r)
            }),
            inner.prop_map(|e| ExprKind::Neg(Box::new(e))),
        ]
        .prop_map(|kind| Expr { kind, span: sp() })
    })
}

fn assign() -> impl Strategy<Value = Assign> {
    (ident(), expr()).prop_map(|(name, value)| Assign {
        name,
        value,
        span: sp(),
    })
}

fn stmt() -> impl Strategy<Value = Stmt> {
    let leaf = assign().prop_map(Stmt::Assign);
    leaf.prop_recursive(2, 8, 3, |inner| {
        (expr(), prop::collection::vec(inner, 0..3)).prop_map(|(count, body)| {
            Stmt::Repeat(Repeat {
                count,
                body,
                span: sp(),
            })
        })
    })
}

fn model_item() -> impl Strategy<Value = ModelItem> {
    prop_oneof![
        assign().prop_map(ModelItem::Assign),
        (
            ident(),
            prop::collection::vec(ident(), 0..3),
            prop::collection::vec(stmt(), 0..3)
        )
            .prop_map(|(name, params, body)| ModelItem::Block(BlockDef {
                name,
                params,
                body,
                span: sp()
            })),
        (ident(), expr(), expr()).prop_map(|(name, size, module)| ModelItem::Pool(PoolDef {
            name,
            size,
            module,
            span: sp()
        })),
        prop::collection::vec(
            (expr(), proptest::option::of(expr()), expr()).prop_map(|(start, end, target)| {
                LayerRule {
                    start,
                    end,
                    target,
                    span: sp(),
                }
            }),
            0..3
        )
        .prop_map(|rules| ModelItem::Layers(LayersDef { rules, span: sp() })),
    ]
}

fn file() -> impl Strategy<Value = File> {
    let decl = prop_oneof![
        (
            ident(),
            proptest::option::of("[ -~]{0,12}"),
            prop::collection::vec(model_item(), 0..5)
        )
            .prop_map(|(name, base, items)| Decl::Model(Model {
                name,
                // `model NAME extends "base.weft" { ... }`, any printable path.
                extends: base.map(|path| Extends { path, span: sp() }),
                items,
                span: sp()
            })),
        (
            proptest::option::of(ident()),
            prop::collection::vec(assign(), 0..4)
        )
            .prop_map(|(model, items)| Decl::Train(Train {
                model,
                items,
                span: sp()
            })),
        (ident(), expr()).prop_map(|(name, value)| Decl::Program(Program {
            name,
            value,
            span: sp()
        })),
    ];
    prop::collection::vec(decl, 0..4).prop_map(|decls| File { decls })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn generated_asts_round_trip(f in file()) {
        let printed = format(&f, None);
        let parsed = parse(&printed).map_err(|e| TestCaseError::fail(format!("{e:?}\n{printed}")))?;
        prop_assert_eq!(parsed.without_spans(), f.clone());
        prop_assert_eq!(format(&parsed, Some(&printed)), printed);
    }
}
