//! Reading a workflow file into a validated `Workflow`.
//!
//! The file is read into a YAML tree that keeps every node's position (`node`), then each part
//! is validated where it stands (`triggers`, `steps`, expressions in `exprs`) and finally the
//! whole (`graph`: ids, needs, cycles, what each expression may read). Every problem is
//! collected, so one pass over a broken file reports all of them; docs/workflows.md is the
//! user's reference for the format.

mod exprs;
mod graph;
mod node;
mod steps;
mod triggers;

use std::collections::BTreeMap;

use self::exprs::{CONCURRENCY_ROOTS, STEP_ROOTS, Use};
use self::node::{Node, Report, Yaml};
use super::{Concurrency, OnLimit, Workflow};
use crate::expr::Template;
use crate::manifest::{ManifestError, suggest};

/// What validation checks names against: the registered projects with their tasks, and the
/// known workflows.
pub trait Catalog {
    /// The project's task names, or `None` when no such project is registered.
    fn tasks(&self, project: &str) -> Option<Vec<String>>;
    fn projects(&self) -> Vec<String>;
    fn workflows(&self) -> Vec<String>;
}

const TOP_KEYS: &[&str] = &["name", "description", "on", "concurrency", "timeout", "steps", "outputs"];
const ON_LIMIT: &[&str] = &["queue", "skip", "cancel_running"];
/// Most runs one concurrency key may have at once.
const MAX_LIMIT: i64 = 1000;

/// Parses and validates a workflow file; every problem is reported with file:line:column, the
/// field path and a hint.
pub fn parse(file: &str, text: &str, catalog: &dyn Catalog) -> Result<Workflow, ManifestError> {
    let root = node::read(file, text).map_err(|e| ManifestError(vec![e]))?;
    let mut r = Report::new(file, text);
    let workflow = validate(&mut r, &root, catalog);
    let mut errors = r.errors;
    errors.sort_by_key(|e| (e.line, e.column));
    errors.dedup();
    if errors.is_empty() { Ok(workflow) } else { Err(ManifestError(errors)) }
}

fn validate(r: &mut Report<'_>, root: &Node, catalog: &dyn Catalog) -> Workflow {
    let mut workflow = Workflow {
        name: String::new(),
        description: String::new(),
        triggers: Vec::new(),
        inputs: BTreeMap::new(),
        concurrency: None,
        timeout: None,
        steps: Vec::new(),
        outputs: BTreeMap::new(),
    };
    if matches!(root.yaml, Yaml::Null) {
        let hint = "a workflow needs name:, on: and steps:; docs/workflows.md shows a complete file";
        r.at(root.pos, "", "the workflow file is empty", Some(hint.into()));
        return workflow;
    }
    let Some(top) = r.mapping(root, "", TOP_KEYS, false, "a workflow file is a mapping with name:, on: and steps:")
    else {
        return workflow;
    };

    let example = "e.g. name: volatility-to-memories";
    if let Some(n) = r.required(&top, "name", example)
        && let Some(name) = r.string(n, "name", example)
    {
        workflow.name = name.trim().to_string();
        if check_name(r, n, "name", &workflow.name, "workflow name") && RESERVED_NAMES.contains(&workflow.name.as_str())
        {
            let message = format!(
                "{:?} is reserved: the API uses /workflows/{} for something else",
                workflow.name, workflow.name
            );
            r.at(n.pos, "name", message, Some("choose another name".into()));
        }
    }
    if let Some(n) = top.get("description") {
        workflow.description = r.text(n, "description").unwrap_or_default();
    }

    let hint = "a workflow starts from at least one trigger: event, schedule, webhook, manual or workflow";
    let on = r.required(&top, "on", hint).map(|n| triggers::triggers(r, n, &workflow.name, catalog));
    if let Some(on) = &on {
        workflow.triggers.clone_from(&on.list);
        workflow.inputs.clone_from(&on.inputs);
    }

    let mut uses: Vec<Use> = Vec::new();
    if let Some(n) = top.get("concurrency") {
        workflow.concurrency = concurrency(r, n, &mut uses);
    }
    if let Some(n) = top.get("timeout") {
        workflow.timeout = r.duration(n, "timeout");
    }

    let mut drafts = Vec::new();
    let example = "e.g. steps: [{ id: recall, run: cortana.query_memories }]";
    if let Some(n) = r.required(&top, "steps", "a workflow does at least one thing; add steps:") {
        match &n.yaml {
            Yaml::Seq(items) if items.is_empty() => {
                r.at(n.pos, "steps", "the workflow has no steps", Some(example.into()));
            }
            Yaml::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    drafts.extend(steps::step(r, item, &format!("steps[{i}]"), &workflow.name, catalog));
                }
            }
            _ => r.at(n.pos, "steps", format!("expected a list of steps, found {}", n.kind()), Some(example.into())),
        }
    }

    let mut output_uses = Vec::new();
    if let Some(n) = top.get("outputs") {
        workflow.outputs = outputs(r, n, &mut output_uses);
    }

    let graph = graph::Graph::new(r, &mut drafts);
    graph.check_step_reads(r, &drafts);
    graph.check_output_reads(r, &output_uses);
    if let Some(on) = &on
        && on.known
    {
        let all = || uses.iter().chain(&output_uses).chain(drafts.iter().flat_map(|d| &d.uses));
        if !on.gives_event {
            graph::check_event_reads(r, all());
        }
        graph::check_input_reads(r, &on.declared, all());
    }
    workflow.steps = drafts.into_iter().map(|d| d.step).collect();
    workflow
}

