//! One entry of `steps:`: its id, what it needs, its condition, its fan-out and its one action.
//! What depends on the other steps (needs that exist, cycles, outputs read too early) is
//! checked afterwards, in `graph`.

use crate::alerting::Severity;
use std::time::Duration;

use serde_json::{Map, Value};

use super::exprs::{ITEM_ROOTS, STEP_ROOTS, Use};
use super::node::{Fields, Node, Report, Yaml};
use super::{Catalog, check_event_type, check_field_name, check_name, known_workflow};
use crate::manifest::suggest;
use crate::workflow::{
    Action, ActionKind, Approval, Backoff, Decision, ForEach, FormField, FormType, Retry, Step, Wait,
};
use crate::yaml::Pos;

const STEP_KEYS: &[&str] = &[
    "id",
    "needs",
    "if",
    "for_each",
    "run",
    "with",
    "emit",
    "wait",
    "workflow",
    "notify",
    "approval",
    "timeout",
    "retry",
    "continue_on_error",
];
pub(super) const ACTIONS: &[&str] = ActionKind::SPELLINGS;
/// Most attempts a step may have, counting the first.
pub(super) const MAX_ATTEMPTS: i64 = 20;
pub(super) const DEFAULT_MAX_PARALLEL: u32 = 10;
pub(super) const MAX_PARALLEL: i64 = 100;

/// A step as read, with what the whole-workflow checks need.
pub(super) struct Draft {
    pub(super) path: String,
    /// The id as written (even when it breaks the naming rules), with its place.
    pub(super) id: Option<(String, Pos)>,
    pub(super) needs: Vec<Need>,
    /// Where `needs` is written, for errors about cycles.
    pub(super) needs_at: Pos,
    /// Whether `needs` had a problem of its own (then no "add it to needs" advice follows).
    pub(super) needs_bad: bool,
    pub(super) uses: Vec<Use>,
    pub(super) step: Step,
}

pub(super) struct Need {
    pub(super) name: String,
    pub(super) pos: Pos,
    pub(super) path: String,
}

