//! Values held by the interpreter.

/// One computed value: floats in the run's precision, or i32.
#[derive(Clone, Debug)]
pub(crate) enum Value<T> {
    F(Vec<T>),
    I(Vec<i32>),
}

impl<T> Value<T> {
    /// The float data. The graph is verified before a run, so a dtype mismatch here is an
    /// interpreter bug, not a user error.
    pub fn f(&self) -> &[T] {
        match self {
            Value::F(v) => v,
            Value::I(_) => panic!("interpreter bug: expected an f32 value, found i32"),
        }
    }

    /// The i32 data (see [`Value::f`]).
    pub fn i(&self) -> &[i32] {
        match self {
            Value::I(v) => v,
            Value::F(_) => panic!("interpreter bug: expected an i32 value, found f32"),
        }
    }
}

/// Read access to an operand's data: a value of the run, or (on the fast path) a parameter
/// read where it lies. Lets helpers that pick operands apart serve both interpreters.
pub(crate) trait Operand<T> {
    fn f(&self) -> &[T];
    fn i(&self) -> &[i32];
}

impl<T> Operand<T> for Value<T> {
    fn f(&self) -> &[T] {
        Value::f(self)
    }

    fn i(&self) -> &[i32] {
        Value::i(self)
    }
}

/// Applies a dtype-agnostic data movement to either variant.
macro_rules! map_value {
    ($v:expr, |$x:ident| $body:expr) => {
        match $v {
            Value::F($x) => Value::F($body),
            Value::I($x) => Value::I($body),
        }
    };
}
pub(crate) use map_value;
