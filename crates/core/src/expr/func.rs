//! The built-in functions: a fixed table with each one's arity and accepted argument types,
//! which the parser (arity), the evaluator and the static check (types) all read.

use std::borrow::Cow;

use serde_json::Value;

use super::eval::{
    Evaluator, Num, Types, check_count, check_len, cmp_num, float_to_int, null_hint, to_json, to_text, type_of,
};
use super::parse::Node;
use super::{ExprError, suggest};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum F {
    Len,
    Lower,
    Upper,
    Trim,
    Contains,
    StartsWith,
    EndsWith,
    Split,
    Join,
    Replace,
    String,
    Number,
    Int,
    Round,
    Floor,
    Ceil,
    Abs,
    Min,
    Max,
    Default,
    Exists,
    Keys,
    Values,
    Json,
    FromJson,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) struct FuncSpec {
    pub(super) name: &'static str,
    pub(super) id: F,
    min: usize,
    max: usize,
    /// Accepted types of each argument; arguments past the list accept `rest`.
    params: &'static [Types],
    rest: Types,
    /// What the function may return, for the static check.
    pub(super) returns: Types,
}

impl FuncSpec {
    pub(super) fn param(&self, i: usize) -> Types {
        self.params.get(i).copied().unwrap_or(self.rest)
    }

    pub(super) fn check_arity(&self, got: usize, at: usize) -> Result<(), ExprError> {
        if (self.min..=self.max).contains(&got) {
            return Ok(());
        }
        let plural = |n: usize| if n == 1 { "argument" } else { "arguments" };
        let takes = match (self.min, self.max) {
            (min, usize::MAX) => format!("at least {min} {}", plural(min)),
            (min, max) if min == max => format!("{min} {}", plural(min)),
            (min, max) if max == min + 1 => format!("{min} or {max} arguments"),
            (min, max) => format!("{min} to {max} arguments"),
        };
        Err(ExprError::new(at, format!("{}() takes {takes}, got {got}", self.name)))
    }
}

const ANY: Types = Types::ANY;
const NUM: Types = Types::NUMBER;
const STR: Types = Types::STRING;
const ARR: Types = Types::ARRAY;
const OBJ: Types = Types::OBJECT;
const BOOL: Types = Types::BOOL;
const SIZED: Types = STR.or(ARR).or(OBJ);
const SCALAR: Types = STR.or(NUM).or(BOOL);
const NUMS: Types = NUM.or(ARR);

const fn spec(name: &'static str, id: F, min: usize, max: usize, params: &'static [Types], returns: Types) -> FuncSpec {
    FuncSpec { name, id, min, max, params, rest: NUM, returns }
}

pub(super) static FUNCS: [FuncSpec; 25] = [
    spec("len", F::Len, 1, 1, &[SIZED], NUM),
    spec("lower", F::Lower, 1, 1, &[STR], STR),
    spec("upper", F::Upper, 1, 1, &[STR], STR),
    spec("trim", F::Trim, 1, 1, &[STR], STR),
    spec("contains", F::Contains, 2, 2, &[SIZED, ANY], BOOL),
    spec("starts_with", F::StartsWith, 2, 2, &[STR, STR], BOOL),
    spec("ends_with", F::EndsWith, 2, 2, &[STR, STR], BOOL),
    spec("split", F::Split, 2, 2, &[STR, STR], ARR),
    spec("join", F::Join, 2, 2, &[ARR, STR], STR),
    spec("replace", F::Replace, 3, 3, &[STR, STR, STR], STR),
    spec("string", F::String, 1, 1, &[ANY], STR),
    spec("number", F::Number, 1, 1, &[SCALAR], NUM),
    spec("int", F::Int, 1, 1, &[SCALAR], NUM),
    spec("round", F::Round, 1, 2, &[NUM, NUM], NUM),
    spec("floor", F::Floor, 1, 1, &[NUM], NUM),
    spec("ceil", F::Ceil, 1, 1, &[NUM], NUM),
    spec("abs", F::Abs, 1, 1, &[NUM], NUM),
    spec("min", F::Min, 1, usize::MAX, &[NUMS], NUM.or(Types::NULL)),
    spec("max", F::Max, 1, usize::MAX, &[NUMS], NUM.or(Types::NULL)),
    spec("default", F::Default, 2, 2, &[ANY, ANY], ANY),
    spec("exists", F::Exists, 1, 1, &[ANY], BOOL),
    spec("keys", F::Keys, 1, 1, &[OBJ], ARR),
    spec("values", F::Values, 1, 1, &[OBJ], ARR),
    spec("json", F::Json, 1, 1, &[ANY], STR),
    spec("from_json", F::FromJson, 1, 1, &[STR], ANY),
];

