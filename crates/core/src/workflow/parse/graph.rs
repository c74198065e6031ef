//! The checks that need every step at once: unique ids, `needs` that name other steps, no cycle,
//! and expressions that read only what exists when they run — outputs of steps that have
//! finished, declared inputs, and an event only where a trigger brings one.

use std::collections::{BTreeMap, BTreeSet};

use super::exprs::Use;
use super::node::Report;
use super::steps::Draft;
use crate::manifest::suggest;

/// The steps by id and the edges of `needs` that name a step.
pub(super) struct Graph {
    /// The first step with each id.
    index: BTreeMap<String, usize>,
    /// For each step, the steps it needs (by index).
    needs: Vec<Vec<usize>>,
}

impl Graph {
    /// Checks ids and needs, reports cycles, and builds the graph of the valid edges.
    pub(super) fn new(r: &mut Report<'_>, drafts: &mut [Draft]) -> Graph {
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        for (i, d) in drafts.iter().enumerate() {
            let Some((id, pos)) = &d.id else { continue };
            match index.get(id) {
                Some(&first) => {
                    let hint = format!("step ids are unique; {} already has it", drafts[first].path);
                    r.at(*pos, &format!("{}.id", d.path), format!("two steps have the id {id:?}"), Some(hint));
                }
                None => {
                    index.insert(id.clone(), i);
                }
            }
        }
        let ids: Vec<&str> = index.keys().map(String::as_str).collect();
        let mut needs = vec![Vec::new(); drafts.len()];
        for (i, d) in drafts.iter_mut().enumerate() {
            let own = d.id.as_ref().map(|(id, _)| id.as_str());
            for need in &d.needs {
                if Some(need.name.as_str()) == own {
                    let hint = format!("remove {:?} from needs", need.name);
                    r.at(need.pos, &need.path, "a step cannot need itself", Some(hint));
                    d.needs_bad = true;
                } else if let Some(&j) = index.get(&need.name) {
                    needs[i].push(j);
                } else {
                    r.at(
                        need.pos,
                        &need.path,
                        format!("unknown step {:?}", need.name),
                        Some(step_hint(&need.name, &ids)),
                    );
                    d.needs_bad = true;
                }
            }
        }
        let graph = Graph { index, needs };
        graph.report_cycles(r, drafts);
        graph
    }

    /// Finds each cycle of `needs` and names it, as `a → b → a` where an arrow reads "needs".
    fn report_cycles(&self, r: &mut Report<'_>, drafts: &[Draft]) {
        let n = self.needs.len();
        let mut alive = vec![true; n];
        loop {
            // Drop the steps whose needs can all be met; what is left is in or behind a cycle.
            loop {
                let mut changed = false;
                for i in 0..n {
                    if alive[i] && !self.needs[i].iter().any(|&j| alive[j]) {
                        alive[i] = false;
                        changed = true;
                    }
                }
                if !changed {
                    break;
                }
            }
            let Some(start) = (0..n).find(|&i| alive[i]) else { return };
            // Every step left needs another step left: walking those needs must come round.
            let mut walk = vec![start];
            let mut at = start;
            let cycle = loop {
                let Some(&next) = self.needs[at].iter().find(|&&j| alive[j]) else { return };
                if let Some(k) = walk.iter().position(|&s| s == next) {
                    break walk.split_off(k);
                }
                walk.push(next);
                at = next;
            };
            let first = (0..cycle.len()).min_by_key(|&k| cycle[k]).unwrap_or(0);
            let mut names: Vec<&str> = Vec::new();
            for k in 0..=cycle.len() {
                let step = &drafts[cycle[(first + k) % cycle.len()]];
                names.push(step.id.as_ref().map_or("?", |(id, _)| id.as_str()));
            }
            let head = &drafts[cycle[first]];
            r.at(
                head.needs_at,
                &format!("{}.needs", head.path),
                format!("the steps need each other in a cycle: {}", names.join(" → ")),
                Some("each arrow reads \"needs\"; remove one of these needs".into()),
            );
            for s in cycle {
                alive[s] = false;
            }
        }
    }

