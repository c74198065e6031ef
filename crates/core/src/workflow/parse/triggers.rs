//! The `on:` section: what starts a run, and the typed inputs of a manual start.

use std::collections::BTreeMap;

use serde_json::Value;

use super::exprs::{TRIGGER_ROOTS, Use};
use super::node::{Node, Report, Yaml, one_or_many};
use super::{Catalog, check_event_type, check_variable, known_workflow};
use crate::cron::Zone;
use crate::manifest::{CatchUp, Overlap};
use crate::workflow::{InputDecl, InputType, Trigger, TriggerKind, WorkflowRunStatus};

const TRIGGER_KEYS: &[&str] = TriggerKind::SPELLINGS;
/// The spellings of the statuses a `workflow:` trigger may wait for.
pub(super) fn statuses() -> Vec<&'static str> {
    WorkflowRunStatus::ENDINGS.iter().map(|s| s.as_str()).collect()
}
const INPUT_TYPES: &[&str] = InputType::SPELLINGS;

pub(super) struct Triggers {
    pub(super) list: Vec<Trigger>,
    pub(super) inputs: BTreeMap<String, InputDecl>,
    /// Whether some trigger starts runs with an event (event, webhook, workflow), so `event`
    /// means something outside the triggers' own filters.
    pub(super) gives_event: bool,
    /// The names of the declared inputs, also those whose declaration has a problem.
    pub(super) declared: Vec<String>,
    /// Whether `on` and its inputs could be read at all; if not, nothing is concluded from what
    /// seems missing.
    pub(super) known: bool,
}

pub(super) fn triggers(r: &mut Report<'_>, node: &Node, own: &str, catalog: &dyn Catalog) -> Triggers {
    let mut out =
        Triggers { list: Vec::new(), inputs: BTreeMap::new(), gives_event: false, declared: Vec::new(), known: false };
    let example = "e.g. on: { manual: {} } or on: { event: { type: trading.volatility_spike } }";
    let Some(on) = r.mapping(node, "on", TRIGGER_KEYS, false, example) else {
        return out;
    };
    // A misspelt trigger is reported as such; what it would have brought is not guessed.
    out.known = match &node.yaml {
        Yaml::Map(entries) => entries.iter().all(|(k, _)| k.str().is_some_and(|k| TRIGGER_KEYS.contains(&k))),
        _ => true,
    };
    if matches!(&node.yaml, Yaml::Map(entries) if entries.is_empty()) {
        let hint = format!("give at least one of: {}", TRIGGER_KEYS.join(", "));
        r.at(node.pos, "on", "the workflow has no trigger", Some(hint));
        return out;
    }
    for (key, value) in on.entries() {
        let path = on.path(key);
        match key {
            "event" => {
                out.gives_event = true;
                for (n, p) in many(r, value, &path) {
                    if let Some(t) = event(r, n, &p) {
                        out.list.push(t);
                    }
                }
            }
            "schedule" => {
                // A slot's run sees `event.data.slot` (and the cron and zone).
                out.gives_event = true;
                for (n, p) in many(r, value, &path) {
                    if let Some(t) = schedule(r, n, &p) {
                        out.list.push(t);
                    }
                }
            }
            "webhook" => {
                out.gives_event = true;
                let example = "e.g. webhook: { secret_env: TRADINGVIEW_WEBHOOK_SECRET }";
                if let Some(f) = r.mapping(value, &path, &["secret_env"], false, example)
                    && let Some(n) =
                        r.required(&f, "secret_env", "name the environment variable holding the signing secret")
                    && let Some(name) = r.string(n, &f.path("secret_env"), example)
                    && check_variable(r, n, &f.path("secret_env"), &name)
                {
                    out.list.push(Trigger::Webhook { secret_env: name });
                }
            }
            "manual" => {
                let example = "e.g. manual: { inputs: { symbol: { type: string, required: true } } }";
                let Some(f) = r.mapping(value, &path, &["inputs"], true, example) else {
                    out.known = false;
                    continue;
                };
                if let Some(n) = f.get("inputs") {
                    out.known &= matches!(n.yaml, Yaml::Map(_) | Yaml::Null);
                    out.inputs = inputs(r, n, &f.path("inputs"), &mut out.declared);
                }
                out.list.push(Trigger::Manual);
            }
            _ => {
                out.gives_event = true;
                for (n, p) in many(r, value, &path) {
                    if let Some(t) = workflow(r, n, &p, own, catalog) {
                        out.list.push(t);
                    }
                }
            }
        }
    }
    out
}

