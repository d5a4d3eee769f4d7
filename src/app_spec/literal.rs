//! `ast.literal_eval` over a parsed argument, and the values it yields.

use super::expr::{BinOp, Expr, UnOp};
use super::numbers::Number;
use super::strings::StrLit;

/// A Python value `ast.literal_eval` can produce (complex excepted).
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    None,
    Bool(bool),
    Ellipsis,
    Int(i128),
    /// An int outside i128: `int(digits, radix)`, negated if `negative`.
    /// Kept in the source radix so no big-number arithmetic is needed.
    BigInt {
        negative: bool,
        radix: u32,
        digits: String,
    },
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Literal>),
    List(Vec<Literal>),
    /// In source order; duplicate keys are left for the Python dict to
    /// resolve (later values win, as in the literal).
    Dict(Vec<(Literal, Literal)>),
    Set(Vec<Literal>),
}

/// Why Python's `literal_eval` (or building its result) raises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fatal {
    /// ValueError: not a literal.
    Malformed,
    /// TypeError from hashing a dict key or set member.
    Unhashable(&'static str),
}

/// Whether the value can be a dict key or set member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hash {
    Yes,
    /// Carries the Python type name for the TypeError.
    No(&'static str),
}

impl Hash {
    fn require(self) -> Result<(), Fatal> {
        match self {
            Hash::Yes => Ok(()),
            Hash::No(type_name) => Err(Fatal::Unhashable(type_name)),
        }
    }
}

/// Pass one: decides, in CPython's evaluation order, whether
/// `literal_eval` succeeds, without building anything.
pub(crate) fn check(e: &Expr) -> Result<Hash, Fatal> {
    match e {
        Expr::Num(_) | Expr::None | Expr::Bool(_) | Expr::Ellipsis => Ok(Hash::Yes),
        Expr::Str(StrLit::Formatted) => Err(Fatal::Malformed),
        Expr::Str(_) => Ok(Hash::Yes),
        Expr::Tuple(items) => {
            let mut hash = Hash::Yes;
            for item in items {
                let h = check(item)?;
                if hash == Hash::Yes {
                    hash = h;
                }
            }
            Ok(hash)
        }
        Expr::List(items) => {
            for item in items {
                check(item)?;
            }
            Ok(Hash::No("list"))
        }
        Expr::Set(items) => {
            for item in items {
                check(item)?.require()?;
            }
            Ok(Hash::No("set"))
        }
        Expr::Call { func, args } if args.is_empty() && **func == Expr::Name("set".into()) => Ok(Hash::No("set")),
        Expr::Dict(items) => {
            for (key, value) in items {
                let key = key.as_ref().ok_or(Fatal::Malformed)?;
                let key_hash = check(key)?;
                check(value)?;
                key_hash.require()?;
            }
            Ok(Hash::No("dict"))
        }
        Expr::Binary(BinOp::Add | BinOp::Sub, left, right) => {
            let left_real = signed_number(left)?;
            let right_imag = matches!(number(right)?, Number::Imag(_));
            if left_real && right_imag {
                Ok(Hash::Yes)
            } else {
                Err(Fatal::Malformed)
            }
        }
        Expr::Unary(..) => signed_number(e).map(|_| Hash::Yes),
        _ => Err(Fatal::Malformed),
    }
}

/// `_convert_num`: an int, float or complex constant.
fn number(e: &Expr) -> Result<&Number, Fatal> {
    match e {
        Expr::Num(n) => Ok(n),
        _ => Err(Fatal::Malformed),
    }
}

/// `_convert_signed_num`; true when the value is real (int or float).
fn signed_number(e: &Expr) -> Result<bool, Fatal> {
    let n = match e {
        Expr::Unary(UnOp::Plus | UnOp::Minus, operand) => number(operand)?,
        _ => number(e)?,
    };
    Ok(!matches!(n, Number::Imag(_)))
}

const COMPLEX: &str = "complex numbers";

/// Pass two, after [`check`] succeeded: the value, or why ferrocorn cannot
/// represent it.
pub(crate) fn build(e: &Expr) -> Result<Literal, &'static str> {
    Ok(match e {
        Expr::None => Literal::None,
        Expr::Bool(b) => Literal::Bool(*b),
        Expr::Ellipsis => Literal::Ellipsis,
        Expr::Num(n) => signed(false, n)?,
        Expr::Unary(op, operand) => match &**operand {
            Expr::Num(n) => signed(*op == UnOp::Minus, n)?,
            _ => return Err("not a literal"),
        },
        Expr::Str(StrLit::Text(t)) => Literal::Str(t.clone()?),
        Expr::Str(StrLit::Bytes(b)) => Literal::Bytes(b.clone()),
        Expr::Tuple(items) => Literal::Tuple(items.iter().map(build).collect::<Result<_, _>>()?),
        Expr::List(items) => Literal::List(items.iter().map(build).collect::<Result<_, _>>()?),
        Expr::Set(items) => Literal::Set(items.iter().map(build).collect::<Result<_, _>>()?),
        Expr::Call { .. } => Literal::Set(Vec::new()),
        Expr::Dict(items) => {
            let mut pairs = Vec::with_capacity(items.len());
            for (key, value) in items {
                let key = key.as_ref().ok_or("not a literal")?;
                pairs.push((build(key)?, build(value)?));
            }
            Literal::Dict(pairs)
        }
        Expr::Binary(..) => return Err(COMPLEX),
        _ => return Err("not a literal"),
    })
}

fn signed(negative: bool, n: &Number) -> Result<Literal, &'static str> {
    match n {
        Number::Imag(_) => Err(COMPLEX),
        Number::Float(f) => Ok(Literal::Float(if negative { -f } else { *f })),
        Number::Int { radix, digits } => Ok(int_literal(negative, *radix, digits)),
    }
}

fn int_literal(negative: bool, radix: u32, digits: &str) -> Literal {
    let mut magnitude: Option<u128> = Some(0);
    for c in digits.chars() {
        magnitude = magnitude.and_then(|m| {
            let d = c.to_digit(radix)?;
            m.checked_mul(u128::from(radix))?.checked_add(u128::from(d))
        });
    }
    let value = magnitude.and_then(|m| if negative { 0i128.checked_sub_unsigned(m) } else { i128::try_from(m).ok() });
    match value {
        Some(v) => Literal::Int(v),
        None => Literal::BigInt { negative, radix, digits: digits.trim_start_matches('0').to_owned() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_ranges() {
        assert_eq!(int_literal(false, 16, "ff"), Literal::Int(255));
        assert_eq!(int_literal(true, 10, "170141183460469231731687303715884105728"), Literal::Int(i128::MIN));
        assert_eq!(
            int_literal(false, 10, "170141183460469231731687303715884105728"),
            Literal::BigInt { negative: false, radix: 10, digits: "170141183460469231731687303715884105728".into() }
        );
        assert_eq!(
            int_literal(true, 2, "0011111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111"),
            Literal::BigInt {
                negative: true,
                radix: 2,
                digits: "11111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111111".into()
            }
        );
    }
}