/// Reads one step. Whatever fails is reported and replaced by a placeholder: the workflow is
/// only returned when nothing was reported.
pub(super) fn step(r: &mut Report<'_>, node: &Node, path: &str, own: &str, catalog: &dyn Catalog) -> Option<Draft> {
    let example = "e.g. - { id: recall, run: cortana.query_memories, with: { query: BTC } }";
    let f = r.mapping(node, path, STEP_KEYS, false, example)?;
    let id = r.required(&f, "id", "give the step an id, e.g. id: recall").and_then(|n| {
        let id = r.string(n, &f.path("id"), "e.g. id: recall")?.trim().to_string();
        check_name(r, n, &f.path("id"), &id, "step id");
        Some((id, n.pos))
    });
    let mut draft = Draft {
        path: path.to_string(),
        id,
        needs: Vec::new(),
        needs_at: f.key_pos("needs"),
        needs_bad: false,
        uses: Vec::new(),
        step: Step {
            id: String::new(),
            needs: Vec::new(),
            condition: None,
            action: Action::Wait(Wait::Duration(Duration::ZERO)),
            timeout: None,
            retry: Retry::default(),
            continue_on_error: false,
            for_each: None,
        },
    };
    draft.step.id = draft.id.as_ref().map(|(id, _)| id.clone()).unwrap_or_default();

    if let Some(n) = f.get("needs") {
        match r.names(n, &f.path("needs"), "e.g. needs: [recall] or needs: recall") {
            Some(names) => {
                for (name, node, path) in names {
                    if !draft.needs.iter().any(|x| x.name == name) {
                        draft.needs.push(Need { name, pos: node.pos, path });
                    }
                }
            }
            None => draft.needs_bad = true,
        }
    }
    draft.step.needs = draft.needs.iter().map(|n| n.name.clone()).collect();
    if let Some(n) = f.get("if") {
        draft.step.condition = r.expression(n, &f.path("if"), STEP_ROOTS, &mut draft.uses);
    }
    if let Some(n) = f.get("for_each") {
        draft.step.for_each = for_each(r, n, &f.path("for_each"), &mut draft.uses);
    }
    if let Some(n) = f.get("timeout") {
        draft.step.timeout = r.duration(n, &f.path("timeout"));
    }
    if let Some(n) = f.get("retry") {
        draft.step.retry = retry(r, n, &f.path("retry")).unwrap_or_default();
    }
    if let Some(n) = f.get("continue_on_error") {
        draft.step.continue_on_error = r.boolean(n, &f.path("continue_on_error")).unwrap_or(false);
    }

    let roots = if f.get("for_each").is_some() { ITEM_ROOTS } else { STEP_ROOTS };
    let present: Vec<&str> = ACTIONS.iter().copied().filter(|a| f.get(a).is_some()).collect();
    match present.as_slice() {
        [] => {
            let hint = format!("give it one of: {}", ACTIONS.join(", "));
            r.at(f.pos, path, "the step has no action", Some(hint));
        }
        [_] => {}
        [_, second, ..] => {
            let named: Vec<String> = present.iter().map(|a| format!("`{a}`")).collect();
            r.at(
                f.key_pos(second),
                path,
                format!("a step has one action; this one has {}", named.join(" and ")),
                Some("split it into steps; the later one lists the earlier one under needs".into()),
            );
        }
    }
    if let Some(with) = f.get("with")
        && let Some(action) = present.first().filter(|a| **a != "run")
    {
        let hint = match *action {
            "emit" => "an event's data goes in emit: { type: …, data: {…} }",
            "workflow" => "a called workflow's inputs go in workflow: { name: …, inputs: {…} }",
            _ => "remove it",
        };
        r.at(with.pos, &f.path("with"), "`with` is the input of a `run` step", Some(hint.into()));
    }
    let mut actions = Vec::new();
    for key in &present {
        let n = f.get(key).unwrap_or(node);
        let p = f.path(key);
        let uses = &mut draft.uses;
        actions.push(match *key {
            "run" => run(r, n, &p, &f, roots, uses, catalog),
            "emit" => emit(r, n, &p, roots, uses),
            "wait" => wait(r, n, &p, roots, uses),
            "workflow" => call(r, n, &p, own, catalog, roots, uses),
            "approval" => approval(r, n, &p, &f, roots, uses),
            _ => notify(r, n, &p, roots, uses),
        });
    }
    if let Some(Some(action)) = actions.into_iter().next() {
        draft.step.action = action;
    }
    Some(draft)
}

fn for_each(r: &mut Report<'_>, node: &Node, path: &str, uses: &mut Vec<Use>) -> Option<ForEach> {
    match &node.yaml {
        Yaml::Map(_) => {
            let example = "e.g. for_each: { items: event.data.symbols, max_parallel: 4 }";
            let f = r.mapping(node, path, &["items", "max_parallel"], false, example)?;
            let items = r.required(&f, "items", "give the expression of the list, e.g. items: event.data.symbols");
            let items = items.and_then(|n| r.expression(n, &f.path("items"), STEP_ROOTS, uses));
            let max_parallel = match f.get("max_parallel") {
                Some(n) => r.integer(n, &f.path("max_parallel"), 1..=MAX_PARALLEL, "how many items run at once")?,
                None => DEFAULT_MAX_PARALLEL,
            };
            Some(ForEach { items: items?, max_parallel })
        }
        Yaml::Str(_) => {
            let items = r.expression(node, path, STEP_ROOTS, uses)?;
            Some(ForEach { items, max_parallel: DEFAULT_MAX_PARALLEL })
        }
        _ => {
            let message = format!("expected an expression or {{ items, max_parallel }}, found {}", node.kind());
            let hint = "an expression giving a list, e.g. for_each: event.data.symbols, or for a fixed list \
                        for_each: '[\"BTC\", \"ETH\"]'";
            r.at(node.pos, path, message, Some(hint.into()));
            None
        }
    }
}