/// One trigger or a non-empty list of them.
fn many<'n>(r: &mut Report<'_>, node: &'n Node, path: &str) -> Vec<(&'n Node, String)> {
    if matches!(&node.yaml, Yaml::Seq(items) if items.is_empty()) {
        r.at(node.pos, path, "the list is empty", Some("give one trigger, or remove the key".into()));
    }
    one_or_many(node, path)
}

fn event(r: &mut Report<'_>, node: &Node, path: &str) -> Option<Trigger> {
    let example = "e.g. event: { type: trading.volatility_spike, if: \"event.data.magnitude > 2\" }";
    let f = r.mapping(node, path, &["type", "if"], false, example)?;
    let pattern = r.required(&f, "type", "name the event type: exact, a prefix such as trading.*, or *");
    let pattern = pattern.and_then(|n| {
        let text = r.string(n, &f.path("type"), example)?;
        if let Err((message, hint)) = check_event_type(text.trim(), true) {
            r.at(n.pos, &f.path("type"), message, Some(hint));
            return None;
        }
        Some(text.trim().to_string())
    });
    // The trigger's own event is what `event` means here; it is always there.
    let mut ignored: Vec<Use> = Vec::new();
    let filter = match f.get("if") {
        Some(n) => Some(r.expression(n, &f.path("if"), TRIGGER_ROOTS, &mut ignored)?),
        None => None,
    };
    Some(Trigger::Event { pattern: pattern?, filter })
}

fn schedule(r: &mut Report<'_>, node: &Node, path: &str) -> Option<Trigger> {
    let example = "e.g. schedule: { cron: \"*/15 * * * *\", timezone: Europe/Berlin }";
    let f = r.mapping(node, path, &["cron", "timezone", "catch_up", "overlap"], false, example)?;
    let cron_hint = "five fields: minute hour day-of-month month day-of-week, e.g. \"0 22 * * *\", or @daily";
    let cron = r.required(&f, "cron", cron_hint).and_then(|n| {
        let text = r.string(n, &f.path("cron"), cron_hint)?;
        crate::cron::Cron::parse(&text)
            .map_err(|e| r.at(n.pos, &f.path("cron"), e.to_string(), Some(cron_hint.into())))
            .ok()
    });
    let zone_hint = "use an IANA zone name such as Europe/Berlin or America/Los_Angeles";
    let timezone = match f.get("timezone") {
        Some(n) => r.string(n, &f.path("timezone"), zone_hint).and_then(|tz| match Zone::parse(tz.trim()) {
            Ok(zone) => Some(zone),
            Err(e) => {
                r.at(n.pos, &f.path("timezone"), e, None);
                None
            }
        }),
        None => Some(Zone::utc()),
    };
    let catch_up = match f.get("catch_up") {
        Some(n) => r.choice(n, &f.path("catch_up"), "catch_up", CatchUp::SPELLINGS).and_then(|c| c.parse().ok()),
        None => Some(CatchUp::Latest),
    };
    let overlap = match f.get("overlap") {
        Some(n) => r.choice(n, &f.path("overlap"), "overlap", Overlap::SPELLINGS).and_then(|o| o.parse().ok()),
        None => Some(Overlap::Skip),
    };
    Some(Trigger::Schedule { cron: cron?, timezone: timezone?, catch_up: catch_up?, overlap: overlap? })
}

