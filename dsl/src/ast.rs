//! The typed syntax tree. Every node carries the [`Span`] of the text it came from; the
//! tree is plain data (serde) so tools can dump and diff it.

use crate::Span;
use serde::{Deserialize, Serialize};

/// One parsed `.weft` file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct File {
    pub decls: Vec<Decl>,
}

/// A top-level declaration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Decl {
    Model(Model),
    Train(Train),
    Program(Program),
    Rule(RuleDef),
}

/// `rule NAME { score = ...; mask = ...; weights = ...; PARAM = head_param(...) }`: an
/// attention rule written in the language (checked by `check::attn_rule`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleDef {
    pub name: Ident,
    pub items: Vec<Assign>,
    pub span: Span,
}

/// `model NAME { ... }`: dimensions, blocks, pools and the layer schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub name: Ident,
    /// `extends "base.weft"`: the base spec (relative to this file) whose model this one
    /// overrides by name; resolved by [`crate::check_file`], not by [`crate::check`].
    #[serde(default)]
    pub extends: Option<Extends>,
    pub items: Vec<ModelItem>,
    pub span: Span,
}

/// The `extends "PATH"` clause of a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Extends {
    pub path: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ModelItem {
    Assign(Assign),
    Block(BlockDef),
    Pool(PoolDef),
    Layers(LayersDef),
}

/// `block NAME(params) { stmts }`: a residual-stream transformer of `x`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockDef {
    pub name: Ident,
    pub params: Vec<Ident>,
    pub body: Vec<Stmt>,
    pub span: Span,
}

/// `pool NAME[SIZE] { module }`: SIZE independent copies of one module (MoM).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoolDef {
    pub name: Ident,
    pub size: Expr,
    pub module: Expr,
    pub span: Span,
}

/// `layers { RANGE => BLOCK(args) ... }`: which block each layer index runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayersDef {
    pub rules: Vec<LayerRule>,
    pub span: Span,
}

/// `start => target` or `start .. end => target` (half-open, like Rust ranges).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerRule {
    pub start: Expr,
    pub end: Option<Expr>,
    pub target: Expr,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Stmt {
    Assign(Assign),
    Repeat(Repeat),
}

/// `repeat N { stmts }`: run the body N times with shared weights (MoM iterations).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Repeat {
    pub count: Expr,
    pub body: Vec<Stmt>,
    pub span: Span,
}

/// `name = expr`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Assign {
    pub name: Ident,
    pub value: Expr,
    pub span: Span,
}

/// `train [MODEL] { key = value ... }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Train {
    pub model: Option<Ident>,
    pub items: Vec<Assign>,
    pub span: Span,
}

/// `program NAME = call(...)`: a procedure run over the model (probes, Batch-ICL, PEAR...).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Program {
    pub name: Ident,
    pub value: Expr,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ExprKind {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    Ident(String),
    List(Vec<Expr>),
    Call {
        func: Ident,
        args: Vec<Arg>,
    },
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    Neg(Box<Expr>),
    /// `!e` (rule definitions only).
    Not(Box<Expr>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    // Comparisons and logic: only rule definitions (masks) accept them.
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Or,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::And => "&&",
            BinOp::Or => "||",
        }
    }

    /// Binding strength: `||` < `&&` < comparisons < `+ -` < `* /` (prefix `-`/`!` bind
    /// tighter than all, [`BinOp::PREFIX`]).
    pub fn precedence(self) -> u8 {
        match self {
            BinOp::Or => 1,
            BinOp::And => 2,
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge | BinOp::Eq | BinOp::Ne => 3,
            BinOp::Add | BinOp::Sub => 4,
            BinOp::Mul | BinOp::Div => 5,
        }
    }

    /// The binding strength of the prefix operators `-` and `!`.
    pub const PREFIX: u8 = 6;

    /// Whether this is an arithmetic operator (the only ones outside rule definitions).
    pub fn is_arithmetic(self) -> bool {
        matches!(self, BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div)
    }
}

/// A call argument, positional (`name == None`) or named (`name: value`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Expr,
}

impl File {
    pub fn models(&self) -> impl Iterator<Item = &Model> {
        self.decls.iter().filter_map(|d| match d {
            Decl::Model(m) => Some(m),
            _ => None,
        })
    }

    pub fn trains(&self) -> impl Iterator<Item = &Train> {
        self.decls.iter().filter_map(|d| match d {
            Decl::Train(t) => Some(t),
            _ => None,
        })
    }