fn retry(r: &mut Report<'_>, node: &Node, path: &str) -> Option<Retry> {
    let example = "e.g. retry: { attempts: 3, backoff: exponential, delay: 5s }";
    let f = r.mapping(node, path, &["attempts", "backoff", "delay"], false, example)?;
    let attempts = r.required(&f, "attempts", "how often the step is tried in all, e.g. attempts: 3");
    let attempts = attempts.and_then(|n| {
        r.integer(n, &f.path("attempts"), 1..=MAX_ATTEMPTS, "attempts count the first one: 1 means no retry")
    });
    let backoff = match f.get("backoff") {
        Some(n) => match r.choice(n, &f.path("backoff"), "backoff", &["fixed", "exponential"])?.as_str() {
            "fixed" => Some(Backoff::Fixed),
            _ => Some(Backoff::Exponential),
        },
        None => Some(Backoff::Fixed),
    };
    let delay = match f.get("delay") {
        Some(n) => r.duration(n, &f.path("delay")),
        None => Some(Retry::default().delay),
    };
    Some(Retry { attempts: attempts?, backoff: backoff?, delay: delay? })
}

fn run(
    r: &mut Report<'_>,
    node: &Node,
    path: &str,
    step: &Fields<'_>,
    roots: &[&str],
    uses: &mut Vec<Use>,
    catalog: &dyn Catalog,
) -> Option<Action> {
    let example = "e.g. run: cortana.query_memories";
    let with = match step.get("with") {
        Some(n) if matches!(n.yaml, Yaml::Map(_) | Yaml::Null) => r.templated(n, &step.path("with"), roots, uses),
        Some(n) => {
            let message = format!("expected a mapping, found {}", n.kind());
            r.at(
                n.pos,
                &step.path("with"),
                message,
                Some("the task's input is a JSON object: with: { query: … }".into()),
            );
            None
        }
        None => Some(Value::Object(Map::new())),
    };
    let with = with.map(|v| if v.is_null() { Value::Object(Map::new()) } else { v });
    let text = r.string(node, path, example)?;
    let text = text.trim();
    let Some((project, task)) = text.split_once('.').filter(|(p, t)| !p.is_empty() && !t.is_empty()) else {
        r.at(node.pos, path, format!("`run` names a task as PROJECT.TASK, got {text:?}"), Some(example.into()));
        return None;
    };
    let Some(tasks) = catalog.tasks(project) else {
        let projects = catalog.projects();
        let known: Vec<&str> = projects.iter().map(String::as_str).collect();
        let hint = match suggest(project, &known) {
            Some(near) => format!("did you mean {near:?}?"),
            None if known.is_empty() => "no projects are registered; register the project first".into(),
            None => format!("the registered projects are: {}", known.join(", ")),
        };
        r.at(node.pos, path, format!("unknown project {project:?}"), Some(hint));
        return None;
    };
    if !tasks.iter().any(|t| t == task) {
        let known: Vec<&str> = tasks.iter().map(String::as_str).collect();
        let hint = match suggest(task, &known) {
            Some(near) => format!("did you mean {near:?}?"),
            None if known.is_empty() => format!("project {project:?} declares no tasks"),
            None => format!("its tasks are: {}", known.join(", ")),
        };
        let lead = node.str().map_or(0, |v| v.len() - v.trim_start().len());
        let at = r.pos_in(node, lead + project.len() + 1);
        r.at(at, path, format!("project {project:?} has no task {task:?}"), Some(hint));
        return None;
    }
    Some(Action::Run { project: project.to_string(), task: task.to_string(), with: with? })
}

fn emit(r: &mut Report<'_>, node: &Node, path: &str, roots: &[&str], uses: &mut Vec<Use>) -> Option<Action> {
    let example = "e.g. emit: { type: agent-os.summary_ready, data: { text: \"…\" } }";
    let f = r.mapping(node, path, &["type", "data"], false, example)?;
    let event_type = r.required(&f, "type", "name the event's type, e.g. type: agent-os.summary_ready");
    let event_type = event_type.and_then(|n| {
        let text = r.string(n, &f.path("type"), example)?;
        if let Err((message, hint)) = check_event_type(text.trim(), false) {
            r.at(n.pos, &f.path("type"), message, Some(hint));
            return None;
        }
        Some(text.trim().to_string())
    });
    let data = match f.get("data") {
        Some(n) => r.templated(n, &f.path("data"), roots, uses),
        None => Some(Value::Object(Map::new())),
    };
    Some(Action::Emit { event_type: event_type?, data: data? })
}

