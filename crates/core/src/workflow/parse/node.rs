//! The YAML tree a workflow file is read into, and the readers that turn its nodes into values
//! while collecting every problem. Each node keeps its position, so validation can go on after a
//! bad field and report all of them, which a typed deserializer stopping at the first cannot.

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use serde_saphyr::Spanned;

use crate::duration::parse_duration;
use crate::manifest::suggest;
use crate::yaml::{self, Pos, SourceError};

/// One YAML node with where it was written.
pub(super) struct Node {
    pub(super) yaml: Yaml,
    pub(super) pos: Pos,
    /// Byte range of the node's own text in the file, when the parser knows it.
    src: Option<Range<usize>>,
}

pub(super) enum Yaml {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    pub(super) fn str(&self) -> Option<&str> {
        match &self.yaml {
            Yaml::Str(s) => Some(s),
            _ => None,
        }
    }

    /// What the node is, for "expected …, found …" messages.
    pub(super) fn kind(&self) -> &'static str {
        match &self.yaml {
            Yaml::Null => "nothing",
            Yaml::Bool(_) => "a boolean",
            Yaml::Int(_) | Yaml::UInt(_) | Yaml::Float(_) => "a number",
            Yaml::Str(_) => "a string",
            Yaml::Seq(_) => "a list",
            Yaml::Map(_) => "a mapping",
        }
    }

    /// A scalar as the text it stands for (`5`, `true`); `None` for lists and mappings.
    pub(super) fn scalar_text(&self) -> Option<String> {
        Some(match &self.yaml {
            Yaml::Null => "null".into(),
            Yaml::Bool(b) => b.to_string(),
            Yaml::Int(i) => i.to_string(),
            Yaml::UInt(u) => u.to_string(),
            Yaml::Float(f) => f.to_string(),
            Yaml::Str(s) => s.clone(),
            Yaml::Seq(_) | Yaml::Map(_) => return None,
        })
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        let spanned = Spanned::<Yaml>::deserialize(d)?;
        let span = spanned.referenced.span();
        let src = span.byte_offset().zip(span.byte_len()).and_then(|(offset, len)| {
            let start = usize::try_from(offset).ok()?;
            Some(start..start.checked_add(usize::try_from(len).ok()?)?)
        });
        Ok(Node { yaml: spanned.value, pos: spanned.referenced.into(), src })
    }
}