fn workflow(r: &mut Report<'_>, node: &Node, path: &str, own: &str, catalog: &dyn Catalog) -> Option<Trigger> {
    let example = "e.g. workflow: { name: nightly-backup, status: [failed] }";
    let f = r.mapping(node, path, &["name", "status"], false, example)?;
    let name = r.required(&f, "name", "name the workflow whose runs start this one").and_then(|n| {
        let name = r.string(n, &f.path("name"), example)?;
        known_workflow(r, n, &f.path("name"), name.trim(), own, catalog, "start").then(|| name.trim().to_string())
    });
    let statuses = match f.get("status") {
        Some(n) => {
            let listed = r.names(n, &f.path("status"), "e.g. status: [failed, timed_out]")?;
            if listed.is_empty() {
                let hint = format!("list one or more of: {}", statuses().join(", "));
                r.at(n.pos, &f.path("status"), "the list is empty", Some(hint));
                return None;
            }
            let mut chosen: Vec<WorkflowRunStatus> = Vec::new();
            let mut ok = true;
            for (_, n, p) in listed {
                match r.choice(n, &p, "status", &statuses()).and_then(|s| s.parse().ok()) {
                    Some(known) if !chosen.contains(&known) => chosen.push(known),
                    Some(_) => {}
                    None => ok = false,
                }
            }
            ok.then_some(chosen)?
        }
        None => vec![WorkflowRunStatus::Succeeded],
    };
    Some(Trigger::Workflow { name: name?, statuses })
}

fn inputs(r: &mut Report<'_>, node: &Node, path: &str, declared: &mut Vec<String>) -> BTreeMap<String, InputDecl> {
    let mut out = BTreeMap::new();
    let example = "e.g. inputs: { symbol: { type: string, required: true } }";
    let Yaml::Map(entries) = &node.yaml else {
        if !matches!(node.yaml, Yaml::Null) {
            r.at(node.pos, path, format!("expected a mapping, found {}", node.kind()), Some(example.into()));
        }
        return out;
    };
    for (key, value) in entries {
        let Some(name) = key.scalar_text() else {
            r.at(key.pos, path, "an input name must be a plain name", Some(example.into()));
            continue;
        };
        declared.push(name.clone());
        let input_path = super::node::child_path(path, &name);
        super::check_field_name(r, key, &input_path, &name, "input");
        if let Some(decl) = input(r, value, &input_path) {
            out.insert(name, decl);
        }
    }
    out
}

fn input(r: &mut Report<'_>, node: &Node, path: &str) -> Option<InputDecl> {
    let example = "e.g. { type: string, required: true, description: Ticker symbol }";
    let f = r.mapping(node, path, &["type", "required", "default", "description"], false, example)?;
    let type_hint = format!("one of: {}", INPUT_TYPES.join(", "));
    let kind = r
        .required(&f, "type", &type_hint)
        .and_then(|n| r.choice(n, &f.path("type"), "input type", INPUT_TYPES)?.parse::<InputType>().ok());
    let required = match f.get("required") {
        Some(n) => r.boolean(n, &f.path("required")),
        None => Some(false),
    };
    let description = match f.get("description") {
        Some(n) => r.text(n, &f.path("description")),
        None => Some(String::new()),
    };
    let default = match f.get("default") {
        Some(n) => {
            let value = r.json(n, &f.path("default"))?;
            if let Some(kind) = kind
                && !kind.admits(&value)
            {
                let name = kind.as_str();
                let message = format!("the default is {}, but the input is declared as {name}", json_kind(&value));
                r.at(
                    n.pos,
                    &f.path("default"),
                    message,
                    Some(format!("give a default of type {name}, or change `type`")),
                );
                return None;
            }
            Some(value)
        }
        None => None,
    };
    Some(InputDecl { kind: kind?, required: required?, default, description: description? })
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a number with a fraction",
        Value::Number(_) => "a whole number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