fn wait(r: &mut Report<'_>, node: &Node, path: &str, roots: &[&str], uses: &mut Vec<Use>) -> Option<Action> {
    let example = "e.g. wait: 10m, or wait: { event: { type: approval.given }, timeout: 1h }";
    if !matches!(node.yaml, Yaml::Map(_)) {
        if matches!(node.yaml, Yaml::Seq(_) | Yaml::Null | Yaml::Bool(_)) {
            let message = format!("expected a duration or an event to wait for, found {}", node.kind());
            r.at(node.pos, path, message, Some(example.into()));
            return None;
        }
        return r.duration(node, path).map(|d| Action::Wait(Wait::Duration(d)));
    }
    let f = r.mapping(node, path, &["event", "timeout"], false, example)?;
    let timeout = match f.get("timeout") {
        Some(n) => Some(r.duration(n, &f.path("timeout"))?),
        None => None,
    };
    let event = r.required(&f, "event", "for a fixed pause write wait: 10m")?;
    let event_path = f.path("event");
    let example = "e.g. event: { type: approval.given, if: \"event.data.run == inputs.run\" }";
    let e = r.mapping(event, &event_path, &["type", "if"], false, example)?;
    let pattern = r.required(&e, "type", "name the event type: exact, a prefix such as trading.*, or *");
    let pattern = pattern.and_then(|n| {
        let text = r.string(n, &e.path("type"), example)?;
        if let Err((message, hint)) = check_event_type(text.trim(), true) {
            r.at(n.pos, &e.path("type"), message, Some(hint));
            return None;
        }
        Some(text.trim().to_string())
    });
    let filter = match e.get("if") {
        Some(n) => {
            // Here `event` is the event waited for, always there: only the other names are kept.
            let mut read = Vec::new();
            let filter = r.expression(n, &e.path("if"), roots, &mut read);
            uses.extend(read.into_iter().filter(|u| u.root != "event"));
            Some(filter?)
        }
        None => None,
    };
    Some(Action::Wait(Wait::Event { pattern: pattern?, filter, timeout }))
}

fn call(
    r: &mut Report<'_>,
    node: &Node,
    path: &str,
    own: &str,
    catalog: &dyn Catalog,
    roots: &[&str],
    uses: &mut Vec<Use>,
) -> Option<Action> {
    let example = "e.g. workflow: nightly-backup, or workflow: { name: nightly-backup, inputs: { keep: 5 } }";
    let (name_node, name_path, inputs) = match &node.yaml {
        Yaml::Map(_) => {
            let f = r.mapping(node, path, &["name", "inputs"], false, example)?;
            let inputs = match f.get("inputs") {
                Some(n) if matches!(n.yaml, Yaml::Map(_)) => r.templated(n, &f.path("inputs"), roots, uses),
                Some(n) => {
                    let message = format!("expected a mapping, found {}", n.kind());
                    r.at(n.pos, &f.path("inputs"), message, Some("inputs are named: inputs: { keep: 5 }".into()));
                    None
                }
                None => Some(Value::Object(Map::new())),
            };
            (r.required(&f, "name", "name the workflow to run")?, f.path("name"), inputs)
        }
        _ => (node, path.to_string(), Some(Value::Object(Map::new()))),
    };
    let name = r.string(name_node, &name_path, example)?;
    let name = name.trim();
    if !known_workflow(r, name_node, &name_path, name, own, catalog, "call") {
        return None;
    }
    Some(Action::Workflow { name: name.to_string(), inputs: inputs? })
}