/// Names people reach for from other languages, with ours.
const ALIASES: [(&str, &str); 16] = [
    ("length", "len"),
    ("size", "len"),
    ("count", "len"),
    ("lowercase", "lower"),
    ("uppercase", "upper"),
    ("strip", "trim"),
    ("includes", "contains"),
    ("str", "string"),
    ("tostring", "string"),
    ("float", "number"),
    ("tonumber", "number"),
    ("integer", "int"),
    ("coalesce", "default"),
    ("tojson", "json"),
    ("fromjson", "from_json"),
    ("parsejson", "from_json"),
];

pub(super) fn lookup(name: &str) -> Option<&'static FuncSpec> {
    FUNCS.iter().find(|f| f.name == name)
}

/// The error for a call of a function that does not exist.
pub(super) fn unknown(name: &str, at: usize) -> ExprError {
    let err = ExprError::new(at, format!("unknown function '{name}'"));
    // Aliases are candidates too, so `lenght` finds `length` and so `len`.
    let candidates = FUNCS.iter().map(|f| f.name).chain(ALIASES.iter().map(|(alias, _)| *alias));
    let near = suggest(name, candidates).map(|c| ALIASES.iter().find(|(a, _)| *a == c).map_or(c, |(_, f)| *f));
    match near {
        Some(near) => err.hint(format!("did you mean '{near}'?")),
        None => {
            let names: Vec<&str> = FUNCS.iter().map(|f| f.name).collect();
            err.hint(format!("the functions are {}", names.join(", ")))
        }
    }
}

/// The error for an argument of a type the function never accepts.
pub(super) fn arg_type_error(spec: &FuncSpec, i: usize, got: Types, at: usize) -> ExprError {
    let want = spec.param(i).describe(true);
    let got_text = got.describe(true);
    let message = if spec.max == 1 {
        format!("{}() expects {want}, got {got_text}", spec.name)
    } else {
        let ordinal = match i {
            0 => "first".to_string(),
            1 => "second".to_string(),
            2 => "third".to_string(),
            n => format!("number {}", n + 1),
        };
        format!("{}() expects {want} as its {ordinal} argument, got {got_text}", spec.name)
    };
    let err = ExprError::new(at, message);
    if got == Types::NULL { null_hint(err) } else { err }
}

