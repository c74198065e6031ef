//! Expressions and templates inside a workflow file: parsed, checked against the names available
//! where they stand, and placed in the file (line and column of the fault, where the YAML string
//! allows). The paths they read are kept as [`Use`]s, so the checks that need the whole workflow
//! (which steps have finished, which inputs exist) can run once every step is known.

use serde_json::Value;

use super::node::{Node, Report, Yaml, child_path};
use crate::expr::{Expr, ExprError, PathRef, Template};
use crate::yaml::Pos;

/// Names in a trigger's `if`.
pub(super) const TRIGGER_ROOTS: &[&str] = &["event"];
/// Names in `concurrency.key`.
pub(super) const CONCURRENCY_ROOTS: &[&str] = &["event", "inputs"];
/// Names in a step's `if`, `for_each` and, outside a for_each, its action; also in `outputs`.
pub(super) const STEP_ROOTS: &[&str] = &["event", "inputs", "steps"];
/// Names in the action of a step with `for_each`.
pub(super) const ITEM_ROOTS: &[&str] = &["event", "inputs", "steps", "item", "index"];

/// A path an expression reads, with its place in the file.
pub(super) struct Use {
    pub(super) root: String,
    /// The field names after the root, up to the first computed index.
    pub(super) fields: Vec<String>,
    pub(super) pos: Pos,
    /// The field of the file the expression is in.
    pub(super) path: String,
}

impl Report<'_> {
    /// A condition or list expression (`if`, `for_each`, filters), written without `{{ }}`.
    pub(super) fn expression(&mut self, node: &Node, path: &str, roots: &[&str], uses: &mut Vec<Use>) -> Option<Expr> {
        let field = path.rsplit('.').next().unwrap_or(path);
        let text = match &node.yaml {
            Yaml::Str(s) => s.clone(),
            Yaml::Bool(b) => b.to_string(),
            Yaml::Int(_) | Yaml::UInt(_) | Yaml::Float(_) => {
                self.at(node.pos, path, format!("expected an expression, found {}", node.kind()), None);
                return None;
            }
            _ => {
                let hint = format!("write it as a string, e.g. {field}: \"event.data.magnitude > 2\"");
                self.at(node.pos, path, format!("expected an expression, found {}", node.kind()), Some(hint));
                return None;
            }
        };
        let trimmed = text.trim();
        if let Some(inner) = trimmed.strip_prefix("{{").and_then(|t| t.strip_suffix("}}")) {
            let hint = format!("write {field}: {:?}; {{{{ }}}} marks the expressions inside text values", inner.trim());
            self.at(node.pos, path, format!("`{field}` is an expression; write it without {{{{ }}}}"), Some(hint));
            return None;
        }
        match Expr::parse(&text) {
            Ok(expr) => {
                let errors = expr.check(roots);
                self.report_names(node, path, roots, errors, expr.paths(), uses);
                Some(expr)
            }
            Err(e) => {
                self.expr_error(node, path, e);
                None
            }
        }
    }

    /// A string that may hold `{{ … }}` parts.
    pub(super) fn template(
        &mut self,
        node: &Node,
        path: &str,
        roots: &[&str],
        uses: &mut Vec<Use>,
    ) -> Option<Template> {
        let Some(text) = node.str() else {
            let hint = "quote it, e.g. \"{{ steps.summarize.outputs.text }}\"".to_string();
            self.at(node.pos, path, format!("expected a string, found {}", node.kind()), Some(hint));
            return None;
        };
        self.template_text(node, text, path, roots, uses)
    }

    fn template_text(
        &mut self,
        node: &Node,
        text: &str,
        path: &str,
        roots: &[&str],
        uses: &mut Vec<Use>,
    ) -> Option<Template> {
        match Template::parse(text) {
            Ok(t) => {
                let errors = t.check(roots);
                self.report_names(node, path, roots, errors, t.paths(), uses);
                Some(t)
            }
            Err(e) => {
                self.expr_error(node, path, e);
                None
            }
        }
    }

    /// Any value in which every string is a template (`with:`, `data:`, `inputs:`), as JSON.
    pub(super) fn templated(&mut self, node: &Node, path: &str, roots: &[&str], uses: &mut Vec<Use>) -> Option<Value> {
        let before = self.errors.len();
        self.check_strings(node, path, roots, uses);
        let value = self.json(node, path);
        value.filter(|_| self.errors.len() == before)
    }

    fn check_strings(&mut self, node: &Node, path: &str, roots: &[&str], uses: &mut Vec<Use>) {
        match &node.yaml {
            Yaml::Str(s) if s.contains("{{") => {
                self.template_text(node, s, path, roots, uses);
            }
            Yaml::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.check_strings(item, &format!("{path}[{i}]"), roots, uses);
                }
            }
            Yaml::Map(entries) => {
                for (key, value) in entries {
                    let field = key.scalar_text().map_or_else(|| path.to_string(), |k| child_path(path, &k));
                    self.check_strings(value, &field, roots, uses);
                }
            }
            _ => {}
        }
    }

    fn expr_error(&mut self, node: &Node, path: &str, e: ExprError) {
        let pos = self.pos_in(node, e.offset);
        self.at(pos, path, e.message, e.hint);
    }

    /// Reports what `Expr::check` found and keeps the paths that start from a known name.
    fn report_names(
        &mut self,
        node: &Node,
        path: &str,
        roots: &[&str],
        errors: Vec<ExprError>,
        paths: Vec<PathRef>,
        uses: &mut Vec<Use>,
    ) {
        for mut e in errors {
            let loop_name = paths.iter().any(|p| p.offset == e.offset && (p.root == "item" || p.root == "index"));
            if loop_name && !roots.contains(&"item") {
                e.hint = Some(
                    "`item` and `index` exist only in the action of a step with for_each (not in its `if` or \
                     `for_each`)"
                        .into(),
                );
            }
            self.expr_error(node, path, e);
        }
        for p in paths {
            if roots.contains(&p.root.as_str()) {
                let pos = self.pos_in(node, p.offset);
                uses.push(Use { root: p.root, fields: p.fields, pos, path: path.to_string() });
            }
        }
    }
}
