//! The expression language of workflows: `if:` conditions, `{{ … }}` templates in step inputs
//! and event filters. An expression reads only the JSON context it is given (`event`, `steps`,
//! `inputs`, `item`, …) and computes a JSON value; it cannot reach files, the environment,
//! processes, the clock or randomness, and it cannot define functions or loop. Its source, its
//! nesting, the strings and arrays it builds and the work it does are all bounded (the `MAX_*`
//! constants), so a hostile expression yields an [`ExprError`], never a hang or a crash.
//!
//! Semantics in brief (docs/expressions.md is the reference users read):
//! - A path that does not lead anywhere (a missing field, an index past the end, a field of a
//!   number) is `null`, so `event.data.x == null` works on any event. Only an unknown *root*
//!   name is an error, because it is almost always a typo.
//! - Numbers follow JSON: integers stay integers while they fit in an `i64`, anything else is a
//!   64-bit float; `1 == 1.0`; `7 / 2` is `3.5` but `6 / 3` is `2`.
//! - Operators never convert types behind the user's back: `"3" < 4` is an error that says so.
//!
//! Parsing lives in `parse`, evaluation in `eval` and `func`, checks without a context in
//! `check`. This file holds the public API.

mod check;
mod eval;
mod func;
mod lex;
mod parse;
#[cfg(test)]
mod tests;

use std::fmt;

use serde_json::Value;

/// Longest expression source, in bytes.
pub const MAX_SOURCE: usize = 4096;
/// Deepest nesting of an expression: brackets, calls and operators each add a level.
pub const MAX_DEPTH: usize = 64;
/// Longest string an expression may build (1 MiB), in bytes; also the longest template.
pub const MAX_STRING: usize = 1 << 20;
/// Most elements in an array an expression builds.
pub const MAX_ELEMENTS: usize = 100_000;
/// Units of work one evaluation may do: one per expression node visited plus one per array
/// element or object entry an operator or function walks through.
pub const MAX_STEPS: u64 = 1_000_000;

/// Why an expression or template could not be parsed, checked or evaluated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExprError {
    /// What was expected and what was found, or which types did not fit.
    pub message: String,
    /// Byte offset of the fault within the text that was parsed (the whole template text for a
    /// template).
    pub offset: usize,
    /// How to fix it, when there is something to say: "did you mean 'len'?".
    pub hint: Option<String>,
    /// Where the failing string sits inside a JSON value given to [`render_value`] or
    /// [`check_value`], as `messages[0].content`; empty otherwise.
    pub field: String,
}

impl ExprError {
    fn new(offset: usize, message: impl Into<String>) -> ExprError {
        ExprError { message: message.into(), offset, hint: None, field: String::new() }
    }

    fn hint(mut self, hint: impl Into<String>) -> ExprError {
        self.hint = Some(hint.into());
        self
    }

    fn in_field(mut self, field: &str) -> ExprError {
        self.field = field.to_string();
        self
    }

    /// The line of `source` holding the fault, a caret under it and the message: what a
    /// terminal shows a user. `source` is the text that was parsed.
    pub fn annotate(&self, source: &str) -> String {
        let at = floor_char_boundary(source, self.offset);
        let line_start = source[..at].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[at..].find('\n').map_or(source.len(), |i| at + i);
        let column = source[line_start..at].chars().count();
        let mut out = format!("{}\n{}^ {}", &source[line_start..line_end], " ".repeat(column), self.message);
        if let Some(hint) = &self.hint {
            out.push_str(&format!("\n{}  {hint}", " ".repeat(column)));
        }
        out
    }
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.field.is_empty() {
            write!(f, "{}, ", self.field)?;
        }
        write!(f, "offset {}: {}", self.offset, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ExprError {}

/// A path an expression reads, for validators: `steps.recall.outputs.count` gives root
/// `steps` and fields `["recall", "outputs", "count"]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathRef {
    /// The context name the path starts from.
    pub root: String,
    /// The field names that follow the root (`.name` or `["name"]`), up to the first index that
    /// is a number or is computed: `steps[id].x` gives no fields at all.
    pub fields: Vec<String>,
    /// Byte offset of the root name.
    pub offset: usize,
}

/// A parsed expression.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    node: parse::Node,
}

