//! Evaluating a syntax tree against a context, and the rules for which types each operator
//! accepts. The same table ([`binary_type`]) gates evaluation and drives the static check, so
//! the two cannot disagree about what is a type error.
//!
//! Values read from the context are borrowed, not copied, until an operation needs its own.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::io;

use serde_json::{Map, Number, Value};

use super::parse::{BinOp, Kind, Node};
use super::{ExprError, MAX_ELEMENTS, MAX_STRING, func, truthy, unknown_name};

static NULL: Value = Value::Null;

/// The six JSON types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Type {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

impl Type {
    const ALL: [Type; 6] = [Type::Null, Type::Bool, Type::Number, Type::String, Type::Array, Type::Object];

    pub(super) fn name(self) -> &'static str {
        match self {
            Type::Null => "null",
            Type::Bool => "boolean",
            Type::Number => "number",
            Type::String => "string",
            Type::Array => "array",
            Type::Object => "object",
        }
    }

    pub(super) fn with_article(self) -> &'static str {
        match self {
            Type::Null => "null",
            Type::Bool => "a boolean",
            Type::Number => "a number",
            Type::String => "a string",
            Type::Array => "an array",
            Type::Object => "an object",
        }
    }
}

pub(super) fn type_of(v: &Value) -> Type {
    match v {
        Value::Null => Type::Null,
        Value::Bool(_) => Type::Bool,
        Value::Number(_) => Type::Number,
        Value::String(_) => Type::String,
        Value::Array(_) => Type::Array,
        Value::Object(_) => Type::Object,
    }
}

/// A set of types: what a value may be, or what a function accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Types(u8);

impl Types {
    pub(super) const NONE: Types = Types(0);
    pub(super) const ANY: Types = Types(0b11_1111);
    pub(super) const NULL: Types = Types::of(Type::Null);
    pub(super) const BOOL: Types = Types::of(Type::Bool);
    pub(super) const NUMBER: Types = Types::of(Type::Number);
    pub(super) const STRING: Types = Types::of(Type::String);
    pub(super) const ARRAY: Types = Types::of(Type::Array);
    pub(super) const OBJECT: Types = Types::of(Type::Object);

    pub(super) const fn of(t: Type) -> Types {
        Types(1 << t as u8)
    }

    pub(super) const fn or(self, other: Types) -> Types {
        Types(self.0 | other.0)
    }

    pub(super) const fn without(self, other: Types) -> Types {
        Types(self.0 & !other.0)
    }

    pub(super) fn has(self, t: Type) -> bool {
        self.0 & Types::of(t).0 != 0
    }

    pub(super) fn meets(self, other: Types) -> bool {
        self.0 & other.0 != 0
    }

    pub(super) fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub(super) fn iter(self) -> impl Iterator<Item = Type> {
        Type::ALL.into_iter().filter(move |t| self.has(*t))
    }

    /// "number", "number or string", "a string, an array or an object".
    pub(super) fn describe(self, articles: bool) -> String {
        let names: Vec<&str> = self.iter().map(|t| if articles { t.with_article() } else { t.name() }).collect();
        match names.split_last() {
            None => "nothing".to_string(),
            Some((last, [])) => last.to_string(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        }
    }
}

/// The types `a op b` gives when the operator accepts operands of types `a` and `b`.
pub(super) fn binary_type(op: BinOp, a: Type, b: Type) -> Option<Types> {
    use Type::{Array, Number, Object, String};
    match op {
        BinOp::And | BinOp::Or => Some(Types::of(a).or(Types::of(b))),
        BinOp::Eq | BinOp::Ne => Some(Types::BOOL),
        BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
            matches!((a, b), (Number, Number) | (String, String)).then_some(Types::BOOL)
        }
        BinOp::In | BinOp::NotIn => {
            matches!((a, b), (_, Array) | (String, String) | (String, Object)).then_some(Types::BOOL)
        }
        BinOp::Add => match (a, b) {
            (Number, Number) => Some(Types::NUMBER),
            (String, String) => Some(Types::STRING),
            (Array, Array) => Some(Types::ARRAY),
            _ => None,
        },
        BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem => (a == Number && b == Number).then_some(Types::NUMBER),
    }
}