fn notify(r: &mut Report<'_>, node: &Node, path: &str, roots: &[&str], uses: &mut Vec<Use>) -> Option<Action> {
    let example = "e.g. notify: { title: \"Spike on {{ event.data.symbol }}\", severity: warning }";
    let f = r.mapping(node, path, &["title", "body", "severity", "tags"], false, example)?;
    let title = r.required(&f, "title", "give the notification a title").and_then(|n| {
        r.template(n, &f.path("title"), roots, uses)?;
        r.string(n, &f.path("title"), example)
    });
    let body = match f.get("body") {
        Some(n) => r.template(n, &f.path("body"), roots, uses).and_then(|_| n.str().map(str::to_string)),
        None => Some(String::new()),
    };
    let severity = match f.get("severity") {
        Some(n) => r.choice(n, &f.path("severity"), "severity", Severity::SPELLINGS).and_then(|s| s.parse().ok()),
        None => Some(Severity::Info),
    };
    let tags = match f.get("tags") {
        Some(n) => {
            let listed = r.names(n, &f.path("tags"), "e.g. tags: [trading, eth]");
            listed.and_then(|listed| {
                let mut tags = Vec::new();
                let mut ok = true;
                for (tag, n, p) in listed {
                    if tag.contains("{{") {
                        let hint = "tags are plain words; put the changing part in the title or the body";
                        r.at(n.pos, &p, "a tag is not a template", Some(hint.into()));
                        ok = false;
                    } else if !tags.contains(&tag) {
                        tags.push(tag);
                    }
                }
                ok.then_some(tags)
            })
        }
        None => Some(Vec::new()),
    };
    Some(Action::Notify { title: title?, body: body?, severity: severity?, tags: tags? })
}

/// The step keys an approval step does not take, and why.
const NOT_WITH_APPROVAL: &[(&str, &str)] = &[
    ("for_each", "an approval asks one question; put the list in its message"),
    ("retry", "a rejection is a person's answer, not a failure to try again"),
    ("timeout", "give the wait its limit as approval: { timeout: 24h, on_timeout: reject }"),
];

fn approval(
    r: &mut Report<'_>,
    node: &Node,
    path: &str,
    step: &Fields<'_>,
    roots: &[&str],
    uses: &mut Vec<Use>,
) -> Option<Action> {
    let example = "e.g. approval: { message: \"Deploy {{ inputs.version }}?\", timeout: 24h, on_timeout: reject }";
    let mut ok = true;
    for (key, why) in NOT_WITH_APPROVAL {
        if step.get(key).is_some() {
            r.at(step.key_pos(key), &step.path(key), format!("an approval step takes no `{key}`"), Some((*why).into()));
            ok = false;
        }
    }
    let keys = ["message", "timeout", "on_timeout", "inputs", "notify"];
    let f = r.mapping(node, path, &keys, false, example)?;
    let message = r.required(&f, "message", "say what the person decides, e.g. message: Deploy to production?");
    let message = message.and_then(|n| {
        r.template(n, &f.path("message"), roots, uses)?;
        r.string(n, &f.path("message"), example)
    });
    let timeout = match f.get("timeout") {
        Some(n) => Some(r.duration(n, &f.path("timeout"))?),
        None => None,
    };
    let on_timeout = match f.get("on_timeout") {
        Some(n) => match r.choice(n, &f.path("on_timeout"), "on_timeout", &["approve", "reject"])?.as_str() {
            "approve" => Some(Decision::Approved),
            _ => Some(Decision::Rejected),
        },
        None => Some(Decision::Rejected),
    };
    if f.get("on_timeout").is_some() && f.get("timeout").is_none() {
        let hint = "add timeout: 24h (or remove on_timeout)";
        r.at(
            f.key_pos("on_timeout"),
            &f.path("on_timeout"),
            "on_timeout without a timeout never applies",
            Some(hint.into()),
        );
        ok = false;
    }
    let inputs = match f.get("inputs") {
        Some(n) => form(r, n, &f.path("inputs")),
        None => Some(Default::default()),
    };
    let (severity, tags) = match f.get("notify") {
        Some(n) => {
            let example = "e.g. notify: { severity: warning, tags: [deploy] }";
            let nf = r.mapping(n, &f.path("notify"), &["severity", "tags"], false, example)?;
            let severity = match nf.get("severity") {
                Some(n) => {
                    r.choice(n, &nf.path("severity"), "severity", Severity::SPELLINGS).and_then(|s| s.parse().ok())
                }
                None => Some(Severity::Warning),
            };
            let tags = match nf.get("tags") {
                Some(n) => r
                    .names(n, &nf.path("tags"), "e.g. tags: [deploy]")
                    .map(|l| l.into_iter().map(|(t, _, _)| t).collect::<Vec<_>>()),
                None => Some(Vec::new()),
            };
            (severity, tags)
        }
        None => (Some(Severity::Warning), Some(Vec::new())),
    };
    if !ok {
        return None;
    }
    Some(Action::Approval(Approval {
        message: message?,
        timeout,
        on_timeout: on_timeout?,
        inputs: inputs?,
        severity: severity?,
        tags: tags?,
    }))
}