    /// The steps `i` needs, directly or not.
    fn before(&self, i: usize) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut todo = self.needs[i].clone();
        while let Some(j) = todo.pop() {
            if seen.insert(j) {
                todo.extend(&self.needs[j]);
            }
        }
        seen
    }

    /// Each `steps.<id>` a step reads must name a step that has finished when it runs.
    pub(super) fn check_step_reads(&self, r: &mut Report<'_>, drafts: &[Draft]) {
        let ids: Vec<&str> = self.index.keys().map(String::as_str).collect();
        for (i, d) in drafts.iter().enumerate() {
            let own = d.id.as_ref().map(|(id, _)| id.as_str());
            let before = self.before(i);
            let mut said = BTreeSet::new();
            for u in d.uses.iter().filter(|u| u.root == "steps") {
                let Some(id) = u.fields.first() else { continue };
                if !said.insert((u.path.clone(), id.clone())) {
                    continue;
                }
                let Some(&j) = self.index.get(id) else {
                    r.at(u.pos, &u.path, format!("unknown step {id:?}"), Some(step_hint(id, &ids)));
                    continue;
                };
                if Some(id.as_str()) == own {
                    let hint = "its outputs exist once it has finished; read them in a step that needs it";
                    r.at(u.pos, &u.path, "a step cannot read its own outputs", Some(hint.into()));
                } else if d.needs_bad || before.contains(&j) {
                    continue;
                } else if self.before(j).contains(&i) {
                    let hint = format!("{id} needs this step, so it runs after it; read its outputs in a later step");
                    r.at(u.pos, &u.path, format!("steps.{id} is not finished when this step runs"), Some(hint));
                } else {
                    let mut needs = d.step.needs.clone();
                    needs.push(id.clone());
                    let hint = format!("needs: [{}]", needs.join(", "));
                    let message = format!("steps.{id} is not finished when this step runs; add it to needs");
                    r.at(u.pos, &u.path, message, Some(hint));
                }
            }
        }
    }

    /// The workflow's outputs are rendered after every step: any step may be read.
    pub(super) fn check_output_reads(&self, r: &mut Report<'_>, uses: &[Use]) {
        let ids: Vec<&str> = self.index.keys().map(String::as_str).collect();
        for u in uses.iter().filter(|u| u.root == "steps") {
            if let Some(id) = u.fields.first()
                && !self.index.contains_key(id)
            {
                r.at(u.pos, &u.path, format!("unknown step {id:?}"), Some(step_hint(id, &ids)));
            }
        }
    }
}

fn step_hint(id: &str, ids: &[&str]) -> String {
    match suggest(id, ids) {
        Some(near) => format!("did you mean {near:?}?"),
        None => format!("the steps are: {}", ids.join(", ")),
    }
}

/// `event` is only there when a trigger brings one.
pub(super) fn check_event_reads<'u>(r: &mut Report<'_>, uses: impl Iterator<Item = &'u Use>) {
    let mut said = BTreeSet::new();
    for u in uses.filter(|u| u.root == "event") {
        if said.insert(u.path.clone()) {
            r.at(
                u.pos,
                &u.path,
                "`event` is not available: no trigger of this workflow brings an event",
                Some(
                    "manual runs have `inputs` instead (declare them under on.manual.inputs); events come with \
                     an event, schedule, webhook or workflow trigger"
                        .into(),
                ),
            );
        }
    }
}

/// `inputs.<name>` must be a declared input.
pub(super) fn check_input_reads<'u>(r: &mut Report<'_>, declared: &[String], uses: impl Iterator<Item = &'u Use>) {
    let names: Vec<&str> = declared.iter().map(String::as_str).collect();
    let mut said = BTreeSet::new();
    for u in uses.filter(|u| u.root == "inputs") {
        let Some(name) = u.fields.first() else { continue };
        if names.contains(&name.as_str()) || !said.insert((u.path.clone(), name.clone())) {
            continue;
        }
        let hint = match suggest(name, &names) {
            Some(near) => format!("did you mean {near:?}?"),
            None if names.is_empty() => format!("declare it under on.manual.inputs, e.g. {name}: {{ type: string }}"),
            None => format!("the declared inputs are: {}", names.join(", ")),
        };
        r.at(u.pos, &u.path, format!("unknown input {name:?}"), Some(hint));
    }
}