/// The error for `a op b` when [`binary_type`] accepts no pair of types from `a` and `b`.
pub(super) fn binary_type_error(op: BinOp, a: Types, b: Types, at: usize) -> ExprError {
    let (da, db) = (a.describe(false), b.describe(false));
    let sym = op.symbol();
    let err = match op {
        BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
            let err = ExprError::new(at, format!("cannot compare {da} with {db}"));
            if a.meets(Types::NUMBER.or(Types::STRING)) && b.meets(Types::NUMBER.or(Types::STRING)) {
                err.hint("convert one side first, with number(...) or string(...)")
            } else {
                err.hint(format!("'{sym}' compares two numbers or two strings"))
            }
        }
        BinOp::In | BinOp::NotIn if !b.meets(Types::ARRAY.or(Types::STRING).or(Types::OBJECT)) => {
            ExprError::new(at, format!("'{sym}' needs an array, a string or an object on its right, got {db}"))
        }
        BinOp::In | BinOp::NotIn => ExprError::new(
            at,
            format!(
                "'{sym}' looks for text in a string or a key in an object, so its left side must be a string, got {da}"
            ),
        ),
        BinOp::Add => {
            let err = ExprError::new(at, format!("cannot add {da} and {db}"));
            if a.meets(Types::STRING) || b.meets(Types::STRING) {
                err.hint("convert first: string(x) to join text, number(x) to add numbers")
            } else {
                err.hint("'+' adds numbers and joins two strings or two arrays")
            }
        }
        _ => ExprError::new(at, format!("'{sym}' needs two numbers, got {da} and {db}")),
    };
    if a == Types::NULL || b == Types::NULL { null_hint(err) } else { err }
}

/// Replaces a hint with the likelier explanation when a value is null.
pub(super) fn null_hint(err: ExprError) -> ExprError {
    err.hint(
        "null usually means a missing field or output; give a fallback with default(x, ...) or test x != null first",
    )
}

/// A JSON number as arithmetic sees it.
#[derive(Clone, Copy, Debug)]
pub(super) enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    /// The number in `v`, or 0 for anything else (callers have checked the type).
    pub(super) fn of(v: &Value) -> Num {
        match v {
            Value::Number(n) => match n.as_i64() {
                Some(i) => Num::Int(i),
                None => Num::Float(n.as_f64().unwrap_or(0.0)),
            },
            _ => Num::Int(0),
        }
    }

    pub(super) fn to_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    /// A whole float as an integer when it fits one.
    pub(super) fn whole(f: f64) -> Num {
        float_to_int(f).map_or(Num::Float(f), Num::Int)
    }

    pub(super) fn into_value(self, at: usize, what: &str) -> Result<Value, ExprError> {
        match self {
            Num::Int(i) => Ok(Value::from(i)),
            Num::Float(f) => Number::from_f64(f)
                .map(Value::Number)
                .ok_or_else(|| ExprError::new(at, format!("the result of {what} is too large for a number"))),
        }
    }
}

/// `f` as an `i64` when it is whole and in range.
pub(super) fn float_to_int(f: f64) -> Option<i64> {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0; // 2^63
    (f.fract() == 0.0 && (-LIMIT..LIMIT).contains(&f)).then_some(f as i64)
}