impl Expr {
    /// Parses an expression. Unknown functions and wrong numbers of arguments are errors here
    /// already; unknown names are not, since only the context knows them (see [`Expr::check`]).
    pub fn parse(src: &str) -> Result<Expr, ExprError> {
        parse::parse_expression(src).map(|node| Expr { node })
    }

    /// Evaluates the expression against a context object whose keys are the root names.
    pub fn eval(&self, ctx: &Value) -> Result<Value, ExprError> {
        self.eval_with_budget(ctx, MAX_STEPS)
    }

    fn eval_with_budget(&self, ctx: &Value, budget: u64) -> Result<Value, ExprError> {
        eval::Evaluator::new(ctx, budget).eval(&self.node).map(std::borrow::Cow::into_owned)
    }

    /// Evaluates the expression as an `if:` condition: see [`truthy`].
    pub fn is_true(&self, ctx: &Value) -> Result<bool, ExprError> {
        self.eval(ctx).map(|v| truthy(&v))
    }

    /// Every path the expression reads, in source order.
    pub fn paths(&self) -> Vec<PathRef> {
        let mut out = Vec::new();
        check::paths(&self.node, &mut out);
        out.sort_by_key(|p| p.offset);
        out
    }

    /// What can be found wrong without a context: names outside `known_roots` (with a "did you
    /// mean"), operators and functions given types they never accept (`len(x) < "a"`), and
    /// parts made only of literals that fail (`1 / 0`, `number("abc")`), even in a branch a
    /// condition might skip. An empty list does not promise evaluation succeeds.
    pub fn check(&self, known_roots: &[&str]) -> Vec<ExprError> {
        check::check(&self.node, known_roots)
    }
}

/// Whether a value counts as true in an `if:`: `false`, `null`, `0`, `""`, `[]` and `{}` are
/// false, everything else is true.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Text with `{{ expression }}` parts, as in a step's `with:` values.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Text(String),
    Expr(Expr),
}

impl Template {
    /// Parses a template. Offsets in errors count from the start of `text`. A `{{` without its
    /// `}}` is an error; a `}}` without `{{` is plain text. A literal `{{` is written
    /// `{{ "{{" }}`.
    pub fn parse(text: &str) -> Result<Template, ExprError> {
        if text.len() > MAX_STRING {
            return Err(ExprError::new(0, format!("the template is {} bytes long; the limit is 1 MiB", text.len())));
        }
        let mut parts = Vec::new();
        let mut pos = 0;
        while let Some(found) = text[pos..].find("{{") {
            let open = pos + found;
            if open > pos {
                parts.push(Part::Text(text[pos..open].to_string()));
            }
            let (node, end) = parse::parse_embedded(text, open)?;
            parts.push(Part::Expr(Expr { node }));
            pos = end;
        }
        if pos < text.len() {
            parts.push(Part::Text(text[pos..].to_string()));
        }
        Ok(Template { parts })
    }

    /// True when the text holds no `{{ … }}` at all.
    pub fn is_plain(&self) -> bool {
        !self.parts.iter().any(|p| matches!(p, Part::Expr(_)))
    }

    /// The expression when the text is exactly one `{{ … }}`, give or take surrounding
    /// whitespace (YAML block scalars end in a newline).
    fn single(&self) -> Option<&Expr> {
        let mut exprs = self.exprs();
        let only = exprs.next()?;
        let blank = |p: &Part| match p {
            Part::Text(t) => t.trim().is_empty(),
            Part::Expr(_) => true,
        };
        (exprs.next().is_none() && self.parts.iter().all(blank)).then_some(only)
    }

    /// Renders the template. A text that is exactly one `{{ expr }}` gives the expression's
    /// value with its JSON type (a list stays a list); otherwise the parts are joined into a
    /// string, strings inserted as they are, `null` as nothing and other values as compact JSON.
    pub fn render(&self, ctx: &Value) -> Result<Value, ExprError> {
        if let Some(expr) = self.single() {
            return expr.eval(ctx);
        }
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Expr(e) => {
                    let at = e.node.offset;
                    out.push_str(&eval::to_text(&e.eval(ctx)?, at)?);
                    eval::check_len(out.len(), at)?;
                }
            }
        }
        Ok(Value::String(out))
    }

    /// Every path the template's expressions read, in text order.
    pub fn paths(&self) -> Vec<PathRef> {
        self.exprs().flat_map(Expr::paths).collect()
    }

    /// [`Expr::check`] over each expression of the template.
    pub fn check(&self, known_roots: &[&str]) -> Vec<ExprError> {
        self.exprs().flat_map(|e| e.check(known_roots)).collect()
    }

    fn exprs(&self) -> impl Iterator<Item = &Expr> {
        self.parts.iter().filter_map(|p| match p {
            Part::Expr(e) => Some(e),
            Part::Text(_) => None,
        })
    }
}

