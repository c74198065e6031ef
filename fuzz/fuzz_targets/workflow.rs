//! Workflow files: a rejected file names each problem at a place inside the text; an accepted
//! one is a graph without cycles whose steps come in an order that respects `needs`, naming
//! only projects, tasks and workflows the catalog knows.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use agent_os_core::workflow::{Action, StaticCatalog, parse};
use agent_os_fuzz::{check_errors, text};
use libfuzzer_sys::fuzz_target;

/// The example projects' tasks and workflows, which the seed corpus refers to.
fn catalog() -> &'static StaticCatalog {
    static CATALOG: OnceLock<StaticCatalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let mut tasks = BTreeMap::new();
        let mut add = |project: &str, names: &[&str]| {
            tasks.insert(project.to_string(), names.iter().map(|n| n.to_string()).collect::<Vec<_>>());
        };
        add("trading", &["scan_market", "rebalance", "weekly_report", "monthly_report"]);
        add("cortana", &["daily_update", "query_memories", "summarize"]);
        add("image-workflow", &["process_batch", "backup"]);
        StaticCatalog {
            tasks,
            workflows: vec!["market-watch".into(), "volatility-to-memories".into(), "nightly-backup".into()],
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(text) = text(data) else { return };
    match parse("workflow.yaml", text, catalog()) {
        Err(e) => check_errors(text, &e),
        Ok(w) => {
            let order = w.topological_order();
            assert_eq!(order.len(), w.steps.len(), "an accepted workflow whose steps cannot all be ordered");
            for (i, step) in order.iter().enumerate() {
                for need in &step.needs {
                    let at = order.iter().position(|s| &s.id == need);
                    assert!(at.is_some_and(|at| at < i), "step {} runs before its need {need}", step.id);
                }
                if let Action::Run { project, task, .. } = &step.action {
                    let known = catalog().tasks.get(project.as_str());
                    assert!(known.is_some_and(|t| t.contains(task)), "unknown task {project}.{task} accepted");
                }
                if let Action::Workflow { name, .. } = &step.action {
                    assert!(catalog().workflows.contains(name), "unknown workflow {name} accepted");
                }
            }
        }
    }
});