fn concurrency(r: &mut Report<'_>, node: &Node, uses: &mut Vec<Use>) -> Option<Concurrency> {
    let example = "e.g. concurrency: { key: \"{{ event.data.symbol }}\", limit: 1, on_limit: queue }";
    let f = r.mapping(node, "concurrency", &["key", "limit", "on_limit"], false, example)?;
    let key = match f.get("key") {
        Some(n) => r.template(n, "concurrency.key", CONCURRENCY_ROOTS, uses),
        None => Template::parse("").ok(),
    };
    let limit = match f.get("limit") {
        Some(n) => r.integer(n, "concurrency.limit", 1..=MAX_LIMIT, "how many runs with the same key may go at once"),
        None => Some(1),
    };
    let on_limit = match f.get("on_limit") {
        Some(n) => match r.choice(n, "concurrency.on_limit", "on_limit", ON_LIMIT)?.as_str() {
            "queue" => Some(OnLimit::Queue),
            "skip" => Some(OnLimit::Skip),
            _ => Some(OnLimit::CancelRunning),
        },
        None => Some(OnLimit::Queue),
    };
    Some(Concurrency { key: key?, limit: limit?, on_limit: on_limit? })
}

fn outputs(r: &mut Report<'_>, node: &Node, uses: &mut Vec<Use>) -> BTreeMap<String, Template> {
    let mut out = BTreeMap::new();
    let Yaml::Map(entries) = &node.yaml else {
        let hint = "e.g. outputs: { summary: \"{{ steps.summarize.outputs.text }}\" }";
        r.at(node.pos, "outputs", format!("expected a mapping, found {}", node.kind()), Some(hint.into()));
        return out;
    };
    for (key, value) in entries {
        let Some(name) = key.scalar_text() else {
            r.at(key.pos, "outputs", "an output name must be a plain name", None);
            continue;
        };
        let path = node::child_path("outputs", &name);
        check_field_name(r, key, &path, &name, "output");
        if let Some(t) = r.template(value, &path, STEP_ROOTS, uses) {
            out.insert(name, t);
        }
    }
    out
}

/// Workflow names and step ids follow the rules of task names.
/// Names the API's paths under `/workflows/` take for themselves.
const RESERVED_NAMES: [&str; 3] = ["runs", "reload", "validate"];

fn check_name(r: &mut Report<'_>, node: &Node, path: &str, name: &str, what: &str) -> bool {
    match crate::name::check_task_name(name) {
        Ok(()) => true,
        Err(e) => {
            let message = e.split("; ").next().unwrap_or(&e).replace("task name", what);
            let hint = "use lower-case letters, digits, '-' and '_', starting with a letter or a digit (at most 63)";
            r.at(node.pos, path, message, Some(hint.into()));
            false
        }
    }
}