    pub fn rules(&self) -> impl Iterator<Item = &RuleDef> {
        self.decls.iter().filter_map(|d| match d {
            Decl::Rule(r) => Some(r),
            _ => None,
        })
    }

    pub fn programs(&self) -> impl Iterator<Item = &Program> {
        self.decls.iter().filter_map(|d| match d {
            Decl::Program(p) => Some(p),
            _ => None,
        })
    }

    /// A copy with every span zeroed: two files are "the same program" when these are equal
    /// (the formatter's round-trip property).
    pub fn without_spans(&self) -> File {
        let mut f = self.clone();
        f.for_each_span_mut(&mut |s| *s = Span::default());
        f
    }

    /// Calls `f` on every span in the tree (used to zero them, and to move a base file's
    /// spans out of the way when `extends` merges two files).
    pub fn for_each_span_mut(&mut self, f: &mut impl FnMut(&mut Span)) {
        visit_file(self, f)
    }
}

fn visit_file(file: &mut File, f: &mut impl FnMut(&mut Span)) {
    for d in &mut file.decls {
        match d {
            Decl::Model(m) => {
                f(&mut m.span);
                visit_ident(f, &mut m.name);
                if let Some(e) = &mut m.extends {
                    f(&mut e.span);
                }
                for it in &mut m.items {
                    match it {
                        ModelItem::Assign(a) => visit_assign(f, a),
                        ModelItem::Block(b) => {
                            f(&mut b.span);
                            visit_ident(f, &mut b.name);
                            b.params.iter_mut().for_each(|i| visit_ident(f, i));
                            b.body.iter_mut().for_each(|st| visit_stmt(f, st));
                        }
                        ModelItem::Pool(p) => {
                            f(&mut p.span);
                            visit_ident(f, &mut p.name);
                            visit_expr(f, &mut p.size);
                            visit_expr(f, &mut p.module);
                        }
                        ModelItem::Layers(l) => {
                            f(&mut l.span);
                            for r in &mut l.rules {
                                f(&mut r.span);
                                visit_expr(f, &mut r.start);
                                if let Some(e) = &mut r.end {
                                    visit_expr(f, e);
                                }
                                visit_expr(f, &mut r.target);
                            }
                        }
                    }
                }
            }
            Decl::Train(t) => {
                f(&mut t.span);
                if let Some(m) = &mut t.model {
                    visit_ident(f, m);
                }
                t.items.iter_mut().for_each(|a| visit_assign(f, a));
            }
            Decl::Program(p) => {
                f(&mut p.span);
                visit_ident(f, &mut p.name);
                visit_expr(f, &mut p.value);
            }
            Decl::Rule(r) => {
                f(&mut r.span);
                visit_ident(f, &mut r.name);
                r.items.iter_mut().for_each(|a| visit_assign(f, a));
            }
        }
    }
}

fn visit_stmt(f: &mut impl FnMut(&mut Span), s: &mut Stmt) {
    match s {
        Stmt::Assign(a) => visit_assign(f, a),
        Stmt::Repeat(r) => {
            f(&mut r.span);
            visit_expr(f, &mut r.count);
            r.body.iter_mut().for_each(|st| visit_stmt(f, st));
        }
    }
}

fn visit_assign(f: &mut impl FnMut(&mut Span), a: &mut Assign) {
    f(&mut a.span);
    visit_ident(f, &mut a.name);
    visit_expr(f, &mut a.value);
}

fn visit_ident(f: &mut impl FnMut(&mut Span), i: &mut Ident) {
    f(&mut i.span);
}

fn visit_expr(f: &mut impl FnMut(&mut Span), e: &mut Expr) {
    f(&mut e.span);
    match &mut e.kind {
        ExprKind::List(items) => items.iter_mut().for_each(|e| visit_expr(f, e)),
        ExprKind::Call { func, args } => {
            visit_ident(f, func);
            for a in args {
                if let Some(n) = &mut a.name {
                    visit_ident(f, n);
                }
                visit_expr(f, &mut a.value);
            }
        }
        ExprKind::Binary { lhs, rhs, .. } => {
            visit_expr(f, lhs);
            visit_expr(f, rhs);
        }
        ExprKind::Neg(inner) | ExprKind::Not(inner) => visit_expr(f, inner),
        _ => {}
    }
}
