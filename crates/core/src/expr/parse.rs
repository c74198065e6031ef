//! From tokens to a syntax tree: a recursive-descent parser, one function per precedence level,
//! loosest first. Every recursion goes through [`Parser::nested`] and every node through
//! [`Parser::make`], so hostile nesting is an error rather than a stack overflow.

use serde_json::{Number, Value};

use super::func::{self, FuncSpec};
use super::lex::{Lexer, Tok, Token};
use super::{ExprError, MAX_DEPTH, MAX_SOURCE};

/// A binary operator. `And` and `Or` short-circuit and return one of their operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    NotIn,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

impl BinOp {
    pub(super) fn symbol(self) -> &'static str {
        match self {
            BinOp::Or => "or",
            BinOp::And => "and",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::In => "in",
            BinOp::NotIn => "not in",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(super) struct Node {
    pub(super) kind: Kind,
    /// Byte offset in the parsed text: of the operator for `a + b` and `a ? b : c`, otherwise
    /// of the node's first character (so a path's offset is its root's).
    pub(super) offset: usize,
    /// Levels of nodes from this one down; kept at most [`MAX_DEPTH`] so that evaluating and
    /// dropping a tree recurse a bounded amount.
    height: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Kind {
    Literal(Value),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
    Root(String),
    Field(Box<Node>, String),
    Index(Box<Node>, Box<Node>),
    Neg(Box<Node>),
    Not(Box<Node>),
    Binary(BinOp, Box<Node>, Box<Node>),
    Cond(Box<Node>, Box<Node>, Box<Node>),
    Call(&'static FuncSpec, Vec<Node>),
}

impl Kind {
    pub(super) fn children(&self) -> Vec<&Node> {
        match self {
            Kind::Literal(_) | Kind::Root(_) => Vec::new(),
            Kind::Array(items) | Kind::Call(_, items) => items.iter().collect(),
            Kind::Object(entries) => entries.iter().map(|(_, v)| v).collect(),
            Kind::Field(b, _) | Kind::Neg(b) | Kind::Not(b) => vec![&**b],
            Kind::Index(a, b) | Kind::Binary(_, a, b) => vec![&**a, &**b],
            Kind::Cond(a, b, c) => vec![&**a, &**b, &**c],
        }
    }
}

impl Node {
    fn new(kind: Kind, offset: usize) -> Node {
        let height = 1 + kind.children().iter().map(|c| c.height).max().unwrap_or(0);
        Node { kind, offset, height }
    }
}

/// Parses a whole expression.
pub(super) fn parse_expression(src: &str) -> Result<Node, ExprError> {
    if src.len() > MAX_SOURCE {
        return Err(ExprError::new(
            MAX_SOURCE,
            format!("the expression is {} bytes long; the limit is 4096", src.len()),
        )
        .hint("move the logic into a step and use its output"));
    }
    let mut p = Parser::new(src, 0, None);
    if matches!(p.peek()?.tok, Tok::End) {
        return Err(ExprError::new(0, "the expression is empty"));
    }
    let node = p.expr()?;
    let t = p.peek()?.clone();
    if !matches!(t.tok, Tok::End) {
        return Err(p.unexpected(&t, "an operator or the end of the expression"));
    }
    Ok(node)
}

/// Parses the expression of a template part whose `{{` is at `open`; returns it with the offset
/// just after its `}}`.
pub(super) fn parse_embedded(text: &str, open: usize) -> Result<(Node, usize), ExprError> {
    let mut p = Parser::new(text, open + 2, Some(open));
    let first = p.peek()?.clone();
    if matches!(first.tok, Tok::End) {
        if p.lex.at_text_end(&first) {
            return Err(p.lex.unclosed());
        }
        return Err(ExprError::new(open, "empty '{{ }}'").hint("put an expression inside, or remove the braces"));
    }
    let node = p.expr()?;
    let t = p.peek()?.clone();
    match t.tok {
        Tok::End if text[t.start..].starts_with("}}") => Ok((node, t.start + 2)),
        _ => Err(p.unexpected(&t, "an operator or '}}'")),
    }
}

/// What [`Parser::save`] keeps to undo a look-ahead.
type Saved<'s> = (Lexer<'s>, Option<Token>, Option<String>);

struct Parser<'s> {
    lex: Lexer<'s>,
    peeked: Option<Token>,
    depth: usize,
    /// The last token consumed, described, for "expected a value after '+'".
    last: Option<String>,
}

impl<'s> Parser<'s> {
    fn new(src: &'s str, start: usize, open: Option<usize>) -> Parser<'s> {
        Parser { lex: Lexer::new(src, start, open), peeked: None, depth: 0, last: None }
    }

    /// A field name after `.`.
    fn field_name(&mut self) -> Result<String, ExprError> {
        match self.lex.field_name()? {
            Some(name) => {
                self.last = Some(format!("'{name}'"));
                Ok(name)
            }
            None => {
                let t = self.peek()?.clone();
                Err(self.unexpected(&t, "a field name after '.'"))
            }
        }
    }

    fn peek(&mut self) -> Result<&Token, ExprError> {
        let t = match self.peeked.take() {
            Some(t) => t,
            None => self.lex.next()?,
        };
        Ok(self.peeked.insert(t))
    }

    fn bump(&mut self) -> Result<Token, ExprError> {
        let t = match self.peeked.take() {
            Some(t) => t,
            None => self.lex.next()?,
        };
        self.last = Some(self.lex.describe(&t));
        Ok(t)
    }

    fn is(&mut self, punct: &str) -> Result<bool, ExprError> {
        Ok(matches!(&self.peek()?.tok, Tok::Punct(p) if *p == punct))
    }

    fn is_word(&mut self, word: &str) -> Result<bool, ExprError> {
        Ok(matches!(&self.peek()?.tok, Tok::Name(n) if n == word))
    }

    /// Consumes the punctuation `punct` or the keyword `word` if next; returns its offset.
    fn eat_either(&mut self, punct: &str, word: &str) -> Result<Option<usize>, ExprError> {
        if self.is(punct)? || self.is_word(word)? { Ok(Some(self.bump()?.start)) } else { Ok(None) }
    }

    fn eat(&mut self, punct: &str) -> Result<Option<usize>, ExprError> {
        if self.is(punct)? { Ok(Some(self.bump()?.start)) } else { Ok(None) }
    }

    fn save(&self) -> Saved<'s> {
        (self.lex.clone(), self.peeked.clone(), self.last.clone())
    }

    fn restore(&mut self, (lex, peeked, last): Saved<'s>) {
        (self.lex, self.peeked, self.last) = (lex, peeked, last);
    }

    // ---- errors ----

    /// "expected X, found Y" at `t`; in a template, running into the end of the text means the
    /// `{{` was never closed, which is the more useful thing to say.
    fn unexpected(&self, t: &Token, expected: &str) -> ExprError {
        if self.lex.open.is_some() && self.lex.at_text_end(t) {
            return self.lex.unclosed();
        }
        ExprError::new(t.start, format!("expected {expected}, found {}", self.lex.describe(t)))
    }

    fn too_deep(at: usize) -> ExprError {
        ExprError::new(at, format!("the expression nests more than {MAX_DEPTH} levels deep"))
            .hint("split it into smaller expressions, for example across steps")
    }

    // ---- grammar, loosest binding first ----

    /// Runs `f` one nesting level deeper, or fails when that is too deep.
    fn nested<T>(&mut self, at: usize, f: impl FnOnce(&mut Self) -> Result<T, ExprError>) -> Result<T, ExprError> {
        if self.depth >= MAX_DEPTH {
            return Err(Self::too_deep(at));
        }
        self.depth += 1;
        let out = f(self);
        self.depth -= 1;
        out
    }

    fn make(&self, kind: Kind, offset: usize) -> Result<Node, ExprError> {
        let node = Node::new(kind, offset);
        if node.height > MAX_DEPTH {
            return Err(Self::too_deep(offset));
        }
        Ok(node)
    }

    fn expr(&mut self) -> Result<Node, ExprError> {
        let at = self.peek()?.start;
        self.nested(at, Self::ternary)
    }

    /// `a ? b : c`, binding loosest and grouping to the right.
    fn ternary(&mut self) -> Result<Node, ExprError> {
        let cond = self.or()?;
        let Some(at) = self.eat("?")? else { return Ok(cond) };
        let yes = self.expr()?;
        if self.eat(":")?.is_none() {
            let t = self.peek()?.clone();
            return Err(self.unexpected(&t, &format!("':' of the '?' at offset {at}")));
        }
        let no = self.expr()?;
        self.make(Kind::Cond(Box::new(cond), Box::new(yes), Box::new(no)), at)
    }

    fn or(&mut self) -> Result<Node, ExprError> {
        let mut lhs = self.and()?;
        while let Some(at) = self.eat_either("||", "or")? {
            let rhs = self.and()?;
            lhs = self.make(Kind::Binary(BinOp::Or, Box::new(lhs), Box::new(rhs)), at)?;
        }
        Ok(lhs)
    }

    fn and(&mut self) -> Result<Node, ExprError> {
        let mut lhs = self.not()?;
        while let Some(at) = self.eat_either("&&", "and")? {
            let rhs = self.not()?;
            lhs = self.make(Kind::Binary(BinOp::And, Box::new(lhs), Box::new(rhs)), at)?;
        }
        Ok(lhs)
    }

    /// `!` and `not` negate a whole comparison: `not x in list` is `not (x in list)`.
    fn not(&mut self) -> Result<Node, ExprError> {
        let Some(at) = self.eat_either("!", "not")? else { return self.equality() };
        let operand = self.nested(at, Self::not)?;
        self.make(Kind::Not(Box::new(operand)), at)
    }

    fn equality(&mut self) -> Result<Node, ExprError> {
        let lhs = self.relational()?;
        let Some((op, at)) = self.equality_op()? else { return Ok(lhs) };
        let rhs = self.relational()?;
        let node = self.make(Kind::Binary(op, Box::new(lhs), Box::new(rhs)), at)?;
        let saved = self.save();
        if let Some((op, at)) = self.equality_op()? {
            return Err(chained(op, at));
        }
        self.restore(saved);
        Ok(node)
    }

    fn equality_op(&mut self) -> Result<Option<(BinOp, usize)>, ExprError> {
        let op = match &self.peek()?.tok {
            Tok::Punct("==") => BinOp::Eq,
            Tok::Punct("!=") => BinOp::Ne,
            _ => return Ok(None),
        };
        Ok(Some((op, self.bump()?.start)))
    }

    fn relational(&mut self) -> Result<Node, ExprError> {
        let lhs = self.additive()?;
        let Some((op, at)) = self.relational_op()? else { return Ok(lhs) };
        let rhs = self.additive()?;
        let node = self.make(Kind::Binary(op, Box::new(lhs), Box::new(rhs)), at)?;
        let saved = self.save();
        if let Some((op, at)) = self.relational_op()? {
            return Err(chained(op, at));
        }
        self.restore(saved);
        Ok(node)
    }

    fn relational_op(&mut self) -> Result<Option<(BinOp, usize)>, ExprError> {
        let op = match &self.peek()?.tok {
            Tok::Punct("<") => BinOp::Lt,
            Tok::Punct("<=") => BinOp::Le,
            Tok::Punct(">") => BinOp::Gt,
            Tok::Punct(">=") => BinOp::Ge,
            Tok::Name(n) if n == "in" => BinOp::In,
            Tok::Name(n) if n == "not" => {
                let saved = self.save();
                let at = self.bump()?.start;
                if self.is_word("in")? {
                    self.bump()?;
                    return Ok(Some((BinOp::NotIn, at)));
                }
                self.restore(saved);
                return Ok(None);
            }
            _ => return Ok(None),
        };
        Ok(Some((op, self.bump()?.start)))
    }

    fn additive(&mut self) -> Result<Node, ExprError> {
        let mut lhs = self.multiplicative()?;
        loop {
            let op = match &self.peek()?.tok {
                Tok::Punct("+") => BinOp::Add,
                Tok::Punct("-") => BinOp::Sub,
                _ => return Ok(lhs),
            };
            let at = self.bump()?.start;
            let rhs = self.multiplicative()?;
            lhs = self.make(Kind::Binary(op, Box::new(lhs), Box::new(rhs)), at)?;
        }
    }

    fn multiplicative(&mut self) -> Result<Node, ExprError> {
        let mut lhs = self.unary()?;
        loop {
            let op = match &self.peek()?.tok {
                Tok::Punct("*") => BinOp::Mul,
                Tok::Punct("/") => BinOp::Div,
                Tok::Punct("%") => BinOp::Rem,
                _ => return Ok(lhs),
            };
            let at = self.bump()?.start;
            let rhs = self.unary()?;
            lhs = self.make(Kind::Binary(op, Box::new(lhs), Box::new(rhs)), at)?;
        }
    }

    fn unary(&mut self) -> Result<Node, ExprError> {
        let Some(at) = self.eat("-")? else { return self.postfix() };
        let operand = self.nested(at, Self::unary)?;
        // `-2` is a literal, so checks see a number rather than an operation.
        if let Kind::Literal(Value::Number(n)) = &operand.kind
            && let Some(v) = negate_literal(n)
        {
            return self.make(Kind::Literal(v), at);
        }
        self.make(Kind::Neg(Box::new(operand)), at)
    }

    /// A value followed by any number of `.field` and `[index]`.
    fn postfix(&mut self) -> Result<Node, ExprError> {
        let start = self.peek()?.start;
        let mut node = self.primary()?;
        loop {
            if self.eat(".")?.is_some() {
                let name = self.field_name()?;
                node = self.make(Kind::Field(Box::new(node), name), start)?;
            } else if let Some(open) = self.eat("[")? {
                let index = self.expr()?;
                if self.eat("]")?.is_none() {
                    let t = self.peek()?.clone();
                    return Err(self.unexpected(&t, &format!("']' to close the '[' at offset {open}")));
                }
                node = self.make(Kind::Index(Box::new(node), Box::new(index)), start)?;
            } else {
                return Ok(node);
            }
        }
    }

    fn primary(&mut self) -> Result<Node, ExprError> {
        let after = self.last.clone();
        let t = self.bump()?;
        let at = t.start;
        match &t.tok {
            Tok::Num(v) => self.make(Kind::Literal(v.clone()), at),
            Tok::Str(s) => self.make(Kind::Literal(Value::String(s.clone())), at),
            Tok::Name(n) => match n.as_str() {
                "true" => self.make(Kind::Literal(Value::Bool(true)), at),
                "false" => self.make(Kind::Literal(Value::Bool(false)), at),
                "null" => self.make(Kind::Literal(Value::Null), at),
                "and" | "or" | "in" | "not" => Err(self.no_value(&t, after)),
                _ if self.is("(")? => self.call(n, at),
                _ => self.make(Kind::Root(n.clone()), at),
            },
            Tok::Punct("(") => {
                let inner = self.expr()?;
                if self.eat(")")?.is_none() {
                    let t = self.peek()?.clone();
                    return Err(self.unexpected(&t, &format!("')' to close the '(' at offset {at}")));
                }
                Ok(inner)
            }
            Tok::Punct("[") => self.array(at),
            Tok::Punct("{") => self.object(at),
            _ => Err(self.no_value(&t, after)),
        }
    }

    fn no_value(&self, t: &Token, after: Option<String>) -> ExprError {
        let expected = match after {
            Some(after) => format!("a value after {after}"),
            None => "a value".to_string(),
        };
        let err = self.unexpected(t, &expected);
        let negation = matches!(&t.tok, Tok::Punct("!")) || matches!(&t.tok, Tok::Name(n) if n == "not");
        if negation {
            err.hint("'!' and 'not' negate a whole comparison; put the negation in parentheses, as in 1 + (not x)")
        } else {
            err
        }
    }

    fn call(&mut self, name: &str, at: usize) -> Result<Node, ExprError> {
        let spec = func::lookup(name).ok_or_else(|| func::unknown(name, at))?;
        self.bump()?; // the '('
        let mut args = Vec::new();
        loop {
            if self.eat(")")?.is_some() {
                break;
            }
            args.push(self.expr()?);
            if self.eat(",")?.is_some() {
                continue;
            }
            if self.eat(")")?.is_some() {
                break;
            }
            let t = self.peek()?.clone();
            return Err(self.unexpected(&t, &format!("')' after the arguments of {name}")));
        }
        spec.check_arity(args.len(), at)?;
        self.make(Kind::Call(spec, args), at)
    }

    fn array(&mut self, open: usize) -> Result<Node, ExprError> {
        let mut items = Vec::new();
        loop {
            if self.eat("]")?.is_some() {
                break;
            }
            items.push(self.expr()?);
            if self.eat(",")?.is_some() {
                continue;
            }
            if self.eat("]")?.is_some() {
                break;
            }
            let t = self.peek()?.clone();
            return Err(self.unexpected(&t, &format!("',' or ']' in the array opened at offset {open}")));
        }
        self.make(Kind::Array(items), open)
    }

    fn object(&mut self, open: usize) -> Result<Node, ExprError> {
        let mut entries: Vec<(String, Node)> = Vec::new();
        loop {
            if self.eat("}")?.is_some() {
                break;
            }
            let t = self.bump()?;
            let key = match t.tok {
                Tok::Name(k) | Tok::Str(k) => k,
                _ => return Err(self.unexpected(&t, "a key (a name or a quoted string) in the object")),
            };
            if entries.iter().any(|(k, _)| *k == key) {
                return Err(ExprError::new(t.start, format!("the key '{key}' appears twice in the object")));
            }
            if self.eat(":")?.is_none() {
                let t = self.peek()?.clone();
                return Err(self.unexpected(&t, &format!("':' after the key '{key}'")));
            }
            entries.push((key, self.expr()?));
            if self.eat(",")?.is_some() {
                continue;
            }
            if self.eat("}")?.is_some() {
                break;
            }
            let t = self.peek()?.clone();
            return Err(self.unexpected(&t, &format!("',' or '}}' in the object opened at offset {open}")));
        }
        self.make(Kind::Object(entries), open)
    }
}

fn chained(op: BinOp, at: usize) -> ExprError {
    ExprError::new(at, format!("comparisons do not chain: '{}' follows another comparison", op.symbol()))
        .hint("join them with 'and', as in a < b and b < c")
}

fn negate_literal(n: &Number) -> Option<Value> {
    match n.as_i64() {
        Some(i) => i.checked_neg().map(Value::from),
        None => n.as_f64().and_then(|f| Number::from_f64(-f)).map(Value::Number),
    }
}
