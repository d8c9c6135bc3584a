//! Typed, resolved values of the builtin constructs: one Rust type per builtin kind, built by
//! the checker from the argument maps it has already validated, with every default filled.
//!
//! Consumers (lowering, the trainer, probes, the CLI) match these types exhaustively, so a
//! construct added to the [builtins table](crate::builtins) without a variant here fails the
//! `types_and_table_agree` test instead of silently meaning something else downstream.
//! Defaults live only in the table: conversion never invents a value; a missing argument is
//! a [`ResolveError`].

mod attention;
mod model;
mod probe;
mod tensor;
mod train;

pub use attention::{
    Gain, HeadParam, Layout, MaskRule, MoiceRouter, ParamInit, PositionRule, RuleDef, RuleExpr,
    RuleFn, RuleOp, RuleVar, RuleWeights, WeightRule,
};
pub use model::{AbsPosition, ModelConfig};
pub use probe::{CollapseTaskName, FinalIntervention, OvForm, PatchCorruption, PatchTask, Probe};
pub use tensor::{
    Activation, Attention, Execution, Mlp, Norm, NormKind, Route, Router, Swiglu, TensorCall,
};
pub use train::{
    DataSource, Loss, LossMask, LossTerm, LossView, Objective, Optimizer, Replace, Reweight,
    Schedule, TrainSpec, Transform,
};

use crate::builtins::Kind;
use crate::check::value::{CallValue, Value};
use crate::Span;
use std::fmt;

/// A builtin kind as a Rust type: built from a checked call, named back for messages.
pub trait Resolved: Sized + std::fmt::Debug {
    /// The builtin kind whose calls this type holds.
    const KIND: Kind;
    /// The names of the builtins of [`Self::KIND`] this type has a variant for.
    const NAMES: &'static [&'static str];
    /// The typed value of a checked call (every argument present).
    fn from_call(c: &CallValue) -> Result<Self, ResolveError>;
    /// The builtin's name, as written in a spec.
    fn name(&self) -> &'static str;
}

/// A checked call that does not fit its type: a call built by hand without the checker, or
/// a builtin added to the table without a variant. Never a user error in a checked spec.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolveError {
    pub builtin: String,
    /// What the call should have been (`a position rule (...)`).
    pub expected: &'static str,
    /// The argument at fault; `None` when the builtin itself is unknown for the kind.
    pub arg: Option<String>,
    pub span: Span,
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.arg {
            Some(a) => write!(
                f,
                "`{}(...)`: argument `{a}` is missing or of the wrong type",
                self.builtin
            ),
            None => write!(f, "`{}` is not {}", self.builtin, self.expected),
        }
    }
}

impl std::error::Error for ResolveError {}

/// Reads the arguments of one checked call; every accessor names the argument on failure.
pub(crate) struct Args<'a> {
    pub call: &'a CallValue,
    expected: &'static str,
}

impl<'a> Args<'a> {
    pub fn new(call: &'a CallValue, kind: Kind) -> Self {
        Args {
            call,
            expected: kind.describe(),
        }
    }

    /// Arguments that are a section's settings rather than a call's (`train { }`).
    pub fn section(call: &'a CallValue, expected: &'static str) -> Self {
        Args { call, expected }
    }

    /// The error for a builtin name this kind does not have.
    pub fn unknown(&self) -> ResolveError {
        ResolveError {
            builtin: self.call.name.clone(),
            expected: self.expected,
            arg: None,
            span: self.call.span,
        }
    }

    pub fn bad(&self, arg: &str) -> ResolveError {
        ResolveError {
            builtin: self.call.name.clone(),
            expected: self.expected,
            arg: Some(arg.to_string()),
            span: self.call.span,
        }
    }