/// Renders every string inside a JSON value as a [`Template`] (object keys stay as they are):
/// a step's `with:` mapping becomes the step's inputs. Errors name the field that failed.
pub fn render_value(v: &Value, ctx: &Value) -> Result<Value, ExprError> {
    render_at(v, ctx, "")
}

fn render_at(v: &Value, ctx: &Value, field: &str) -> Result<Value, ExprError> {
    Ok(match v {
        Value::String(s) if s.contains("{{") => {
            Template::parse(s).and_then(|t| t.render(ctx)).map_err(|e| e.in_field(field))?
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, x)| render_at(x, ctx, &format!("{field}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, x)| Ok((k.clone(), render_at(x, ctx, &child_field(field, k))?)))
                .collect::<Result<_, ExprError>>()?,
        ),
        other => other.clone(),
    })
}

/// [`Template::parse`] and [`Template::check`] over every string inside a JSON value, without
/// a context: what a validator reports for a step's `with:` before anything runs.
pub fn check_value(v: &Value, known_roots: &[&str]) -> Vec<ExprError> {
    let mut errors = Vec::new();
    check_at(v, known_roots, "", &mut errors);
    errors
}

fn check_at(v: &Value, known_roots: &[&str], field: &str, errors: &mut Vec<ExprError>) {
    match v {
        Value::String(s) if s.contains("{{") => match Template::parse(s) {
            Ok(t) => errors.extend(t.check(known_roots).into_iter().map(|e| e.in_field(field))),
            Err(e) => errors.push(e.in_field(field)),
        },
        Value::Array(items) => {
            for (i, x) in items.iter().enumerate() {
                check_at(x, known_roots, &format!("{field}[{i}]"), errors);
            }
        }
        Value::Object(map) => {
            for (k, x) in map {
                check_at(x, known_roots, &child_field(field, k), errors);
            }
        }
        _ => {}
    }
}

/// `parent.key`, or `parent["odd key"]` when the key is not a plain name.
fn child_field(parent: &str, key: &str) -> String {
    let plain = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    match (plain, parent.is_empty()) {
        (true, true) => key.to_string(),
        (true, false) => format!("{parent}.{key}"),
        (false, _) => format!("{parent}[{}]", Value::String(key.to_string())),
    }
}

/// The error for a root name the context does not have, suggesting a near one.
fn unknown_name(name: &str, known: &[&str], offset: usize) -> ExprError {
    let err = ExprError::new(offset, format!("unknown name '{name}'"));
    if let Some(near) = suggest(name, known.iter().copied()) {
        return err.hint(format!("did you mean '{near}'?"));
    }
    if func::lookup(name).is_some() {
        return err.hint(format!("'{name}' is a function; call it as {name}(...)"));
    }
    let mut names: Vec<&str> = known.to_vec();
    names.sort_unstable();
    if names.is_empty() {
        err.hint("no names are available here")
    } else {
        err.hint(format!("the names available here are {}", names.join(", ")))
    }
}

/// The candidate closest to `word` when it is close enough to be a likely misspelling:
/// case and `_` are ignored (so `startsWith` finds `starts_with`), then at most one edit for
/// short words and two for longer ones, a swap of neighbours counting as one.
fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let norm = |s: &str| -> Vec<char> { s.chars().filter(|c| *c != '_').flat_map(char::to_lowercase).collect() };
    let w = norm(word);
    let limit = if w.len() <= 3 { 1 } else { 2 };
    candidates
        .into_iter()
        .map(|c| (edit_distance(&w, &norm(c)), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal string alignment distance: insertions, deletions, substitutions and swaps of
/// neighbouring characters each cost one.
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (rows[i - 1][j] + 1).min(rows[i][j - 1] + 1).min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = d;
        }
    }
    rows[a.len()][b.len()]
}

/// The largest char boundary at or before `i`, so an offset from a caller never splits a
/// character when slicing.
fn floor_char_boundary(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}
