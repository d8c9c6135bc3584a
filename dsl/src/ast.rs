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
}

/// `model NAME { ... }`: dimensions, blocks, pools and the layer schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub name: Ident,
    pub items: Vec<ModelItem>,
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
        }
    }

    /// Binding strength: `*` and `/` bind tighter than `+` and `-`.
    pub fn precedence(self) -> u8 {
        match self {
            BinOp::Add | BinOp::Sub => 1,
            BinOp::Mul | BinOp::Div => 2,
        }
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
        clear_file(&mut f);
        f
    }
}

fn clear_file(f: &mut File) {
    for d in &mut f.decls {
        match d {
            Decl::Model(m) => {
                m.span = Span::default();
                clear_ident(&mut m.name);
                for it in &mut m.items {
                    match it {
                        ModelItem::Assign(a) => clear_assign(a),
                        ModelItem::Block(b) => {
                            b.span = Span::default();
                            clear_ident(&mut b.name);
                            b.params.iter_mut().for_each(clear_ident);
                            b.body.iter_mut().for_each(clear_stmt);
                        }
                        ModelItem::Pool(p) => {
                            p.span = Span::default();
                            clear_ident(&mut p.name);
                            clear_expr(&mut p.size);
                            clear_expr(&mut p.module);
                        }
                        ModelItem::Layers(l) => {
                            l.span = Span::default();
                            for r in &mut l.rules {
                                r.span = Span::default();
                                clear_expr(&mut r.start);
                                if let Some(e) = &mut r.end {
                                    clear_expr(e);
                                }
                                clear_expr(&mut r.target);
                            }
                        }
                    }
                }
            }
            Decl::Train(t) => {
                t.span = Span::default();
                if let Some(m) = &mut t.model {
                    clear_ident(m);
                }
                t.items.iter_mut().for_each(clear_assign);
            }
            Decl::Program(p) => {
                p.span = Span::default();
                clear_ident(&mut p.name);
                clear_expr(&mut p.value);
            }
        }
    }
}

fn clear_stmt(s: &mut Stmt) {
    match s {
        Stmt::Assign(a) => clear_assign(a),
        Stmt::Repeat(r) => {
            r.span = Span::default();
            clear_expr(&mut r.count);
            r.body.iter_mut().for_each(clear_stmt);
        }
    }
}

fn clear_assign(a: &mut Assign) {
    a.span = Span::default();
    clear_ident(&mut a.name);
    clear_expr(&mut a.value);
}

fn clear_ident(i: &mut Ident) {
    i.span = Span::default();
}

fn clear_expr(e: &mut Expr) {
    e.span = Span::default();
    match &mut e.kind {
        ExprKind::List(items) => items.iter_mut().for_each(clear_expr),
        ExprKind::Call { func, args } => {
            clear_ident(func);
            for a in args {
                if let Some(n) = &mut a.name {
                    clear_ident(n);
                }
                clear_expr(&mut a.value);
            }
        }
        ExprKind::Binary { lhs, rhs, .. } => {
            clear_expr(lhs);
            clear_expr(rhs);
        }
        ExprKind::Neg(inner) => clear_expr(inner),
        _ => {}
    }
}
