//! Workflow expressions and `{{ … }}` templates, which workflow files and event filters carry:
//! parsing, checking and evaluating any text ends in a value or an error that points inside
//! the text, within the language's bounds (libFuzzer's timeout and memory limit catch a hang or
//! a blow-up), and a template without `{{` renders to itself.
#![no_main]

use std::sync::OnceLock;

use agent_os_core::expr::{Expr, ExprError, Template};
use agent_os_fuzz::text;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

const ROOTS: &[&str] = &["event", "inputs", "steps", "item"];

fn context() -> &'static Value {
    static CONTEXT: OnceLock<Value> = OnceLock::new();
    CONTEXT.get_or_init(|| {
        json!({
            "event": {"type": "trading.volatility_spike", "data": {"symbols": ["BTC", "ETH"], "magnitude": 3.5, "n": 7, "note": null}},
            "inputs": {"threshold": 2.0, "symbols": ["BTC", "ETH", "SOL"], "dry": false, "name": "ünï"},
            "steps": {"scan": {"status": "succeeded", "outputs": {"spikes": ["BTC"], "max_magnitude": 4.25, "count": 1}}},
            "item": {"id": 3, "tags": ["a", "b"], "nested": {"deep": [1, 2.5, "x", true, null, {}]}}
        })
    })
}

fn check_error(src: &str, e: &ExprError) {
    assert!(e.offset <= src.len(), "offset {} past the end ({} bytes): {e}", e.offset, src.len());
    assert!(!e.message.is_empty());
    let _ = e.annotate(src);
    let _ = e.to_string();
}

fuzz_target!(|data: &[u8]| {
    let Some(src) = text(data) else { return };
    match Expr::parse(src) {
        Err(e) => check_error(src, &e),
        Ok(expr) => {
            for p in expr.paths() {
                assert!(p.offset < src.len() && src[p.offset..].starts_with(&p.root), "path {p:?} not at its root");
            }
            for e in expr.check(ROOTS) {
                check_error(src, &e);
            }
            if let Err(e) = expr.eval(context()) {
                check_error(src, &e);
            }
        }
    }
    match Template::parse(src) {
        Err(e) => check_error(src, &e),
        Ok(t) => {
            for e in t.check(ROOTS) {
                check_error(src, &e);
            }
            match t.render(context()) {
                Ok(v) if t.is_plain() => assert_eq!(v, Value::String(src.to_string())),
                Ok(_) => {}
                Err(e) => check_error(src, &e),
            }
        }
    }
});
