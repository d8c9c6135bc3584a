//! Values the checker computes for settings and call arguments. Lowering reads these, so
//! it never re-parses defaults or re-evaluates dimension arithmetic.

use crate::Span;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    /// A bare name from a closed set (`causal`, `signed`, `half`...).
    Name(String),
    List(Vec<Value>),
    Call(CallValue),
    /// A weighted sum of losses: `0.6 * segment_nll(...) + 0.4 * nll(...)`.
    Losses(Vec<(f64, CallValue)>),
    /// A tensor expression (only inside blocks; lowering evaluates the AST itself).
    Tensor,
}

impl Value {
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_name(&self) -> Option<&str> {
        match self {
            Value::Name(n) | Value::Str(n) => Some(n),
            _ => None,
        }
    }

    pub fn as_call(&self) -> Option<&CallValue> {
        match self {
            Value::Call(c) => Some(c),
            _ => None,
        }
    }

    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(v) => Some(v),
            _ => None,
        }
    }

    /// What the value is, for "expected X, found Y" messages.
    pub fn describe(&self) -> String {
        match self {
            Value::Int(_) => "an integer".into(),
            Value::Float(_) => "a number".into(),
            Value::Bool(_) => "a boolean".into(),
            Value::Str(_) => "a string".into(),
            Value::Name(n) => format!("the name `{n}`"),
            Value::List(_) => "a list".into(),
            Value::Call(c) => format!("`{}(...)`", c.name),
            Value::Losses(_) => "a loss".into(),
            Value::Tensor => "a tensor".into(),
        }
    }
}

/// A checked call to a builtin: every argument present, defaults filled in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallValue {
    pub name: String,
    pub args: BTreeMap<String, Value>,
    pub span: Span,
}

impl CallValue {
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.args.get(name)
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        self.get(name).and_then(Value::as_int)
    }

    pub fn float(&self, name: &str) -> Option<f64> {
        self.get(name).and_then(Value::as_f64)
    }

    pub fn name_arg(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(Value::as_name)
    }

    pub fn bool(&self, name: &str) -> Option<bool> {
        self.get(name).and_then(Value::as_bool)
    }
}