/// Input and output names are read as `inputs.<name>` and `steps.<id>.outputs.<name>`.
fn check_field_name(r: &mut Report<'_>, node: &Node, path: &str, name: &str, what: &str) -> bool {
    let ok = name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        let hint = "use letters, digits and '_', starting with a letter (at most 63), e.g. symbol or max_items";
        r.at(node.pos, path, format!("{what} name {name:?} is not a plain name"), Some(hint.into()));
    }
    ok
}

/// An environment variable *name*, never a value.
fn check_variable(r: &mut Report<'_>, node: &Node, path: &str, name: &str) -> bool {
    let ok = name.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        let hint = "give the name of the variable that holds the secret in Agent OS's environment, e.g. \
                    TRADINGVIEW_WEBHOOK_SECRET; never the secret itself";
        // The value may well be the secret itself: it is not repeated in the message.
        r.at(
            node.pos,
            path,
            "`secret_env` takes the name of an environment variable, and this is not one",
            Some(hint.into()),
        );
    }
    ok
}

/// An event type (`trading.volatility_spike`: lower-case parts joined by dots, at least two) or,
/// with `pattern`, also `prefix.*` or `*`. The error is a message and a hint.
fn check_event_type(text: &str, pattern: bool) -> Result<(), (String, String)> {
    let example = "e.g. trading.volatility_spike";
    if pattern && text == "*" {
        return Ok(());
    }
    let (body, prefix) = match text.strip_suffix(".*") {
        Some(body) if pattern => (body, true),
        _ => (text, false),
    };
    if body.contains('*') {
        let hint = if pattern { "use trading.* for every type under trading, or * for all" } else { example };
        let message = if pattern {
            format!("{text:?}: `*` stands only for a whole type or for everything after a dot")
        } else {
            format!("an emitted event has one type; {text:?} contains `*`")
        };
        return Err((message, hint.into()));
    }
    if body.len() > 128 {
        return Err((format!("event type is {} characters long; the limit is 128", body.len()), example.into()));
    }
    let parts: Vec<&str> = body.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err((format!("event type {text:?} has an empty part"), example.into()));
    }
    for part in &parts {
        if let Some(bad) =
            part.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-'))
        {
            let hint = "use lower-case letters, digits, '-' and '_' between the dots";
            return Err((format!("event type {text:?} contains {bad:?}"), hint.into()));
        }
        if !part.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err((
                format!("each part of event type {text:?} must start with a letter or a digit"),
                example.into(),
            ));
        }
    }
    if parts.len() < 2 && !prefix {
        let hint = "name the source first, then what happened: e.g. trading.volatility_spike";
        return Err((format!("event type {text:?} needs at least two parts joined by a dot"), hint.into()));
    }
    Ok(())
}

/// Whether `name` is another workflow the catalog knows; `verb` says what this one does with it.
fn known_workflow(
    r: &mut Report<'_>,
    node: &Node,
    path: &str,
    name: &str,
    own: &str,
    catalog: &dyn Catalog,
    verb: &str,
) -> bool {
    if name == own {
        let hint = if verb == "call" {
            "a workflow that runs itself never ends; call another workflow"
        } else {
            "a run that starts the next run of itself never ends; use a schedule instead"
        };
        r.at(node.pos, path, format!("a workflow cannot {verb} itself"), Some(hint.into()));
        return false;
    }
    let workflows = catalog.workflows();
    if workflows.iter().any(|w| w == name) {
        return true;
    }
    let known: Vec<&str> = workflows.iter().map(String::as_str).filter(|w| *w != own).collect();
    let hint = match suggest(name, &known) {
        Some(near) => format!("did you mean {near:?}?"),
        None if known.is_empty() => "no other workflows are known; add its file to the workflows directory".into(),
        None => format!("the known workflows are: {}", known.join(", ")),
    };
    r.at(node.pos, path, format!("unknown workflow {name:?}"), Some(hint));
    false
}
