//! What can be known about an expression without its context: the paths it reads, names it
//! cannot resolve, and type errors that no context could avoid.
//!
//! Each node gets the set of types it may have. A part built only from literals is evaluated
//! (with no context, so it reads nothing) and gets its exact type, or reports its error; any
//! other part is judged by the same operator and function tables evaluation uses, and is
//! reported only when *no* combination of its operands' possible types is accepted.

use std::convert::identity;

use serde_json::Value;

use super::eval::{Evaluator, Types, binary_type, binary_type_error, type_of};
use super::func::{F, arg_type_error};
use super::parse::{BinOp, Kind, Node};
use super::{ExprError, MAX_STEPS, PathRef, unknown_name};

pub(super) fn check(node: &Node, known: &[&str]) -> Vec<ExprError> {
    let mut checker = Checker { known, errors: Vec::new() };
    let info = checker.visit(node);
    checker.settle(node, info);
    checker.errors.sort_by_key(|e| e.offset);
    checker.errors
}

struct Checker<'k> {
    known: &'k [&'k str],
    errors: Vec<ExprError>,
}

#[derive(Clone, Copy)]
struct Info {
    /// The node reads no context, so it can be evaluated now.
    constant: bool,
    /// What the node may evaluate to; empty after an error was reported, to stop a cascade.
    types: Types,
}

impl Checker<'_> {
    fn visit(&mut self, node: &Node) -> Info {
        let children = node.kind.children();
        let infos: Vec<Info> = children.iter().map(|c| self.visit(c)).collect();
        if !matches!(node.kind, Kind::Root(_)) && infos.iter().all(|i| i.constant) {
            return Info { constant: true, types: Types::ANY };
        }
        let types: Vec<Types> = children.iter().zip(infos).map(|(c, i)| self.settle(c, i)).collect();
        Info { constant: false, types: self.infer(node, &types) }
    }

    /// The types of a child inside a node that reads the context: a constant child is
    /// evaluated here, as the largest constant part around it.
    fn settle(&mut self, node: &Node, info: Info) -> Types {
        if !info.constant {
            return info.types;
        }
        match Evaluator::new(&Value::Null, MAX_STEPS).eval(node) {
            Ok(v) => Types::of(type_of(&v)),
            Err(e) => {
                self.errors.push(e);
                Types::NONE
            }
        }
    }

    /// The types a node may have given its children's (in `children()` order), reporting what
    /// cannot work whatever the context holds.
    fn infer(&mut self, node: &Node, kids: &[Types]) -> Types {
        let reported = kids.iter().any(|t| t.is_empty());
        match (&node.kind, kids) {
            (Kind::Root(name), _) => {
                if !self.known.contains(&name.as_str()) {
                    self.errors.push(unknown_name(name, self.known, node.offset));
                }
                Types::ANY
            }
            (Kind::Literal(v), _) => Types::of(type_of(v)),
            (Kind::Array(_), _) => Types::ARRAY,
            (Kind::Object(_), _) => Types::OBJECT,
            (Kind::Field(..), _) => Types::ANY,
            (Kind::Index(_, index), [_, i]) => {
                if !reported && !i.meets(Types::NUMBER.or(Types::STRING)) {
                    let message = format!("an index must be a number or a string, got {}", i.describe(false));
                    self.errors.push(ExprError::new(index.offset, message));
                }
                Types::ANY
            }
            (Kind::Neg(_), [t]) => {
                if !reported && !t.meets(Types::NUMBER) {
                    self.errors
                        .push(ExprError::new(node.offset, format!("'-' needs a number, got {}", t.describe(false))));
                    return Types::NONE;
                }
                Types::NUMBER
            }
            (Kind::Not(_), _) => Types::BOOL,
            (Kind::Binary(BinOp::And | BinOp::Or, ..), [a, b]) => a.or(*b),
            (Kind::Binary(BinOp::Div | BinOp::Rem, _, divisor), _) if is_zero(divisor) => {
                self.errors.push(ExprError::new(node.offset, "division by zero"));
                Types::NONE
            }
            (Kind::Binary(op, ..), [a, b]) => {
                if reported {
                    return Types::NONE;
                }
                let out = a
                    .iter()
                    .flat_map(|x| b.iter().filter_map(move |y| binary_type(*op, x, y)))
                    .fold(Types::NONE, Types::or);
                if out.is_empty() {
                    self.errors.push(binary_type_error(*op, *a, *b, node.offset));
                }
                out
            }
            (Kind::Cond(..), [_, yes, no]) => yes.or(*no),
            (Kind::Call(spec, args), _) => {
                let mut ok = true;
                for (i, (arg, t)) in args.iter().zip(kids).enumerate() {
                    if !t.is_empty() && !t.meets(spec.param(i)) {
                        self.errors.push(arg_type_error(spec, i, *t, arg.offset));
                        ok = false;
                    }
                }
                match (ok, spec.id, kids) {
                    (false, ..) => Types::NONE,
                    (true, F::Default, [x, fallback]) => x.without(Types::NULL).or(*fallback),
                    _ => spec.returns,
                }
            }
            _ => Types::ANY,
        }
    }
}

fn is_zero(node: &Node) -> bool {
    matches!(&node.kind, Kind::Literal(Value::Number(n)) if n.as_f64() == Some(0.0))
}

/// Appends the paths `node` reads: each root name with the field names that follow it.
pub(super) fn paths(node: &Node, out: &mut Vec<PathRef>) {
    if !matches!(node.kind, Kind::Root(_) | Kind::Field(..) | Kind::Index(..)) {
        for child in node.kind.children() {
            paths(child, out);
        }
        return;
    }
    // Walk down the chain of `.field` and `[index]` to what it starts from; the segments are
    // met last first.
    let mut segments: Vec<Option<String>> = Vec::new();
    let mut cur = node;
    loop {
        match &cur.kind {
            Kind::Field(base, name) => {
                segments.push(Some(name.clone()));
                cur = base;
            }
            Kind::Index(base, index) => {
                segments.push(match &index.kind {
                    Kind::Literal(Value::String(key)) => Some(key.clone()),
                    _ => None,
                });
                paths(index, out);
                cur = base;
            }
            Kind::Root(name) => {
                segments.reverse();
                let fields = segments.into_iter().map_while(identity).collect();
                out.push(PathRef { root: name.clone(), fields, offset: cur.offset });
                return;
            }
            _ => return paths(cur, out),
        }
    }
}