/// Compares two numbers exactly, even an integer beyond 2^53 with a float.
pub(super) fn cmp_num(a: Num, b: Num) -> Ordering {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => x.cmp(&y),
        (Num::Int(x), Num::Float(y)) => cmp_int_float(x, y),
        (Num::Float(x), Num::Int(y)) => cmp_int_float(y, x).reverse(),
        (Num::Float(x), Num::Float(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
    }
}

fn cmp_int_float(i: i64, f: f64) -> Ordering {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if f >= LIMIT {
        return Ordering::Less;
    }
    if f < -LIMIT {
        return Ordering::Greater;
    }
    let whole = f.trunc();
    i.cmp(&(whole as i64)).then(0.0.partial_cmp(&(f - whole)).unwrap_or(Ordering::Equal))
}

fn arithmetic(op: BinOp, a: Num, b: Num, at: usize) -> Result<Value, ExprError> {
    let div_zero = || ExprError::new(at, "division by zero").hint("test the divisor first, as in b != 0 ? a / b : 0");
    if let (Num::Int(x), Num::Int(y)) = (a, b) {
        let exact = match op {
            BinOp::Add => x.checked_add(y),
            BinOp::Sub => x.checked_sub(y),
            BinOp::Mul => x.checked_mul(y),
            BinOp::Div if y == 0 => return Err(div_zero()),
            BinOp::Div => x.checked_rem(y).filter(|r| *r == 0).and_then(|_| x.checked_div(y)),
            BinOp::Rem if y == 0 => return Err(div_zero()),
            BinOp::Rem => Some(x.wrapping_rem(y)),
            _ => None,
        };
        if let Some(i) = exact {
            return Ok(Value::from(i));
        }
    }
    let (x, y) = (a.to_f64(), b.to_f64());
    let r = match op {
        BinOp::Add => x + y,
        BinOp::Sub => x - y,
        BinOp::Mul => x * y,
        BinOp::Div | BinOp::Rem if y == 0.0 => return Err(div_zero()),
        BinOp::Div => x / y,
        _ => x % y,
    };
    Num::Float(r).into_value(at, &format!("'{}'", op.symbol()))
}

fn too_large_error(at: usize, what: &str) -> ExprError {
    ExprError::new(at, what.to_string()).hint("work on a smaller part of the data, for example in an earlier step")
}

/// The error for a string that would pass [`MAX_STRING`].
pub(super) fn too_long(at: usize) -> ExprError {
    too_large_error(at, "the result would be longer than 1 MiB")
}

/// Fails when a string of `len` bytes would pass [`MAX_STRING`].
pub(super) fn check_len(len: usize, at: usize) -> Result<(), ExprError> {
    if len > MAX_STRING { Err(too_long(at)) } else { Ok(()) }
}

/// Fails when an array of `len` elements would pass [`MAX_ELEMENTS`].
pub(super) fn check_count(len: usize, at: usize) -> Result<(), ExprError> {
    if len > MAX_ELEMENTS {
        Err(too_large_error(at, &format!("the result would have more than {MAX_ELEMENTS} elements")))
    } else {
        Ok(())
    }
}

/// A buffer that refuses to grow past [`MAX_STRING`], so serializing a huge value stops early.
#[derive(Default)]
struct Bounded(Vec<u8>);

impl io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.0.len() + buf.len() > MAX_STRING {
            return Err(io::Error::other("too long"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Compact JSON text of a value.
pub(super) fn to_json(v: &Value, at: usize) -> Result<String, ExprError> {
    let mut out = Bounded::default();
    serde_json::to_writer(&mut out, v).map_err(|_| too_long(at))?;
    String::from_utf8(out.0).map_err(|_| too_long(at))
}

/// A value as text in a template or `string()`: a string as it is, null as nothing, anything
/// else as compact JSON.
pub(super) fn to_text(v: &Value, at: usize) -> Result<String, ExprError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        other => to_json(other, at),
    }
}

/// Walks one expression over one context, counting work against a budget.
pub(super) struct Evaluator<'c> {
    ctx: &'c Value,
    steps: u64,
    budget: u64,
}

impl<'c> Evaluator<'c> {
    pub(super) fn new(ctx: &'c Value, budget: u64) -> Evaluator<'c> {
        Evaluator { ctx, steps: 0, budget }
    }

    /// Counts `n` units of work; fails once the budget is spent.
    pub(super) fn charge(&mut self, n: usize, at: usize) -> Result<(), ExprError> {
        self.steps = self.steps.saturating_add(n as u64);
        if self.steps > self.budget {
            return Err(ExprError::new(at, format!("the expression needs more than {} steps of work", self.budget))
                .hint("it goes through too much data; narrow the data down in an earlier step"));
        }
        Ok(())
    }

    pub(super) fn eval<'a>(&mut self, node: &'a Node) -> Result<Cow<'a, Value>, ExprError>
    where
        'c: 'a,
    {
        self.charge(1, node.offset)?;
        let at = node.offset;
        Ok(match &node.kind {
            Kind::Literal(v) => Cow::Borrowed(v),
            Kind::Array(items) => {
                let items = items.iter().map(|i| self.eval(i).map(Cow::into_owned)).collect::<Result<_, _>>()?;
                Cow::Owned(Value::Array(items))
            }
            Kind::Object(entries) => {
                let mut map = Map::new();
                for (k, v) in entries {
                    map.insert(k.clone(), self.eval(v)?.into_owned());
                }
                Cow::Owned(Value::Object(map))
            }
            Kind::Root(name) => match self.ctx.as_object().and_then(|m| m.get(name)) {
                Some(v) => Cow::Borrowed(v),
                None => {
                    let known: Vec<&str> =
                        self.ctx.as_object().map(|m| m.keys().map(String::as_str).collect()).unwrap_or_default();
                    return Err(unknown_name(name, &known, at));
                }
            },
            Kind::Field(base, name) => field(self.eval(base)?, name),
            Kind::Index(base, index) => {
                let base = self.eval(base)?;
                let i = self.eval(index)?;
                element(base, &i, index.offset)?
            }
            Kind::Neg(x) => {
                let v = self.eval(x)?;
                if !v.is_number() {
                    let err = ExprError::new(at, format!("'-' needs a number, got {}", type_of(&v).name()));
                    return Err(if v.is_null() { null_hint(err) } else { err });
                }
                let neg = match Num::of(&v) {
                    Num::Int(i) => i.checked_neg().map_or(Num::Float(-(i as f64)), Num::Int),
                    Num::Float(f) => Num::Float(-f),
                };
                Cow::Owned(neg.into_value(at, "'-'")?)
            }
            Kind::Not(x) => Cow::Owned(Value::Bool(!truthy(&*self.eval(x)?))),
            Kind::Binary(BinOp::And, a, b) => {
                let l = self.eval(a)?;
                if truthy(&l) { self.eval(b)? } else { l }
            }
            Kind::Binary(BinOp::Or, a, b) => {
                let l = self.eval(a)?;
                if truthy(&l) { l } else { self.eval(b)? }
            }
            Kind::Binary(op, a, b) => {
                let l = self.eval(a)?;
                let r = self.eval(b)?;
                Cow::Owned(self.binary(*op, &l, &r, at)?)
            }
            Kind::Cond(cond, yes, no) => {
                let c = self.eval(cond)?;
                if truthy(&c) { self.eval(yes)? } else { self.eval(no)? }
            }
            Kind::Call(spec, args) => func::call(self, spec, args, at)?,
        })
    }

    fn binary(&mut self, op: BinOp, l: &Value, r: &Value, at: usize) -> Result<Value, ExprError> {
        let (tl, tr) = (type_of(l), type_of(r));
        if binary_type(op, tl, tr).is_none() {
            return Err(binary_type_error(op, Types::of(tl), Types::of(tr), at));
        }
        Ok(match (op, l, r) {
            (BinOp::Eq, _, _) => Value::Bool(self.equal(l, r, at)?),
            (BinOp::Ne, _, _) => Value::Bool(!self.equal(l, r, at)?),
            (BinOp::In, _, _) => Value::Bool(self.contains(r, l, at)?),
            (BinOp::NotIn, _, _) => Value::Bool(!self.contains(r, l, at)?),
            (BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge, _, _) => {
                let ord = match (l, r) {
                    (Value::String(a), Value::String(b)) => a.cmp(b),
                    _ => cmp_num(Num::of(l), Num::of(r)),
                };
                Value::Bool(match op {
                    BinOp::Lt => ord.is_lt(),
                    BinOp::Le => ord.is_le(),
                    BinOp::Gt => ord.is_gt(),
                    _ => ord.is_ge(),
                })
            }
            (BinOp::Add, Value::String(a), Value::String(b)) => {
                check_len(a.len() + b.len(), at)?;
                Value::String(format!("{a}{b}"))
            }
            (BinOp::Add, Value::Array(a), Value::Array(b)) => {
                check_count(a.len() + b.len(), at)?;
                self.charge(a.len() + b.len(), at)?;
                Value::Array(a.iter().chain(b).cloned().collect())
            }
            _ => arithmetic(op, Num::of(l), Num::of(r), at)?,
        })
    }

    /// Deep JSON equality in which `1 == 1.0`.
    pub(super) fn equal(&mut self, a: &Value, b: &Value, at: usize) -> Result<bool, ExprError> {
        self.charge(1, at)?;
        Ok(match (a, b) {
            (Value::Number(_), Value::Number(_)) => cmp_num(Num::of(a), Num::of(b)).is_eq(),
            (Value::Array(x), Value::Array(y)) => {
                if x.len() != y.len() {
                    return Ok(false);
                }
                for (p, q) in x.iter().zip(y) {
                    if !self.equal(p, q, at)? {
                        return Ok(false);
                    }
                }
                true
            }
            (Value::Object(x), Value::Object(y)) => {
                if x.len() != y.len() {
                    return Ok(false);
                }
                for (k, p) in x {
                    match y.get(k) {
                        Some(q) if self.equal(p, q, at)? => {}
                        _ => return Ok(false),
                    }
                }
                true
            }
            _ => a == b,
        })
    }

    /// `item in container`, for types [`binary_type`] accepts: an element of an array, a
    /// substring of a string, a key of an object.
    pub(super) fn contains(&mut self, container: &Value, item: &Value, at: usize) -> Result<bool, ExprError> {
        Ok(match (container, item) {
            (Value::Array(items), _) => {
                for x in items {
                    if self.equal(x, item, at)? {
                        return Ok(true);
                    }
                }
                false
            }
            (Value::String(s), Value::String(needle)) => s.contains(needle.as_str()),
            (Value::Object(map), Value::String(key)) => map.contains_key(key),
            _ => false,
        })
    }
}

/// `base.name`: the field of an object, or null for anything else.
fn field<'a>(base: Cow<'a, Value>, name: &str) -> Cow<'a, Value> {
    match base {
        Cow::Borrowed(v) => Cow::Borrowed(v.get(name).unwrap_or(&NULL)),
        Cow::Owned(Value::Object(mut map)) => Cow::Owned(map.remove(name).unwrap_or(Value::Null)),
        Cow::Owned(_) => Cow::Borrowed(&NULL),
    }
}