impl<'de> Deserialize<'de> for Yaml {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Yaml, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Yaml;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E>(self) -> Result<Yaml, E> {
                Ok(Yaml::Null)
            }
            fn visit_none<E>(self) -> Result<Yaml, E> {
                Ok(Yaml::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Yaml, D::Error> {
                Yaml::deserialize(d)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Yaml, E> {
                Ok(Yaml::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Yaml, E> {
                Ok(Yaml::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Yaml, E> {
                Ok(Yaml::UInt(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Yaml, E> {
                Ok(Yaml::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Yaml, E> {
                Ok(Yaml::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Yaml, E> {
                Ok(Yaml::Str(v))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Yaml, E> {
                Ok(Yaml::Str(String::from_utf8_lossy(v).into_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Yaml, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Node>()? {
                    items.push(item);
                }
                Ok(Yaml::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Yaml, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Node>()? {
                    let value = map.next_value::<Node>()?;
                    entries.push((key, value));
                }
                Ok(Yaml::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// Reads `text` into a tree. Booleans are YAML 1.2's (`true`, `false`): `on`, `yes` and `no`
/// stay strings, so the `on:` key is a key and not `true`.
pub(super) fn read(file: &str, text: &str) -> Result<Node, SourceError> {
    let options = serde_saphyr::options! { strict_booleans: true };
    serde_saphyr::from_str_with_options::<Node>(text, options).map_err(|e| {
        let pos = e.location().map(Pos::from).unwrap_or(Pos { line: 1, column: 1 });
        let (message, hint) = explain(&e.to_string());
        SourceError {
            file: file.to_string(),
            line: pos.line.max(1),
            column: pos.column.max(1),
            path: yaml::path_at(text, pos.line as usize),
            message,
            hint,
        }
    })
}

/// The parser's message without its snippet and position, reworded where the parser speaks of
/// its own options.
fn explain(full: &str) -> (String, Option<String>) {
    let first = full.lines().next().unwrap_or("invalid YAML").trim();
    let mut message = first.strip_prefix("error: ").unwrap_or(first);
    if let Some(rest) = message.strip_prefix("line ")
        && let Some((_, after)) = rest.split_once(": ")
    {
        message = after;
    }
    let message = message.trim_end_matches(|c: char| c == ':' || c.is_whitespace());
    if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
        let key = rest.split(", set DuplicateKeyPolicy").next().unwrap_or(rest);
        return (format!("duplicate key `{key}`"), Some("a key may appear only once in a mapping".into()));
    }
    if message.starts_with("multiple YAML documents") {
        return (
            "the file holds more than one YAML document".into(),
            Some("a workflow file holds one workflow; remove the `---` line or split the file".into()),
        );
    }
    if message.contains("recursion limit") || message.contains("depth") {
        return ("the file nests lists and mappings too deeply".into(), Some("flatten the structure".into()));
    }
    (message.to_string(), Some("check the YAML syntax at this place".into()))
}

/// Collects the problems of one file.
pub(super) struct Report<'a> {
    file: &'a str,
    text: &'a str,
    pub(super) errors: Vec<SourceError>,
}

/// The entries of a mapping that passed the check for unknown keys.
pub(super) struct Fields<'n> {
    pub(super) path: String,
    pub(super) pos: Pos,
    entries: Vec<(String, &'n Node, &'n Node)>,
}

impl<'n> Fields<'n> {
    pub(super) fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries.iter().find(|(k, _, _)| k == key).map(|(_, _, v)| *v)
    }

    /// Where the key itself is written.
    pub(super) fn key_pos(&self, key: &str) -> Pos {
        self.entries.iter().find(|(k, _, _)| k == key).map_or(self.pos, |(_, k, _)| k.pos)
    }

    pub(super) fn path(&self, key: &str) -> String {
        child_path(&self.path, key)
    }

    /// The keys and values in file order.
    pub(super) fn entries(&self) -> impl Iterator<Item = (&str, &'n Node)> {
        self.entries.iter().map(|(k, _, v)| (k.as_str(), *v))
    }
}

/// `parent.key`, or `parent["odd key"]` when the key is not a plain name.
pub(super) fn child_path(parent: &str, key: &str) -> String {
    let plain = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    match (plain, parent.is_empty()) {
        (true, true) => key.to_string(),
        (true, false) => format!("{parent}.{key}"),
        (false, _) => format!("{parent}[{}]", Value::String(key.to_string())),
    }
}

impl<'a> Report<'a> {
    pub(super) fn new(file: &'a str, text: &'a str) -> Report<'a> {
        Report { file, text, errors: Vec::new() }
    }

    pub(super) fn at(&mut self, pos: Pos, path: &str, message: impl Into<String>, hint: Option<String>) {
        self.errors.push(SourceError {
            file: self.file.to_string(),
            line: pos.line.max(1),
            column: pos.column.max(1),
            path: path.to_string(),
            message: message.into(),
            hint,
        });
    }

    /// The position of byte `offset` inside a string node's value: exact when the value is
    /// written on one line without escapes, else the node's own position.
    pub(super) fn pos_in(&self, node: &Node, offset: usize) -> Pos {
        let (Some(value), Some(src)) = (node.str(), node.src.clone()) else {
            return node.pos;
        };
        let Some(written) = self.text.get(src) else {
            return node.pos;
        };
        let (inner, quote) = match written.as_bytes().first() {
            Some(b'"' | b'\'') => (written.get(1..written.len().saturating_sub(1)).unwrap_or_default(), 1),
            _ => (written, 0),
        };
        if inner != value || value.contains('\n') || !value.is_char_boundary(offset.min(value.len())) {
            return node.pos;
        }
        let chars = value[..offset.min(value.len())].chars().count() as u64;
        Pos { line: node.pos.line, column: node.pos.column + quote + chars }
    }

    /// The node as a mapping whose keys are among `known`; every other key is reported. An
    /// empty value counts as an empty mapping when `null_ok`.
    pub(super) fn mapping<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        known: &[&str],
        null_ok: bool,
        example: &str,
    ) -> Option<Fields<'n>> {
        let entries = match &node.yaml {
            Yaml::Map(entries) => entries,
            Yaml::Null if null_ok => {
                return Some(Fields { path: path.to_string(), pos: node.pos, entries: Vec::new() });
            }
            _ => {
                self.at(node.pos, path, format!("expected a mapping, found {}", node.kind()), Some(example.into()));
                return None;
            }
        };
        let mut fields = Fields { path: path.to_string(), pos: node.pos, entries: Vec::new() };
        for (key, value) in entries {
            let Some(name) = key.scalar_text() else {
                self.at(key.pos, path, "a key must be a plain name", Some("write keys as names, e.g. timeout:".into()));
                continue;
            };
            if known.contains(&name.as_str()) {
                fields.entries.push((name, key, value));
                continue;
            }
            let hint = match suggest(&name, known) {
                Some(k) => format!("did you mean `{k}`?"),
                None => format!("remove it; the known fields are: {}", known.join(", ")),
            };
            self.at(key.pos, &child_path(path, &name), format!("unknown field `{name}`"), Some(hint));
        }
        Some(fields)
    }

    /// The value under `key`, or an error at the mapping when it is missing.
    pub(super) fn required<'n>(&mut self, fields: &Fields<'n>, key: &str, hint: &str) -> Option<&'n Node> {
        let found = fields.get(key);
        if found.is_none() {
            self.at(fields.pos, &fields.path, format!("missing field `{key}`"), Some(hint.into()));
        }
        found
    }

    /// A non-empty string.
    pub(super) fn string(&mut self, node: &Node, path: &str, example: &str) -> Option<String> {
        match &node.yaml {
            Yaml::Str(s) if !s.trim().is_empty() => Some(s.clone()),
            Yaml::Str(_) => {
                self.at(node.pos, path, "the value is empty", Some(example.into()));
                None
            }
            _ => {
                self.at(node.pos, path, format!("expected a string, found {}", node.kind()), Some(example.into()));
                None
            }
        }
    }

    /// Any string, empty or not (descriptions).
    pub(super) fn text(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.yaml {
            Yaml::Str(s) => Some(s.clone()),
            Yaml::Null => Some(String::new()),
            _ => {
                let hint = "quote it to make it text".to_string();
                self.at(node.pos, path, format!("expected a string, found {}", node.kind()), Some(hint));
                None
            }
        }
    }

    /// A string, or a list of strings: `needs: a` or `needs: [a, b]`. Each comes with its node.
    pub(super) fn names<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        example: &str,
    ) -> Option<Vec<(String, &'n Node, String)>> {
        let items: Vec<(&Node, String)> = match &node.yaml {
            Yaml::Seq(items) => items.iter().enumerate().map(|(i, n)| (n, format!("{path}[{i}]"))).collect(),
            _ => vec![(node, path.to_string())],
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (n, p) in items {
            match self.string(n, &p, example) {
                Some(s) => out.push((s.trim().to_string(), n, p)),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    pub(super) fn boolean(&mut self, node: &Node, path: &str) -> Option<bool> {
        match &node.yaml {
            Yaml::Bool(b) => Some(*b),
            Yaml::Str(s) if ["yes", "no", "on", "off", "y", "n"].contains(&s.to_ascii_lowercase().as_str()) => {
                let hint = format!("write true or false; {s:?} is text in YAML 1.2");
                self.at(node.pos, path, format!("expected true or false, found {s:?}"), Some(hint));
                None
            }
            _ => {
                self.at(node.pos, path, format!("expected true or false, found {}", node.kind()), None);
                None
            }
        }
    }

    /// A whole number in `range`.
    pub(super) fn integer(
        &mut self,
        node: &Node,
        path: &str,
        range: std::ops::RangeInclusive<i64>,
        hint: &str,
    ) -> Option<u32> {
        let n = match node.yaml {
            Yaml::Int(i) => i,
            Yaml::UInt(u) => i64::try_from(u).unwrap_or(i64::MAX),
            _ => {
                self.at(node.pos, path, format!("expected a whole number, found {}", node.kind()), Some(hint.into()));
                return None;
            }
        };
        if !range.contains(&n) {
            let message = format!("{n} is out of range; allowed are {} to {}", range.start(), range.end());
            self.at(node.pos, path, message, Some(hint.into()));
            return None;
        }
        u32::try_from(n).ok()
    }

    /// A duration such as `30s` or `1h30m`, more than zero.
    pub(super) fn duration(&mut self, node: &Node, path: &str) -> Option<Duration> {
        let hint = Some("write e.g. 30s, 5m or 1h30m".to_string());
        let text = match &node.yaml {
            Yaml::Str(s) => s.clone(),
            Yaml::Int(_) | Yaml::UInt(_) | Yaml::Float(_) => node.scalar_text().unwrap_or_default(),
            _ => {
                self.at(node.pos, path, format!("expected a duration, found {}", node.kind()), hint);
                return None;
            }
        };
        match parse_duration(&text) {
            Ok(d) if d.is_zero() => {
                self.at(node.pos, path, "duration must be more than zero", hint);
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.at(node.pos, path, e, hint);
                None
            }
        }
    }

    /// One of `allowed`.
    pub(super) fn choice(&mut self, node: &Node, path: &str, what: &str, allowed: &[&str]) -> Option<String> {
        let Some(value) = node.str() else {
            let hint = format!("one of: {}", allowed.join(", "));
            self.at(node.pos, path, format!("expected a string, found {}", node.kind()), Some(hint));
            return None;
        };
        if allowed.contains(&value) {
            return Some(value.to_string());
        }
        let hint = match suggest(value, allowed) {
            Some(near) => format!("did you mean {near:?}? one of: {}", allowed.join(", ")),
            None => format!("one of: {}", allowed.join(", ")),
        };
        self.at(node.pos, path, format!("unknown {what} {value:?}"), Some(hint));
        None
    }

    /// The node as JSON. Keys become their text; a list or mapping as a key is reported.
    pub(super) fn json(&mut self, node: &Node, path: &str) -> Option<Value> {
        Some(match &node.yaml {
            Yaml::Null => Value::Null,
            Yaml::Bool(b) => Value::Bool(*b),
            Yaml::Int(i) => Value::from(*i),
            Yaml::UInt(u) => Value::from(*u),
            Yaml::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Yaml::Str(s) => Value::String(s.clone()),
            Yaml::Seq(items) => {
                let mut out = Vec::with_capacity(items.len());
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    match self.json(item, &format!("{path}[{i}]")) {
                        Some(v) => out.push(v),
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                Value::Array(out)
            }
            Yaml::Map(entries) => {
                let mut out = Map::new();
                let mut ok = true;
                for (key, value) in entries {
                    let Some(name) = key.scalar_text() else {
                        self.at(key.pos, path, "a key must be a plain name, not a list or a mapping", None);
                        ok = false;
                        continue;
                    };
                    match self.json(value, &child_path(path, &name)) {
                        Some(v) => {
                            out.insert(name, v);
                        }
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                Value::Object(out)
            }
        })
    }
}

/// The items of a list, or the node itself as a list of one: `schedule: {…}` or `schedule: [{…}, {…}]`.
pub(super) fn one_or_many<'n>(node: &'n Node, path: &str) -> Vec<(&'n Node, String)> {
    match &node.yaml {
        Yaml::Seq(items) => items.iter().enumerate().map(|(i, n)| (n, format!("{path}[{i}]"))).collect(),
        _ => vec![(node, path.to_string())],
    }
}
