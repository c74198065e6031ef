//! The `approval` step: a step that waits for a person to approve or reject it, with an
//! optional typed form whose answers become the step's outputs. This module holds the plan of
//! the step and the one rule that reads a decision's form answers ([`Approval::check_answers`]);
//! the engine records and acts on decisions.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::alerting::Severity;
use crate::text::text_enum;

/// Most characters a decision's comment may have.
pub const MAX_COMMENT: usize = 2000;
/// Most characters a text answer of a form may have.
pub const MAX_ANSWER: usize = 2000;

text_enum! {
    /// What a person (or the timeout) decided about an approval step.
    pub enum Decision("decision") {
        Approved = "approved",
        Rejected = "rejected",
    }
}

text_enum! {
    /// The type of one field of an approval's form.
    pub enum FormType("form field type") {
        String = "string",
        Number = "number",
        Integer = "integer",
        Boolean = "boolean",
        /// One of the field's `options`.
        Choice = "choice",
    }
}

/// One field of an approval's form.
#[derive(Clone, Debug, PartialEq)]
pub struct FormField {
    pub kind: FormType,
    pub required: bool,
    pub default: Option<Value>,
    /// The allowed values of a `choice` field (empty for the other types).
    pub options: Vec<String>,
    pub description: String,
}

/// A step that waits for a person.
#[derive(Clone, Debug, PartialEq)]
pub struct Approval {
    /// What the person is asked (a template, rendered when the step starts waiting).
    pub message: String,
    /// How long it waits; none: until the run's own timeout.
    pub timeout: Option<Duration>,
    /// What the timeout decides.
    pub on_timeout: Decision,
    /// The form filled in with the decision, by field name.
    pub inputs: BTreeMap<String, FormField>,
    /// The notification sent when it starts waiting.
    pub severity: Severity,
    pub tags: Vec<String>,
}

/// A form answer refused: the field (`inputs.NAME`, or `inputs`) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnswerError {
    pub field: String,
    pub message: String,
}

impl Approval {
    /// Reads the answers given with a decision against the form: unknown fields, a wrong type
    /// and (when `approving`) a missing required field are refused; defaults are filled in.
    /// Forms and the command line send text, so a number, integer or boolean field also takes
    /// a string that reads as one (`"3"`, `"true"`); an empty string counts as not given.
    pub fn check_answers(&self, given: &Value, approving: bool) -> Result<Value, AnswerError> {
        let err = |field: String, message: String| AnswerError { field, message };
        let given = match given {
            Value::Null => Map::new(),
            Value::Object(m) => m.clone(),
            _ => return Err(err("inputs".into(), "inputs must be a JSON object of field: value".into())),
        };
        if let Some(k) = given.keys().find(|k| !self.inputs.contains_key(*k)) {
            let known: Vec<&str> = self.inputs.keys().map(String::as_str).collect();
            let message = if known.is_empty() {
                format!("this approval has no form; remove {k:?}")
            } else {
                format!("the form has no field {k:?}; its fields are {}", known.join(", "))
            };
            return Err(err(format!("inputs.{k}"), message));
        }
        let mut out = Map::new();
        for (name, field) in &self.inputs {
            let value = given.get(name).filter(|v| !matches!(v, Value::Null) && v.as_str() != Some(""));
            let Some(value) = value else {
                if let Some(d) = &field.default {
                    out.insert(name.clone(), d.clone());
                } else if field.required && approving {
                    return Err(err(format!("inputs.{name}"), format!("{name} is required; fill it in")));
                }
                continue;
            };
            let read = read_answer(field, value)
                .map_err(|why| err(format!("inputs.{name}"), format!("{name} must be {why}")))?;
            out.insert(name.clone(), read);
        }
        Ok(Value::Object(out))
    }
}