    fn get(&self, k: &str) -> Result<&'a Value, ResolveError> {
        self.call.get(k).ok_or_else(|| self.bad(k))
    }

    pub fn int(&self, k: &str) -> Result<i64, ResolveError> {
        self.get(k)?.as_int().ok_or_else(|| self.bad(k))
    }

    /// A count or length: negatives (which the checker's bounds rule out) become 0.
    pub fn count(&self, k: &str) -> Result<usize, ResolveError> {
        Ok(self.int(k)?.max(0) as usize)
    }

    pub fn float(&self, k: &str) -> Result<f64, ResolveError> {
        self.get(k)?.as_f64().ok_or_else(|| self.bad(k))
    }

    pub fn bool(&self, k: &str) -> Result<bool, ResolveError> {
        self.get(k)?.as_bool().ok_or_else(|| self.bad(k))
    }

    pub fn text(&self, k: &str) -> Result<String, ResolveError> {
        Ok(self
            .get(k)?
            .as_name()
            .ok_or_else(|| self.bad(k))?
            .to_string())
    }

    /// A bare name from a closed set, as its typed choice.
    pub fn choice<C: Choice>(&self, k: &str) -> Result<C, ResolveError> {
        let n = self.get(k)?.as_name().ok_or_else(|| self.bad(k))?;
        C::from_name(n).ok_or_else(|| self.bad(k))
    }

    /// An optional argument (table default `""`): absent means not given.
    pub fn opt<T>(
        &self,
        k: &str,
        f: impl FnOnce(&Self, &str) -> Result<T, ResolveError>,
    ) -> Result<Option<T>, ResolveError> {
        match self.call.get(k) {
            None => Ok(None),
            Some(_) => f(self, k).map(Some),
        }
    }

    pub fn list(&self, k: &str) -> Result<&'a [Value], ResolveError> {
        self.get(k)?.as_list().ok_or_else(|| self.bad(k))
    }

    pub fn floats(&self, k: &str) -> Result<Vec<f64>, ResolveError> {
        self.list(k)?
            .iter()
            .map(|v| v.as_f64().ok_or_else(|| self.bad(k)))
            .collect()
    }

    pub fn counts(&self, k: &str) -> Result<Vec<usize>, ResolveError> {
        self.list(k)?
            .iter()
            .map(|v| {
                v.as_int()
                    .map(|i| i.max(0) as usize)
                    .ok_or_else(|| self.bad(k))
            })
            .collect()
    }

    pub fn texts(&self, k: &str) -> Result<Vec<String>, ResolveError> {
        self.list(k)?
            .iter()
            .map(|v| v.as_name().map(str::to_string).ok_or_else(|| self.bad(k)))
            .collect()
    }

    /// A nested builtin call (`position: rope(...)`, `router: gru()`).
    pub fn nested<T: Resolved>(&self, k: &str) -> Result<T, ResolveError> {
        let c = self.get(k)?.as_call().ok_or_else(|| self.bad(k))?;
        T::from_call(c)
    }
}

/// A closed set of bare names (`mask: causal`): the builtins table's `Ty::Choice` lists are
/// these types' [`Choice::NAMES`], so the two cannot drift apart.
pub trait Choice: Sized + Copy + 'static {
    const NAMES: &'static [&'static str];
    fn from_name(name: &str) -> Option<Self>;
    fn name(self) -> &'static str;
}

/// Declares a [`Choice`] enum from `Variant = "name"` pairs.
macro_rules! choice {
    ($(#[$m:meta])* $ty:ident { $($(#[$vm:meta])* $var:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $ty { $($(#[$vm])* $var),+ }

        impl $ty {
            /// Every name, in declaration order (the builtins table's list).
            pub const NAMES: &'static [&'static str] = &[$($s),+];
            /// Every variant, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$var),+];

            /// The variant a spec names; `None` for a name outside the set.
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($s => Some($ty::$var),)+
                    _ => None,
                }
            }

            /// The name a spec writes.
            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$var => $s),+
                }
            }
        }

        impl $crate::typed::Choice for $ty {
            const NAMES: &'static [&'static str] = $ty::NAMES;
            fn from_name(name: &str) -> Option<Self> {
                $ty::from_name(name)
            }
            fn name(self) -> &'static str {
                $ty::name(self)
            }
        }
    };
}
pub(crate) use choice;

#[cfg(test)]
mod tests;