/// The typed form of an approval: `NAME: { type, required, default, options, description }`.
fn form(r: &mut Report<'_>, node: &Node, path: &str) -> Option<std::collections::BTreeMap<String, FormField>> {
    let example = "e.g. inputs: { reason: { type: string, required: true } }";
    let Yaml::Map(entries) = &node.yaml else {
        r.at(node.pos, path, format!("expected a mapping, found {}", node.kind()), Some(example.into()));
        return None;
    };
    let mut out = std::collections::BTreeMap::new();
    let mut ok = true;
    for (key, value) in entries {
        let Some(name) = key.scalar_text() else {
            r.at(key.pos, path, "a field name must be a plain name", Some(example.into()));
            ok = false;
            continue;
        };
        let field_path = super::node::child_path(path, &name);
        ok &= check_field_name(r, key, &field_path, &name, "form field");
        match form_field(r, value, &field_path) {
            Some(field) => {
                out.insert(name, field);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn form_field(r: &mut Report<'_>, node: &Node, path: &str) -> Option<FormField> {
    let example = "e.g. { type: choice, options: [fast, safe], default: safe }";
    let keys = ["type", "required", "default", "options", "description"];
    let f = r.mapping(node, path, &keys, false, example)?;
    let type_hint = format!("one of: {}", FormType::SPELLINGS.join(", "));
    let kind = r
        .required(&f, "type", &type_hint)
        .and_then(|n| r.choice(n, &f.path("type"), "form field type", FormType::SPELLINGS)?.parse::<FormType>().ok())?;
    let required = match f.get("required") {
        Some(n) => r.boolean(n, &f.path("required"))?,
        None => false,
    };
    let description = match f.get("description") {
        Some(n) => r.text(n, &f.path("description"))?,
        None => String::new(),
    };
    let options = match (f.get("options"), kind) {
        (Some(n), FormType::Choice) => {
            let listed = r.names(n, &f.path("options"), "e.g. options: [fast, safe]")?;
            let options: Vec<String> = listed.into_iter().map(|(o, _, _)| o).collect();
            if options.is_empty() {
                r.at(
                    n.pos,
                    &f.path("options"),
                    "a choice needs at least one option",
                    Some("e.g. options: [fast, safe]".into()),
                );
                return None;
            }
            options
        }
        (None, FormType::Choice) => {
            r.at(f.pos, path, "a choice field needs its options", Some("e.g. options: [fast, safe]".into()));
            return None;
        }
        (Some(n), _) => {
            r.at(
                n.pos,
                &f.path("options"),
                "only a choice field has options",
                Some("use type: choice, or remove options".into()),
            );
            return None;
        }
        (None, _) => Vec::new(),
    };
    let mut field = FormField { kind, required, default: None, options, description };
    if let Some(n) = f.get("default") {
        let value = r.json(n, &f.path("default"))?;
        // The default is read by the same rule as an answer, so it is one the form would take.
        let probe = Approval {
            message: String::new(),
            timeout: None,
            on_timeout: Decision::Rejected,
            inputs: [("default".to_string(), field.clone())].into(),
            severity: Severity::Info,
            tags: Vec::new(),
        };
        match probe.check_answers(&serde_json::json!({ "default": value }), false) {
            Ok(v) => field.default = v.get("default").cloned(),
            Err(e) => {
                let message = e.message.replacen("default must be", "the default must be", 1);
                r.at(n.pos, &f.path("default"), message, Some("give a default the field's type accepts".into()));
                return None;
            }
        }
    }
    Some(field)
}