/// `base[index]`: a string indexes an object, a whole number an array (negative counts from the
/// end); anything that does not lead to a value is null. An index that is neither a string nor
/// a whole number is an error, since no data makes it right.
fn element<'a>(base: Cow<'a, Value>, index: &Value, at: usize) -> Result<Cow<'a, Value>, ExprError> {
    let i = match index {
        Value::String(key) => return Ok(field(base, key)),
        Value::Number(_) => match Num::of(index) {
            Num::Int(i) => i,
            Num::Float(f) => float_to_int(f).ok_or_else(|| {
                ExprError::new(at, format!("an array index must be a whole number, got {f}"))
                    .hint("round it first with int(...) or round(...)")
            })?,
        },
        other => {
            let err =
                ExprError::new(at, format!("an index must be a number or a string, got {}", type_of(other).name()));
            return Err(if other.is_null() { null_hint(err) } else { err });
        }
    };
    let len = match &*base {
        Value::Array(items) => items.len(),
        _ => return Ok(Cow::Borrowed(&NULL)),
    };
    let pos = if i < 0 { i.checked_add(len as i64).filter(|p| *p >= 0) } else { Some(i) };
    let Some(pos) = pos.and_then(|p| usize::try_from(p).ok()).filter(|p| *p < len) else {
        return Ok(Cow::Borrowed(&NULL));
    };
    Ok(match base {
        Cow::Borrowed(Value::Array(items)) => items.get(pos).map_or(Cow::Borrowed(&NULL), Cow::Borrowed),
        Cow::Owned(Value::Array(mut items)) => Cow::Owned(items.swap_remove(pos)),
        _ => Cow::Borrowed(&NULL),
    })
}
