//! Native rules: the common rule shapes (`Result > 90`, `Result >= 80 && Result < 90`,
//! `!(Result == 0) || Result < -5`) compiled to plain comparisons on `f64`, so a threshold
//! check does not pay for a Rhai scope, a tag map and a points array per object.
//!
//! Only a strict subset is accepted: comparisons of `Result` with a number literal (either
//! side), joined by `&&` and `||`, with parentheses, and `!` only before a parenthesis.
//! Anything else (other variables, functions, other literals) is left to Rhai. The subset has
//! exactly Rhai's meaning when `Result` is a finite number: Rhai compares a finite float with
//! an integer literal as floats. Rhai has its own answers for NaN and infinities against
//! integer literals (`NaN == 0` holds there), and `()` (no value) is not a number, so for
//! those the caller evaluates with Rhai instead.

/// A rule compiled to native comparisons over `Result`.
#[derive(Debug, Clone, PartialEq)]
pub enum NativeExpr {
    /// `Result <op> value`
    Cmp(Op, f64),
    /// both hold
    And(Box<NativeExpr>, Box<NativeExpr>),
    /// either holds
    Or(Box<NativeExpr>, Box<NativeExpr>),
    /// does not hold
    Not(Box<NativeExpr>),
}

/// A comparison operator, with `Result` on its left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl Op {
    /// The operator with its operands swapped (`5 < Result` is `Result > 5`).
    fn flipped(self) -> Op {
        match self {
            Op::Gt => Op::Lt,
            Op::Ge => Op::Le,
            Op::Lt => Op::Gt,
            Op::Le => Op::Ge,
            Op::Eq | Op::Ne => self,
        }
    }
}

impl NativeExpr {
    /// Compiles `src` when it is in the native subset; `None` leaves it to Rhai.
    pub fn compile(src: &str) -> Option<NativeExpr> {
        let toks = tokenize(src)?;
        let mut p = Parser { toks, pos: 0 };
        let e = p.or()?;
        (p.pos == p.toks.len()).then_some(e)
    }

    /// The rule's answer for `Result = result`.
    pub fn eval(&self, result: f64) -> bool {
        match self {
            NativeExpr::Cmp(op, v) => match op {
                Op::Gt => result > *v,
                Op::Ge => result >= *v,
                Op::Lt => result < *v,
                Op::Le => result <= *v,
                Op::Eq => result == *v,
                Op::Ne => result != *v,
            },
            NativeExpr::And(a, b) => a.eval(result) && b.eval(result),
            NativeExpr::Or(a, b) => a.eval(result) || b.eval(result),
            NativeExpr::Not(a) => !a.eval(result),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Result,
    Num(f64),
    Op(Op),
    And,
    Or,
    Not,
    Open,
    Close,
}

fn tokenize(src: &str) -> Option<Vec<Tok>> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let two = b.get(i + 1).copied();
        let (tok, len) = match (c, two) {
            (b' ' | b'\t' | b'\n' | b'\r', _) => {
                i += 1;
                continue;
            }
            (b'&', Some(b'&')) => (Tok::And, 2),
            (b'|', Some(b'|')) => (Tok::Or, 2),
            (b'>', Some(b'=')) => (Tok::Op(Op::Ge), 2),
            (b'<', Some(b'=')) => (Tok::Op(Op::Le), 2),
            (b'=', Some(b'=')) => (Tok::Op(Op::Eq), 2),
            (b'!', Some(b'=')) => (Tok::Op(Op::Ne), 2),
            (b'>', _) => (Tok::Op(Op::Gt), 1),
            (b'<', _) => (Tok::Op(Op::Lt), 1),
            (b'!', _) => (Tok::Not, 1),
            (b'(', _) => (Tok::Open, 1),
            (b')', _) => (Tok::Close, 1),
            (b'0'..=b'9' | b'-', _) => number(&b[i..])?,
            _ if b[i..].starts_with(b"Result")
                && !b
                    .get(i + 6)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') =>
            {
                (Tok::Result, 6)
            }
            _ => return None,
        };
        out.push(tok);
        i += len;
    }
    Some(out)
}