/// Evaluates a call. `default` evaluates its fallback only when needed, so defaults chain.
pub(super) fn call<'a, 'c: 'a>(
    ev: &mut Evaluator<'c>,
    spec: &FuncSpec,
    args: &'a [Node],
    at: usize,
) -> Result<Cow<'a, Value>, ExprError> {
    if let (F::Default, [x, fallback]) = (spec.id, args) {
        let v = ev.eval(x)?;
        return if v.is_null() { ev.eval(fallback) } else { Ok(v) };
    }
    let mut values = Vec::with_capacity(args.len());
    for (i, arg) in args.iter().enumerate() {
        let v = ev.eval(arg)?;
        let t = type_of(&v);
        if !spec.param(i).has(t) {
            return Err(arg_type_error(spec, i, Types::of(t), arg.offset));
        }
        values.push(v);
    }
    let values: Vec<&Value> = values.iter().map(|v| &**v).collect();
    apply(ev, spec, &values, args, at).map(Cow::Owned)
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn apply(ev: &mut Evaluator, spec: &FuncSpec, args: &[&Value], nodes: &[Node], at: usize) -> Result<Value, ExprError> {
    let name = spec.name;
    let arg_at = |i: usize| nodes.get(i).map_or(at, |n| n.offset);
    Ok(match (spec.id, args) {
        (F::Len, [x]) => Value::from(match x {
            Value::String(s) => s.chars().count(),
            Value::Array(a) => a.len(),
            Value::Object(o) => o.len(),
            _ => 0,
        }),
        (F::Lower, [s]) => bounded(text(s).to_lowercase(), at)?,
        (F::Upper, [s]) => bounded(text(s).to_uppercase(), at)?,
        (F::Trim, [s]) => Value::from(text(s).trim()),
        (F::Contains, [haystack, needle]) => {
            if matches!(haystack, Value::String(_) | Value::Object(_)) && !needle.is_string() {
                let what = if haystack.is_string() { "text in a string" } else { "a key in an object" };
                let err = ExprError::new(
                    arg_at(1),
                    format!(
                        "contains() looks for {what}, so its second argument must be a string, got {}",
                        type_of(needle).with_article()
                    ),
                );
                return Err(if needle.is_null() { null_hint(err) } else { err });
            }
            Value::Bool(ev.contains(haystack, needle, at)?)
        }
        (F::StartsWith, [s, p]) => Value::Bool(text(s).starts_with(text(p))),
        (F::EndsWith, [s, p]) => Value::Bool(text(s).ends_with(text(p))),
        (F::Split, [s, sep]) => split(ev, text(s), text(sep), at)?,
        (F::Join, [items, sep]) => join(ev, items, text(sep), at)?,
        (F::Replace, [s, from, to]) => replace(text(s), text(from), text(to), arg_at(1), at)?,
        (F::String, [x]) => Value::String(to_text(x, at)?),
        (F::Number, [x]) => to_number(x, name, arg_at(0))?.into_value(at, "number()")?,
        (F::Int, [x]) => {
            let n = to_number(x, name, arg_at(0))?;
            let f = n.to_f64().trunc();
            match n {
                Num::Int(i) => Value::from(i),
                Num::Float(_) => Value::from(
                    float_to_int(f)
                        .ok_or_else(|| ExprError::new(arg_at(0), format!("int() cannot fit {f} in a whole number")))?,
                ),
            }
        }
        (F::Round, [x]) => round(Num::of(x), 0).into_value(at, "round()")?,
        (F::Round, [x, digits]) => {
            let whole = match Num::of(digits) {
                Num::Int(d) => Some(d),
                Num::Float(d) => float_to_int(d),
            };
            let Some(d) = whole.filter(|d| (-15..=15).contains(d)) else {
                let shown = Num::of(digits).to_f64();
                let message = format!("round() takes a whole number of digits from -15 to 15, got {shown}");
                return Err(ExprError::new(arg_at(1), message));
            };
            round(Num::of(x), d as i32).into_value(at, "round()")?
        }
        (F::Floor, [x]) => whole(Num::of(x), f64::floor).into_value(at, "floor()")?,
        (F::Ceil, [x]) => whole(Num::of(x), f64::ceil).into_value(at, "ceil()")?,
        (F::Abs, [x]) => match Num::of(x) {
            Num::Int(i) => i.checked_abs().map_or(Num::Float((i as f64).abs()), Num::Int),
            Num::Float(f) => Num::Float(f.abs()),
        }
        .into_value(at, "abs()")?,
        (F::Min | F::Max, _) => extreme(ev, spec, args, nodes, at)?,
        (F::Exists, [x]) => Value::Bool(!x.is_null()),
        (F::Keys | F::Values, [Value::Object(map)]) => {
            check_count(map.len(), at)?;
            ev.charge(map.len(), at)?;
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let pick = |(k, v): (&String, &Value)| if spec.id == F::Keys { Value::from(k.as_str()) } else { v.clone() };
            Value::Array(entries.into_iter().map(pick).collect())
        }
        (F::Json, [x]) => Value::String(to_json(x, at)?),
        (F::FromJson, [s]) => serde_json::from_str(text(s))
            .map_err(|e| ExprError::new(arg_at(0), format!("from_json() could not read its argument as JSON: {e}")))?,
        // The parser checked the arity and `call` the types, so this is not reached.
        _ => return Err(ExprError::new(at, format!("{name}() cannot take these arguments"))),
    })
}

fn bounded(s: String, at: usize) -> Result<Value, ExprError> {
    check_len(s.len(), at)?;
    Ok(Value::String(s))
}

fn split(ev: &mut Evaluator, s: &str, sep: &str, at: usize) -> Result<Value, ExprError> {
    let mut out = Vec::new();
    let mut push = |piece: &str| {
        out.push(Value::from(piece));
        check_count(out.len(), at)
    };
    if sep.is_empty() {
        let mut buf = [0u8; 4];
        for c in s.chars() {
            push(c.encode_utf8(&mut buf))?;
        }
    } else {
        for piece in s.split(sep) {
            push(piece)?;
        }
    }
    ev.charge(out.len(), at)?;
    Ok(Value::Array(out))
}

