//! Cost records as projects send them (API push or cost probe), validated into store records.
//! Amounts are decimal strings parsed exactly; a JSON number is accepted by its literal text.
//! A record with a model and tokens but no amount is priced from the price table; a model with
//! no price is stored with its tokens as unpriced, never as free.

use serde::Deserialize;
use serde_json::Value;

use agent_os_core::cost::{CostSource, check_currency, parse_amount};
use agent_os_core::price::{PRICE_CURRENCY, Price, PriceTable, format_price};
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
    /// A decimal string; without it, the model's tokens are priced by Agent OS.
    #[serde(default)]
    pub amount: Option<Value>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub tokens_in: Option<i64>,
    #[serde(default)]
    pub tokens_out: Option<i64>,
    /// Of `tokens_in`, those read from the provider's cache (priced at the cached rate).
    #[serde(default)]
    pub tokens_cached_in: Option<i64>,
    #[serde(default)]
    pub model: Option<String>,
    /// The run the cost belongs to: a run of the same project (checked by the engine).
    #[serde(default)]
    pub run_id: Option<String>,
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
    pub prices: &'a PriceTable,
}

/// The price a record was priced with, as stored with it and shown in the API.
pub fn price_json(p: &Price) -> String {
    serde_json::json!({
        "model": p.model,
        "input": format_price(p.input),
        "cached_input": format_price(p.cached_input),
        "output": format_price(p.output),
        "per": "1M tokens",
        "currency": PRICE_CURRENCY,
        "source": p.origin(),
    })
    .to_string()
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
    for (field, v) in
        [("tokens_in", input.tokens_in), ("tokens_out", input.tokens_out), ("tokens_cached_in", input.tokens_cached_in)]
    {
        if v.is_some_and(|t| t < 0) {
            return Err(err(field, "must not be negative".into()));
        }
    }
    if let Some(cached) = input.tokens_cached_in
        && cached > input.tokens_in.unwrap_or(0)
    {
        return Err(err("tokens_cached_in", "is part of tokens_in, so at most tokens_in".into()));
    }
    let model = text_field(&format!("{prefix}model"), &input.model, 128)?;
    let (amount_nanos, price, unpriced) = match &input.amount {
        Some(Value::String(s)) => (parse_amount(s).map_err(|m| err("amount", m))?, None, false),
        Some(Value::Number(n)) => (parse_amount(&n.to_string()).map_err(|m| err("amount", m))?, None, false),
        None | Some(Value::Null) => {
            let Some(model) = model.as_deref().filter(|_| input.tokens_in.is_some() || input.tokens_out.is_some())
            else {
                return Err(err(
                    "amount",
                    "give an amount (a decimal string such as \"0.0123\"), or a model with tokens_in and tokens_out for Agent OS to price".into(),
                ));
            };
            if input.currency.as_deref().is_some_and(|c| c != PRICE_CURRENCY) {
                return Err(err(
                    "currency",
                    format!("tokens are priced in {PRICE_CURRENCY}; give an amount to report another currency"),
                ));
            }
            match ctx.prices.lookup(model) {
                Some(p) => {
                    let tokens = (
                        input.tokens_in.unwrap_or(0),
                        input.tokens_out.unwrap_or(0),
                        input.tokens_cached_in.unwrap_or(0),
                    );
                    (
                        p.amount(tokens.0, tokens.1, tokens.2).map_err(|m| err("tokens_in", m))?,
                        Some(price_json(p)),
                        false,
                    )
                }
                None => (0, None, true),
            }
        }
        Some(_) => return Err(err("amount", "must be a decimal string such as \"0.0123\"".into())),
    };
    let currency = input.currency.clone().unwrap_or_else(|| "USD".into());
    check_currency(&currency).map_err(|m| err("currency", m))?;
    let run_id = match &input.run_id {
        Some(r) if r.is_empty() || r.len() > 64 => return Err(err("run_id", "a run id of 1 to 64 characters".into())),
        Some(r) => Some(r.clone()),
        None => ctx.run_id.map(str::to_string),
    };
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
        run_id,
        service: service.to_string(),
        key_name: text_field(&format!("{prefix}key_name"), &input.key_name, 128)?,
        amount_nanos,
        currency,
        tokens_in: input.tokens_in,
        tokens_out: input.tokens_out,
        tokens_cached_in: input.tokens_cached_in,
        model,
        at,
        idempotency_key,
        source: ctx.source,
        metadata,
        created_at: ctx.now,
        price,
        unpriced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    static PRICES: std::sync::LazyLock<PriceTable> = std::sync::LazyLock::new(PriceTable::built_in);

    fn ctx() -> CostContext<'static> {
        CostContext {
            project_id: "p1",
            project: "trading",
            run_id: Some("r1"),
            source: CostSource::Api,
            now: 1_700_000_000_000,
            prices: &PRICES,
        }
    }

    #[test]
    fn prices_tokens_without_an_amount_and_keeps_an_unknown_model_unpriced() {
        let c = validate(
            &input(serde_json::json!({"service":"openai","model":"gpt-4o-mini-2024-07-18","tokens_in":1000,"tokens_cached_in":400,"tokens_out":500})),
            "",
            &ctx(),
        )
        .unwrap();
        assert_eq!(c.amount_nanos, 90_000 + 30_000 + 300_000);
        assert!(!c.unpriced);
        let price: Value = serde_json::from_str(c.price.as_deref().unwrap()).unwrap();
        assert_eq!(price["model"], "gpt-4o-mini");
        assert_eq!(price["input"], "0.15");
        assert!(price["source"].as_str().unwrap().starts_with("built-in "));
        let u = validate(&input(serde_json::json!({"service":"acme","model":"acme-1","tokens_in":10})), "", &ctx())
            .unwrap();
        assert!(u.unpriced);
        assert_eq!((u.amount_nanos, u.price.as_deref(), u.tokens_in), (0, None, Some(10)));
        // An amount given is kept as given, even for a model with a price.
        let g = validate(
            &input(serde_json::json!({"service":"openai","model":"gpt-4o","tokens_in":10,"amount":"1.5"})),
            "",
            &ctx(),
        )
        .unwrap();
        assert_eq!((g.amount_nanos, g.price.as_deref(), g.unpriced), (1_500_000_000, None, false));
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
            (serde_json::json!({"service":"openai"}), "records[2].amount"),
            (serde_json::json!({"service":"openai","model":"gpt-4o"}), "records[2].amount"),
            (serde_json::json!({"service":"openai","tokens_in":5}), "records[2].amount"),
            (
                serde_json::json!({"service":"openai","model":"gpt-4o","tokens_in":5,"currency":"EUR"}),
                "records[2].currency",
            ),
            (
                serde_json::json!({"service":"openai","model":"gpt-4o","tokens_in":5,"tokens_cached_in":6}),
                "records[2].tokens_cached_in",
            ),
            (
                serde_json::json!({"service":"openai","model":"gpt-4o","tokens_in":9_000_000_000_000_000i64,"tokens_out":9_000_000_000_000_000i64}),
                "records[2].tokens_in",
            ),
            (serde_json::json!({"service":"openai","amount":"1","run_id":""}), "records[2].run_id"),
        ];
        for (v, field) in cases {
            let e = validate(&input(v.clone()), "records[2].", &ctx()).unwrap_err();
            assert_eq!(e.field, field, "{v}: {e:?}");
        }
    }
}
