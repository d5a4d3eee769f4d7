//! A recogniser for Python 3.11's expression grammar (`ast.parse(s,
//! mode="eval")`). It keeps only the node shapes `import_app` and
//! `ast.literal_eval` look at; every other valid construct becomes
//! [`Expr::Other`]. What matters is telling a SyntaxError (Gunicorn's
//! "Failed to parse ...") from a valid but non-literal argument ("Failed to
//! parse arguments ...").

use super::lexer::{LexError, Tok};
use super::numbers::Number;
use super::strings::StrLit;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Expr {
    Name(String),
    Attribute(Box<Expr>, String),
    Subscript,
    Call {
        func: Box<Expr>,
        args: Vec<Arg>,
    },
    Num(Number),
    Str(StrLit),
    None,
    Bool(bool),
    Ellipsis,
    Tuple(Vec<Expr>),
    List(Vec<Expr>),
    Set(Vec<Expr>),
    /// `None` key: a `**mapping` entry.
    Dict(Vec<(Option<Expr>, Expr)>),
    Unary(UnOp, Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Starred(Box<Expr>),
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UnOp {
    Plus,
    Minus,
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Other,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Arg {
    Pos(Expr),
    Star(Expr),
    Kw(String, Expr),
    DoubleStar(Expr),
}

/// Python's hard keywords: never names.
const KEYWORDS: [&str; 35] = [
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del",
    "elif", "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is", "lambda", "nonlocal",
    "not", "or", "pass", "raise", "return", "try", "while", "with", "yield",
];

type PResult<T> = Result<T, LexError>;

fn fail<T>(why: &'static str) -> PResult<T> {
    Err(LexError(why))
}

pub(crate) struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
}

/// How deeply expressions (and unary operators) may nest. CPython allows
/// about 200 levels of brackets; ferrocorn stops at 100 so that parsing
/// stays within a 2 MiB thread stack even in a debug build. No real
/// APP_MODULE comes close.
const MAX_DEPTH: usize = 100;

impl Parser {
    pub(crate) fn new(toks: Vec<Tok>) -> Parser {
        Parser { toks, pos: 0, depth: 0 }
    }

    /// `eval_input: expressions NEWLINE* ENDMARKER`
    pub(crate) fn parse_eval(mut self) -> PResult<Expr> {
        let e = self.expressions()?;
        while self.peek() == Some(&Tok::Newline) {
            self.pos += 1;
        }
        match self.peek() {
            Some(Tok::End) => Ok(e),
            _ => fail("invalid syntax"),
        }
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn peek2(&self) -> Option<&Tok> {
        self.toks.get(self.pos + 1)
    }

    fn at_op(&self, op: &str) -> bool {
        matches!(self.peek(), Some(Tok::Op(o)) if *o == op)
    }

    fn at_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Name(n)) if n == kw)
    }

    fn eat_op(&mut self, op: &str) -> bool {
        let hit = self.at_op(op);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        let hit = self.at_kw(kw);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn expect_op(&mut self, op: &str) -> PResult<()> {
        if self.eat_op(op) {
            Ok(())
        } else {
            fail("invalid syntax")
        }
    }

    fn expect_kw(&mut self, kw: &str) -> PResult<()> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            fail("invalid syntax")
        }
    }

    /// A non-keyword NAME.
    fn name(&mut self) -> PResult<String> {
        match self.peek() {
            Some(Tok::Name(n)) if !KEYWORDS.contains(&n.as_str()) => {
                let n = n.clone();
                self.pos += 1;
                Ok(n)
            }
            _ => fail("invalid syntax"),
        }
    }

    fn at_name(&self) -> bool {
        matches!(self.peek(), Some(Tok::Name(n)) if !KEYWORDS.contains(&n.as_str()))
    }

    /// `expression (',' expression)* [',']`, a tuple if there is a comma.
    fn expressions(&mut self) -> PResult<Expr> {
        let first = self.expression()?;
        if !self.at_op(",") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.eat_op(",") {
            if self.starts_expression() {
                items.push(self.expression()?);
            } else {
                break;
            }
        }
        Ok(Expr::Tuple(items))
    }

    fn starts_expression(&self) -> bool {
        match self.peek() {
            Some(Tok::Name(n)) => {
                !KEYWORDS.contains(&n.as_str())
                    || matches!(n.as_str(), "True" | "False" | "None" | "not" | "lambda" | "await")
            }
            Some(Tok::Number(_) | Tok::Str(_)) => true,
            Some(Tok::Op(o)) => matches!(*o, "(" | "[" | "{" | "-" | "+" | "~" | "..."),
            _ => false,
        }
    }

    fn enter(&mut self) -> PResult<()> {
        if self.depth >= MAX_DEPTH {
            return fail("too complex");
        }
        self.depth += 1;
        Ok(())
    }

    fn expression(&mut self) -> PResult<Expr> {
        self.enter()?;
        let e = self.expression_inner();
        self.depth -= 1;
        e
    }

    fn expression_inner(&mut self) -> PResult<Expr> {
        if self.eat_kw("lambda") {
            self.lambda_params()?;
            self.expression()?;
            return Ok(Expr::Other);
        }
        let body = self.disjunction()?;
        if self.eat_kw("if") {
            self.disjunction()?;
            self.expect_kw("else")?;
            self.expression()?;
            return Ok(Expr::Other);
        }
        Ok(body)
    }

    fn lambda_params(&mut self) -> PResult<()> {
        while !self.eat_op(":") {
            if self.eat_op("**") {
                self.name()?;
            } else if self.eat_op("*") {
                if self.at_name() {
                    self.name()?;
                }
            } else if !self.eat_op("/") {
                self.name()?;
                if self.eat_op("=") {
                    self.expression()?;
                }
            }
            if !self.eat_op(",") {
                self.expect_op(":")?;
                return Ok(());
            }
        }
        Ok(())
    }

    /// `NAME ':=' expression | expression`
    fn named_expression(&mut self) -> PResult<Expr> {
        if self.at_name() && matches!(self.peek2(), Some(Tok::Op(":="))) {
            self.pos += 2;
            self.expression()?;
            return Ok(Expr::Other);
        }
        let e = self.expression()?;
        if self.at_op(":=") {
            return fail("cannot use assignment expressions with this target");
        }
        Ok(e)
    }

    /// `'*' bitwise_or | named_expression`
    fn star_named_expression(&mut self) -> PResult<Expr> {
        if self.eat_op("*") {
            return Ok(Expr::Starred(Box::new(self.bitwise_or()?)));
        }
        self.named_expression()
    }

    fn disjunction(&mut self) -> PResult<Expr> {
        let first = self.conjunction()?;
        if !self.at_kw("or") {
            return Ok(first);
        }
        while self.eat_kw("or") {
            self.conjunction()?;
        }
        Ok(Expr::Other)
    }

    fn conjunction(&mut self) -> PResult<Expr> {
        let first = self.inversion()?;
        if !self.at_kw("and") {
            return Ok(first);
        }
        while self.eat_kw("and") {
            self.inversion()?;
        }
        Ok(Expr::Other)
    }

    fn inversion(&mut self) -> PResult<Expr> {
        if self.eat_kw("not") {
            self.inversion()?;
            return Ok(Expr::Other);
        }
        self.comparison()
    }

    fn comparison(&mut self) -> PResult<Expr> {
        let first = self.bitwise_or()?;
        let mut compared = false;
        loop {
            let matched = if ["==", "!=", "<", "<=", ">", ">="].iter().any(|op| self.at_op(op)) {
                self.pos += 1;
                true
            } else if self.eat_kw("in") {
                true
            } else if self.at_kw("not") && matches!(self.peek2(), Some(Tok::Name(n)) if n == "in") {
                self.pos += 2;
                true
            } else if self.eat_kw("is") {
                self.eat_kw("not");
                true
            } else {
                false
            };
            if !matched {
                break;
            }
            self.bitwise_or()?;
            compared = true;
        }
        Ok(if compared { Expr::Other } else { first })
    }

    /// `|` down to `*`, by precedence climbing: one frame per rise in
    /// precedence rather than one per grammar level, to keep deep nesting
    /// cheap on the stack.
    fn binary(&mut self, min_level: usize) -> PResult<Expr> {
        const LEVELS: [&[&str]; 6] = [&["|"], &["^"], &["&"], &["<<", ">>"], &["+", "-"], &["*", "/", "//", "%", "@"]];
        let mut left = self.factor()?;
        loop {
            let found = LEVELS
                .iter()
                .enumerate()
                .find_map(|(level, ops)| ops.iter().find(|op| self.at_op(op)).map(|op| (level, *op)));
            let Some((level, op)) = found.filter(|&(level, _)| level >= min_level) else {
                return Ok(left);
            };
            self.pos += 1;
            let right = self.binary(level + 1)?;
            let kind = match op {
                "+" => BinOp::Add,
                "-" => BinOp::Sub,
                _ => BinOp::Other,
            };
            left = Expr::Binary(kind, Box::new(left), Box::new(right));
        }
    }

    fn bitwise_or(&mut self) -> PResult<Expr> {
        self.binary(0)
    }

    fn factor(&mut self) -> PResult<Expr> {
        let op = if self.eat_op("+") {
            UnOp::Plus
        } else if self.eat_op("-") {
            UnOp::Minus
        } else if self.eat_op("~") {
            UnOp::Other
        } else {
            return self.power();
        };
        self.enter()?;
        let operand = self.factor();
        self.depth -= 1;
        Ok(Expr::Unary(op, Box::new(operand?)))
    }

    fn power(&mut self) -> PResult<Expr> {
        let base = if self.eat_kw("await") {
            self.primary()?;
            Expr::Other
        } else {
            self.primary()?
        };
        if self.eat_op("**") {
            self.factor()?;
            return Ok(Expr::Other);
        }
        Ok(base)
    }

    fn primary(&mut self) -> PResult<Expr> {
        let mut e = self.atom()?;
        loop {
            if self.eat_op(".") {
                let attr = self.name()?;
                e = Expr::Attribute(Box::new(e), attr);
            } else if self.eat_op("(") {
                let args = self.arguments()?;
                e = Expr::Call { func: Box::new(e), args };
            } else if self.eat_op("[") {
                self.slices()?;
                e = Expr::Subscript;
            } else {
                return Ok(e);
            }
        }
    }

    fn atom(&mut self) -> PResult<Expr> {
        let Some(tok) = self.peek().cloned() else {
            return fail("invalid syntax");
        };
        match tok {
            Tok::Name(n) => {
                self.pos += 1;
                match n.as_str() {
                    "None" => Ok(Expr::None),
                    "True" => Ok(Expr::Bool(true)),
                    "False" => Ok(Expr::Bool(false)),
                    _ if KEYWORDS.contains(&n.as_str()) => fail("invalid syntax"),
                    _ => Ok(Expr::Name(n)),
                }
            }
            Tok::Number(n) => {
                self.pos += 1;
                Ok(Expr::Num(n))
            }
            Tok::Str(_) => self.strings(),
            Tok::Op("...") => {
                self.pos += 1;
                Ok(Expr::Ellipsis)
            }
            Tok::Op("(") => {
                self.pos += 1;
                self.paren()
            }
            Tok::Op("[") => {
                self.pos += 1;
                self.list()
            }
            Tok::Op("{") => {
                self.pos += 1;
                self.brace()
            }
            _ => fail("invalid syntax"),
        }
    }

    /// Adjacent literals concatenate; bytes and str may not mix.
    fn strings(&mut self) -> PResult<Expr> {
        let mut parts = Vec::new();
        while let Some(Tok::Str(s)) = self.peek() {
            parts.push(s.clone());
            self.pos += 1;
        }
        let bytes = parts.iter().filter(|p| matches!(p, StrLit::Bytes(_))).count();
        if bytes != 0 && bytes != parts.len() {
            return fail("cannot mix bytes and nonbytes literals");
        }
        if parts.iter().any(|p| matches!(p, StrLit::Formatted)) {
            return Ok(Expr::Str(StrLit::Formatted));
        }
        if bytes != 0 {
            let mut all = Vec::new();
            for p in parts {
                if let StrLit::Bytes(b) = p {
                    all.extend(b);
                }
            }
            return Ok(Expr::Str(StrLit::Bytes(all)));
        }
        let mut text = Ok(String::new());
        for p in parts {
            if let (StrLit::Text(piece), Ok(acc)) = (p, &mut text) {
                match piece {
                    Ok(s) => acc.push_str(&s),
                    Err(why) => text = Err(why),
                }
            }
        }
        Ok(Expr::Str(StrLit::Text(text)))
    }

    fn at_comprehension(&self) -> bool {
        self.at_kw("for") || (self.at_kw("async") && matches!(self.peek2(), Some(Tok::Name(n)) if n == "for"))
    }

    /// `(['async'] 'for' star_targets 'in' disjunction ('if' disjunction)*)+`
    fn comprehension(&mut self) -> PResult<()> {
        while self.at_comprehension() {
            self.eat_kw("async");
            self.expect_kw("for")?;
            self.targets()?;
            self.expect_kw("in")?;
            self.disjunction()?;
            while self.eat_kw("if") {
                self.disjunction()?;
            }
        }
        Ok(())
    }

    fn targets(&mut self) -> PResult<()> {
        loop {
            let t = self.star_named_target()?;
            if !assignable(&t) {
                return fail("cannot assign to expression");
            }
            if !self.eat_op(",") || self.at_kw("in") {
                return Ok(());
            }
        }
    }

    fn star_named_target(&mut self) -> PResult<Expr> {
        if self.eat_op("*") {
            return Ok(Expr::Starred(Box::new(self.bitwise_or()?)));
        }
        self.bitwise_or()
    }

    /// After `(`: empty tuple, yield, group, tuple or generator.
    fn paren(&mut self) -> PResult<Expr> {
        if self.eat_op(")") {
            return Ok(Expr::Tuple(Vec::new()));
        }
        if self.eat_kw("yield") {
            if self.eat_kw("from") {
                self.expression()?;
            } else if !self.at_op(")") {
                self.star_expressions()?;
            }
            self.expect_op(")")?;
            return Ok(Expr::Other);
        }
        let first = self.star_named_expression()?;
        if self.at_comprehension() {
            if matches!(first, Expr::Starred(_)) {
                return fail("iterable unpacking cannot be used in comprehension");
            }
            self.comprehension()?;
            self.expect_op(")")?;
            return Ok(Expr::Other);
        }
        if self.eat_op(")") {
            if matches!(first, Expr::Starred(_)) {
                return fail("cannot use starred expression here");
            }
            return Ok(first);
        }
        self.expect_op(",")?;
        let mut items = vec![first];
        while !self.eat_op(")") {
            items.push(self.star_named_expression()?);
            if !self.eat_op(",") {
                self.expect_op(")")?;
                break;
            }
        }
        Ok(Expr::Tuple(items))
    }

    fn star_expressions(&mut self) -> PResult<()> {
        loop {
            if self.eat_op("*") {
                self.bitwise_or()?;
            } else {
                self.expression()?;
            }
            if !self.eat_op(",") || !self.starts_expression() && !self.at_op("*") {
                return Ok(());
            }
        }
    }

    fn list(&mut self) -> PResult<Expr> {
        if self.eat_op("]") {
            return Ok(Expr::List(Vec::new()));
        }
        let first = self.star_named_expression()?;
        if self.at_comprehension() {
            if matches!(first, Expr::Starred(_)) {
                return fail("iterable unpacking cannot be used in comprehension");
            }
            self.comprehension()?;
            self.expect_op("]")?;
            return Ok(Expr::Other);
        }
        let mut items = vec![first];
        loop {
            if self.eat_op("]") {
                return Ok(Expr::List(items));
            }
            self.expect_op(",")?;
            if self.eat_op("]") {
                return Ok(Expr::List(items));
            }
            items.push(self.star_named_expression()?);
        }
    }

    /// After `{`: dict, set, or their comprehensions.
    fn brace(&mut self) -> PResult<Expr> {
        if self.eat_op("}") {
            return Ok(Expr::Dict(Vec::new()));
        }
        if self.at_op("**") {
            return self.dict_rest(Vec::new());
        }
        let first = self.star_named_expression()?;
        if self.eat_op(":") {
            if matches!(first, Expr::Starred(_)) {
                return fail("invalid syntax");
            }
            let value = self.expression()?;
            if self.at_comprehension() {
                self.comprehension()?;
                self.expect_op("}")?;
                return Ok(Expr::Other);
            }
            let items = vec![(Some(first), value)];
            if self.eat_op("}") {
                return Ok(Expr::Dict(items));
            }
            self.expect_op(",")?;
            return self.dict_rest(items);
        }
        if self.at_comprehension() {
            if matches!(first, Expr::Starred(_)) {
                return fail("iterable unpacking cannot be used in comprehension");
            }
            self.comprehension()?;
            self.expect_op("}")?;
            return Ok(Expr::Other);
        }
        let mut items = vec![first];
        loop {
            if self.eat_op("}") {
                return Ok(Expr::Set(items));
            }
            self.expect_op(",")?;
            if self.eat_op("}") {
                return Ok(Expr::Set(items));
            }
            items.push(self.star_named_expression()?);
        }
    }

    fn dict_rest(&mut self, mut items: Vec<(Option<Expr>, Expr)>) -> PResult<Expr> {
        loop {
            if self.eat_op("}") {
                return Ok(Expr::Dict(items));
            }
            if self.eat_op("**") {
                items.push((None, self.bitwise_or()?));
            } else {
                let key = self.expression()?;
                self.expect_op(":")?;
                items.push((Some(key), self.expression()?));
            }
            if !self.eat_op(",") {
                self.expect_op("}")?;
                return Ok(Expr::Dict(items));
            }
        }
    }

    /// After `(` of a call, through `)`.
    fn arguments(&mut self) -> PResult<Vec<Arg>> {
        let mut args = Vec::new();
        let mut seen_keyword = false;
        let mut seen_double_star = false;
        while !self.eat_op(")") {
            if self.eat_op("*") {
                if seen_double_star {
                    return fail("iterable argument unpacking follows keyword argument unpacking");
                }
                args.push(Arg::Star(self.expression()?));
            } else if self.eat_op("**") {
                seen_double_star = true;
                args.push(Arg::DoubleStar(self.expression()?));
            } else if matches!(self.peek(), Some(Tok::Name(_))) && matches!(self.peek2(), Some(Tok::Op("="))) {
                let name = self.name()?;
                self.pos += 1;
                seen_keyword = true;
                args.push(Arg::Kw(name, self.expression()?));
            } else {
                let e = self.named_expression()?;
                if self.at_op("=") {
                    return fail("expression cannot contain assignment");
                }
                if self.at_comprehension() {
                    self.comprehension()?;
                    if !args.is_empty() || !self.eat_op(")") {
                        return fail("Generator expression must be parenthesized");
                    }
                    args.push(Arg::Pos(Expr::Other));
                    return Ok(args);
                }
                if seen_keyword || seen_double_star {
                    return fail("positional argument follows keyword argument");
                }
                args.push(Arg::Pos(e));
            }
            if !self.eat_op(",") {
                self.expect_op(")")?;
                return Ok(args);
            }
        }
        Ok(args)
    }

    /// After `[` of a subscript, through `]`.
    fn slices(&mut self) -> PResult<()> {
        loop {
            if self.eat_op("*") {
                self.bitwise_or()?;
            } else {
                if !self.at_op(":") {
                    self.named_expression()?;
                }
                if self.eat_op(":") {
                    if !self.at_op(":") && !self.at_op(",") && !self.at_op("]") {
                        self.expression()?;
                    }
                    if self.eat_op(":") && !self.at_op(",") && !self.at_op("]") {
                        self.expression()?;
                    }
                }
            }
            if !self.eat_op(",") {
                return self.expect_op("]");
            }
            if self.eat_op("]") {
                return Ok(());
            }
        }
    }
}

/// What may stand after `for` in a comprehension.
fn assignable(e: &Expr) -> bool {
    match e {
        Expr::Name(_) | Expr::Attribute(..) | Expr::Subscript => true,
        Expr::Tuple(items) | Expr::List(items) => items.iter().all(assignable),
        Expr::Starred(inner) => assignable(inner),
        _ => false,
    }
}