fn join(ev: &mut Evaluator, items: &Value, sep: &str, at: usize) -> Result<Value, ExprError> {
    let items = items.as_array().map(Vec::as_slice).unwrap_or_default();
    ev.charge(items.len(), at)?;
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        out.push_str(&to_text(item, at)?);
        check_len(out.len(), at)?;
    }
    Ok(Value::String(out))
}

fn replace(s: &str, from: &str, to: &str, from_at: usize, at: usize) -> Result<Value, ExprError> {
    if from.is_empty() {
        return Err(ExprError::new(from_at, "replace() needs non-empty text to look for"));
    }
    let count = s.matches(from).count();
    check_len((s.len() - count * from.len()).saturating_add(count.saturating_mul(to.len())), at)?;
    Ok(Value::String(s.replace(from, to)))
}

/// A number from a number, a boolean (1 or 0) or text such as `" 42 "`, `-3.5` or `1e6`.
fn to_number(x: &Value, name: &str, at: usize) -> Result<Num, ExprError> {
    match x {
        Value::Bool(b) => Ok(Num::Int(i64::from(*b))),
        Value::String(s) => parse_number(s).ok_or_else(|| {
            let shown: String = s.chars().take(40).collect();
            ExprError::new(at, format!("{name}() cannot read {shown:?} as a number"))
                .hint("write digits, such as 42, -3.5 or 1e6")
        }),
        _ => Ok(Num::of(x)),
    }
}

fn parse_number(s: &str) -> Option<Num> {
    let t = s.trim();
    // Rust also reads "inf" and "NaN", which are not JSON numbers.
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) {
        return None;
    }
    if let Ok(i) = t.parse::<i64>() {
        return Some(Num::Int(i));
    }
    t.parse::<f64>().ok().filter(|f| f.is_finite()).map(Num::Float)
}

/// Rounds half away from zero to `digits` decimals (negative: to tens, hundreds, …). An integer
/// result is an integer when it fits one.
fn round(x: Num, digits: i32) -> Num {
    if let (Num::Int(_), true) = (x, digits >= 0) {
        return x;
    }
    let f = x.to_f64();
    if digits == 0 {
        return Num::whole(f.round());
    }
    let scale = 10f64.powi(digits);
    let r = (f * scale).round() / scale;
    match (r.is_finite(), digits < 0) {
        (false, _) => x,
        (true, true) => Num::whole(r),
        (true, false) => Num::Float(r),
    }
}

fn whole(x: Num, f: fn(f64) -> f64) -> Num {
    match x {
        Num::Int(_) => x,
        Num::Float(v) => Num::whole(f(v)),
    }
}

/// `min`/`max` of several numbers, or of the numbers in one array (null when it is empty).
fn extreme(
    ev: &mut Evaluator,
    spec: &FuncSpec,
    args: &[&Value],
    nodes: &[Node],
    at: usize,
) -> Result<Value, ExprError> {
    let name = spec.name;
    let (items, from_array): (Vec<&Value>, bool) = match args {
        [Value::Array(items)] => (items.iter().collect(), true),
        _ => (args.to_vec(), false),
    };
    ev.charge(items.len(), at)?;
    let mut best: Option<&Value> = None;
    for (i, item) in items.iter().enumerate() {
        if !item.is_number() {
            let (place, where_at) = if from_array {
                (format!("element {i} of the array is"), nodes.first().map_or(at, |n| n.offset))
            } else {
                (format!("argument {} is", i + 1), nodes.get(i).map_or(at, |n| n.offset))
            };
            let err = ExprError::new(
                where_at,
                format!("{name}() compares numbers, but {place} {}", type_of(item).with_article()),
            );
            return Err(if from_array {
                err.hint(format!("pass one array of numbers or several numbers: {name}(a, b)"))
            } else {
                err
            });
        }
        let better = best.is_none_or(|b| {
            let ord = cmp_num(Num::of(item), Num::of(b));
            if spec.id == F::Min { ord.is_lt() } else { ord.is_gt() }
        });
        if better {
            best = Some(item);
        }
    }
    Ok(best.cloned().unwrap_or(Value::Null))
}