/// A number literal as Rhai reads it: an integer (`90`, `-5`: compared as a float) or a
/// float with digits on both sides of the point (`97.5`). Underscores, exponents and the like
/// are left to Rhai.
fn number(b: &[u8]) -> Option<(Tok, usize)> {
    let neg = b[0] == b'-';
    let digits = |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let start = usize::from(neg);
    let int = digits(start);
    if int == 0 {
        return None;
    }
    let mut len = start + int;
    let is_float = b.get(len) == Some(&b'.');
    if is_float {
        let frac = digits(len + 1);
        if frac == 0 {
            return None;
        }
        len += 1 + frac;
    }
    if b.get(len)
        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.')
    {
        return None;
    }
    let text = std::str::from_utf8(&b[..len]).ok()?;
    let v = if is_float {
        text.parse::<f64>().ok()?
    } else {
        // Rhai's integers are i64; a comparison with a float casts them.
        text.parse::<i64>().ok()? as f64
    };
    Some((Tok::Num(v), len))
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn or(&mut self) -> Option<NativeExpr> {
        let mut e = self.and()?;
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            e = NativeExpr::Or(Box::new(e), Box::new(self.and()?));
        }
        Some(e)
    }

    fn and(&mut self) -> Option<NativeExpr> {
        let mut e = self.unary()?;
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            e = NativeExpr::And(Box::new(e), Box::new(self.unary()?));
        }
        Some(e)
    }

    fn unary(&mut self) -> Option<NativeExpr> {
        match self.next()? {
            // `!` binds tighter than a comparison in Rhai (`!Result > 5` compares a bool), so
            // only `!( ... )` is native.
            Tok::Not => match self.peek() {
                Some(Tok::Open) => Some(NativeExpr::Not(Box::new(self.unary()?))),
                _ => None,
            },
            Tok::Open => {
                let e = self.or()?;
                (self.next()? == Tok::Close).then_some(e)
            }
            Tok::Result => match (self.next()?, self.next()?) {
                (Tok::Op(op), Tok::Num(v)) => Some(NativeExpr::Cmp(op, v)),
                _ => None,
            },
            Tok::Num(v) => match (self.next()?, self.next()?) {
                (Tok::Op(op), Tok::Result) => Some(NativeExpr::Cmp(op.flipped(), v)),
                _ => None,
            },
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_the_common_shapes() {
        assert_eq!(
            NativeExpr::compile("Result > 90"),
            Some(NativeExpr::Cmp(Op::Gt, 90.0))
        );
        assert_eq!(
            NativeExpr::compile("  90.5<=Result "),
            Some(NativeExpr::Cmp(Op::Ge, 90.5))
        );
        assert_eq!(
            NativeExpr::compile("Result < -5"),
            Some(NativeExpr::Cmp(Op::Lt, -5.0))
        );
        let e = NativeExpr::compile("Result >= 80 && Result < 90 || Result == 0").unwrap();
        assert!(e.eval(85.0) && e.eval(0.0) && !e.eval(90.0) && !e.eval(79.9));
        let e = NativeExpr::compile("!(Result > 10) && (Result != 3)").unwrap();
        assert!(e.eval(5.0) && !e.eval(3.0) && !e.eval(11.0));
    }

    #[test]
    fn leaves_everything_else_to_rhai() {
        for src in [
            "tags.host == \"a\"",
            "Result > 90 && tags.host == \"a\"",
            "!Result > 5",
            "Result > 1e3",
            "Result > 1_000",
            "Result > 90.",
            "Result > .5",
            "Results > 5",
            "Result > 5 > 3",
            "Result > 5)",
            "(Result > 5",
            "Result",
            "90 > 5",
            "points.len() > 3",
            "Result > 0x10",
            "",
        ] {
            assert_eq!(NativeExpr::compile(src), None, "{src}");
        }
    }
}
