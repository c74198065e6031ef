//! Cost records as projects send them (API push or cost probe), validated into store records.
//! Amounts are decimal strings parsed exactly; a JSON number is accepted by its literal text.

use serde::Deserialize;
use serde_json::Value;

use agent_os_core::cost::{CostSource, check_currency, parse_amount};
use agent_os_store::NewCost;

/// One cost record as received.
/// Unknown fields are kept in `extra`: a cost probe's answer may carry fields a later protocol
/// version adds (and they are ignored), while the API refuses them to catch typos.
#[derive(Clone, Debug, Deserialize)]
pub struct CostInput {
    /// Optional; must name the project the token acts for.
    #[serde(default)]
    pub project: Option<String>,
    pub service: String,
    #[serde(default)]
    pub key_name: Option<String>,
    pub amount: Value,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub tokens_in: Option<i64>,
    #[serde(default)]
    pub tokens_out: Option<i64>,
    #[serde(default)]
    pub model: Option<String>,
    /// RFC 3339; defaults to now.
    #[serde(default)]
    pub at: Option<String>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub metadata: Option<Value>,
    #[serde(flatten)]
    pub extra: std::collections::BTreeMap<String, Value>,
}

/// A field that is wrong, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Where a validated record belongs.
pub struct CostContext<'a> {
    pub project_id: &'a str,
    pub project: &'a str,
    pub run_id: Option<&'a str>,
    pub source: CostSource,
    pub now: i64,
}

fn text_field(field: &str, value: &Option<String>, max: usize) -> Result<Option<String>, FieldError> {
    match value {
        Some(v) if v.len() > max => {
            Err(FieldError { field: field.into(), message: format!("longer than {max} characters") })
        }
        Some(v) if v.trim().is_empty() => Ok(None),
        Some(v) => Ok(Some(v.trim().to_string())),
        None => Ok(None),
    }
}

/// Validates one record; `prefix` is its place in a batch (`records[3].`) for error fields.
pub fn validate(input: &CostInput, prefix: &str, ctx: &CostContext<'_>) -> Result<NewCost, FieldError> {
    let err = |field: &str, message: String| FieldError { field: format!("{prefix}{field}"), message };
    if let Some(p) = &input.project
        && p != ctx.project
    {
        return Err(err("project", format!("this token reports for project {:?}, not {p:?}", ctx.project)));
    }
    let service = input.service.trim();
    if service.is_empty() || service.len() > 64 {
        return Err(err("service", "name the provider in 1 to 64 characters, e.g. \"openai\"".into()));
    }
    let amount_text = match &input.amount {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(err("amount", "must be a decimal string such as \"0.0123\"".into())),
    };
    let amount_nanos = parse_amount(&amount_text).map_err(|m| err("amount", m))?;
    let currency = input.currency.clone().unwrap_or_else(|| "USD".into());
    check_currency(&currency).map_err(|m| err("currency", m))?;
    for (field, v) in [("tokens_in", input.tokens_in), ("tokens_out", input.tokens_out)] {
        if v.is_some_and(|t| t < 0) {
            return Err(err(field, "must not be negative".into()));
        }
    }
    let at = match &input.at {
        None => ctx.now,
        Some(text) => {
            let ts: jiff::Timestamp = text
                .parse()
                .map_err(|_| err("at", format!("{text:?} is not an RFC 3339 time such as 2026-11-25T10:00:00Z")))?;
            ts.as_millisecond()
        }
    };
    if at < 0 {
        return Err(err("at", "is before 1970-01-01T00:00:00Z".into()));
    }
    if at > ctx.now + 86_400_000 {
        return Err(err("at", "is more than a day in the future".into()));
    }
    let metadata = match &input.metadata {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => {
            let text = v.to_string();
            if text.len() > 4096 {
                return Err(err("metadata", "larger than 4096 bytes".into()));
            }
            Some(text)
        }
        Some(_) => return Err(err("metadata", "must be a JSON object".into())),
    };
    let id = agent_os_core::id::new_id();
    let idempotency_key =
        text_field(&format!("{prefix}idempotency_key"), &input.idempotency_key, 200)?.unwrap_or_else(|| id.clone());
    Ok(NewCost {
        id,
        project_id: ctx.project_id.to_string(),
        project: ctx.project.to_string(),
        run_id: ctx.run_id.map(str::to_string),
        service: service.to_string(),
        key_name: text_field(&format!("{prefix}key_name"), &input.key_name, 128)?,
        amount_nanos,
        currency,
        tokens_in: input.tokens_in,
        tokens_out: input.tokens_out,
        model: text_field(&format!("{prefix}model"), &input.model, 128)?,
        at,
        idempotency_key,
        source: ctx.source,
        metadata,
        created_at: ctx.now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> CostContext<'static> {
        CostContext {
            project_id: "p1",
            project: "trading",
            run_id: Some("r1"),
            source: CostSource::Api,
            now: 1_700_000_000_000,
        }
    }

    fn input(v: Value) -> CostInput {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn accepts_a_full_record() {
        let c = validate(&input(serde_json::json!({"service":"openai","key_name":"trading-openai","amount":"0.0123","tokens_in":10,"at":"2023-11-14T22:13:20Z","idempotency_key":"k"})), "", &ctx()).unwrap();
        assert_eq!(c.amount_nanos, 12_300_000);
        assert_eq!(c.currency, "USD");
        assert_eq!(c.at, 1_700_000_000_000);
        assert_eq!(c.run_id.as_deref(), Some("r1"));
    }

    #[test]
    fn names_the_bad_field() {
        let cases = [
            (serde_json::json!({"service":"openai","amount":"-1"}), "records[2].amount"),
            (serde_json::json!({"service":"openai","amount":true}), "records[2].amount"),
            (serde_json::json!({"service":"","amount":"1"}), "records[2].service"),
            (serde_json::json!({"service":"openai","amount":"1","currency":"usd"}), "records[2].currency"),
            (serde_json::json!({"service":"openai","amount":"1","at":"yesterday"}), "records[2].at"),
            (serde_json::json!({"service":"openai","amount":"1","project":"cortana"}), "records[2].project"),
            (serde_json::json!({"service":"openai","amount":"1","metadata":[1]}), "records[2].metadata"),
            (serde_json::json!({"service":"openai","amount":"1","tokens_out":-5}), "records[2].tokens_out"),
        ];
        for (v, field) in cases {
            let e = validate(&input(v.clone()), "records[2].", &ctx()).unwrap_err();
            assert_eq!(e.field, field, "{v}: {e:?}");
        }
    }
}