/// One answer as its field's type, or what it must be.
fn read_answer(field: &FormField, value: &Value) -> Result<Value, String> {
    let text = value.as_str().map(str::trim);
    match field.kind {
        FormType::String => match value {
            Value::String(s) if s.chars().count() <= MAX_ANSWER => Ok(value.clone()),
            Value::String(_) => Err(format!("at most {MAX_ANSWER} characters")),
            _ => Err("a string".into()),
        },
        FormType::Number => match (value, text) {
            (Value::Number(_), _) => Ok(value.clone()),
            (_, Some(t)) => t
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .and_then(serde_json::Number::from_f64)
                .map(|n| {
                    // "3" stays an integer, "2.5" a float.
                    t.parse::<i64>().map_or(Value::Number(n), Value::from)
                })
                .ok_or_else(|| "a number, e.g. 2.5".into()),
            _ => Err("a number, e.g. 2.5".into()),
        },
        FormType::Integer => match (value, text) {
            (Value::Number(n), _) if n.is_i64() || n.is_u64() => Ok(value.clone()),
            (_, Some(t)) => t.parse::<i64>().map(Value::from).map_err(|_| "a whole number, e.g. 3".into()),
            _ => Err("a whole number, e.g. 3".into()),
        },
        FormType::Boolean => match (value, text) {
            (Value::Bool(_), _) => Ok(value.clone()),
            (_, Some("true" | "on" | "yes")) => Ok(Value::Bool(true)),
            (_, Some("false" | "off" | "no")) => Ok(Value::Bool(false)),
            _ => Err("true or false".into()),
        },
        FormType::Choice => match text {
            Some(t) if field.options.iter().any(|o| o == t) => Ok(Value::String(t.to_string())),
            _ => Err(format!("one of: {}", field.options.join(", "))),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn form() -> Approval {
        let field = |kind, required, default: Option<Value>, options: &[&str]| FormField {
            kind,
            required,
            default,
            options: options.iter().map(|o| o.to_string()).collect(),
            description: String::new(),
        };
        let mut inputs = BTreeMap::new();
        inputs.insert("reason".into(), field(FormType::String, true, None, &[]));
        inputs.insert("size".into(), field(FormType::Number, false, None, &[]));
        inputs.insert("count".into(), field(FormType::Integer, false, None, &[]));
        inputs.insert("force".into(), field(FormType::Boolean, false, None, &[]));
        inputs.insert("mode".into(), field(FormType::Choice, false, Some(json!("safe")), &["fast", "safe"]));
        Approval {
            message: "Go?".into(),
            timeout: None,
            on_timeout: Decision::Rejected,
            inputs,
            severity: Severity::Warning,
            tags: Vec::new(),
        }
    }

    #[test]
    fn answers_are_read_as_their_types_and_defaults_fill_in() {
        let got = form().check_answers(&json!({"reason": "ok", "size": "2.5", "count": "3", "force": "on"}), true);
        assert_eq!(got.unwrap(), json!({"reason": "ok", "size": 2.5, "count": 3, "force": true, "mode": "safe"}));
        let typed = form().check_answers(&json!({"reason": "ok", "size": 4, "mode": "fast"}), true).unwrap();
        assert_eq!(typed, json!({"reason": "ok", "size": 4, "mode": "fast"}));
    }

    #[test]
    fn a_wrong_answer_names_its_field() {
        let cases = [
            (json!({"size": 1}), "inputs.reason", "required"),
            (json!({"reason": "x", "size": "big"}), "inputs.size", "a number"),
            (json!({"reason": "x", "count": "1.5"}), "inputs.count", "whole number"),
            (json!({"reason": "x", "force": "maybe"}), "inputs.force", "true or false"),
            (json!({"reason": "x", "mode": "slow"}), "inputs.mode", "one of: fast, safe"),
            (json!({"reason": 5}), "inputs.reason", "a string"),
            (json!({"reason": "x", "colour": "red"}), "inputs.colour", "no field"),
            (json!([1]), "inputs", "JSON object"),
        ];
        for (given, field, says) in cases {
            let e = form().check_answers(&given, true).unwrap_err();
            assert_eq!(e.field, field, "{given}");
            assert!(e.message.contains(says), "{given}: {}", e.message);
        }
    }

    #[test]
    fn a_rejection_needs_no_required_field() {
        assert_eq!(form().check_answers(&json!({}), false).unwrap(), json!({"mode": "safe"}));
    }
}
