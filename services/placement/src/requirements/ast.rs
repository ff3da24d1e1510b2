//! The parsed form of an expression and its canonical printing.
//!
//! `Display` prints an [`Expr`] in canonical form (lowercase keywords, `tag:`
//! on every tag key, single-quoted strings, parentheses only where the
//! structure needs them); parsing that text gives back an equal tree (when it
//! stays within `MAX_CHARS`: it can be longer than the original), which the
//! property tests and the fuzz target check.

use std::fmt;

use super::properties::Property;

/// A boolean expression over one server.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// True when any member is true (two or more members).
    Or(Vec<Expr>),
    /// True when every member is true (two or more members).
    And(Vec<Expr>),
    /// True when the inner expression is false.
    Not(Box<Expr>),
    /// One comparison of a tag or property with a value.
    Compare(Comparison),
}

/// `operand operator value`, for example `tag:color := 'red'`.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// What is read from the server.
    pub operand: Operand,
    /// How it is compared.
    pub operator: Operator,
    /// What it is compared with.
    pub value: Literal,
}

/// The left-hand side of a comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    /// `tag:KEY`, or a bare `KEY` (the API YAML's legacy form).
    Tag(String),
    /// `server:PROPERTY`.
    Server(Property),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `<`
    Less,
    /// `<=`
    LessOrEqual,
    /// `>`
    Greater,
    /// `>=`
    GreaterOrEqual,
    /// `:=`: the operand's text contains the value's text.
    Contains,
}

impl Operator {
    /// Every operator, for tests and error messages.
    pub const ALL: [Operator; 7] = [
        Operator::Equal,
        Operator::NotEqual,
        Operator::Less,
        Operator::LessOrEqual,
        Operator::Greater,
        Operator::GreaterOrEqual,
        Operator::Contains,
    ];

    /// The operator as written in an expression.
    pub fn symbol(self) -> &'static str {
        match self {
            Operator::Equal => "=",
            Operator::NotEqual => "!=",
            Operator::Less => "<",
            Operator::LessOrEqual => "<=",
            Operator::Greater => ">",
            Operator::GreaterOrEqual => ">=",
            Operator::Contains => ":=",
        }
    }
}

/// The right-hand side of a comparison: a string or a number, with its
/// numeric reading computed once at parse time.
#[derive(Debug, Clone, PartialEq)]
pub struct Literal {
    text: String,
    quoted: bool,
    number: Option<f64>,
}

impl Literal {
    /// A quoted string value (its text without quotes or escapes).
    pub fn string(text: impl Into<String>) -> Self {
        let text = text.into();
        let number = parse_number(&text);
        Self { text, quoted: true, number }
    }

    /// An unquoted number such as `2`, `1024E6` or `-1.5e-3`; `None` if
    /// `text` is not a finite number.
    pub fn number(text: impl Into<String>) -> Option<Self> {
        let text = text.into();
        let number = parse_number(&text)?;
        Some(Self { text, quoted: false, number: Some(number) })
    }

    /// The value's text as written (unescaped for strings).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether it was written as a quoted string.
    pub fn is_quoted(&self) -> bool {
        self.quoted
    }

    /// Its numeric reading, if its text is a number (quoted or not).
    pub fn as_number(&self) -> Option<f64> {
        self.number
    }
}

/// Reads `text` as a finite decimal number (`12`, `-1.5`, `1024E6`, `.5`);
/// anything else, including `inf` and `NaN`, is not a number.
pub(crate) fn parse_number(text: &str) -> Option<f64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E')) {
        return None;
    }
    text.parse::<f64>().ok().filter(|number| number.is_finite())
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Or(members) => join(f, members, " or ", |member| matches!(member, Expr::Or(_))),
            Expr::And(members) => join(f, members, " and ", |member| matches!(member, Expr::Or(_) | Expr::And(_))),
            Expr::Not(inner) => {
                f.write_str("not ")?;
                write_member(f, inner, matches!(**inner, Expr::Or(_) | Expr::And(_)))
            }
            Expr::Compare(comparison) => comparison.fmt(f),
        }
    }
}

fn join(f: &mut fmt::Formatter<'_>, members: &[Expr], separator: &str, needs_parens: fn(&Expr) -> bool) -> fmt::Result {
    for (index, member) in members.iter().enumerate() {
        if index > 0 {
            f.write_str(separator)?;
        }
        write_member(f, member, needs_parens(member))?;
    }
    Ok(())
}

fn write_member(f: &mut fmt::Formatter<'_>, member: &Expr, parens: bool) -> fmt::Result {
    if parens { write!(f, "({member})") } else { write!(f, "{member}") }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.operand, self.operator.symbol(), self.value)
    }
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operand::Tag(key) => write!(f, "tag:{key}"),
            Operand::Server(property) => write!(f, "server:{}", property.name()),
        }
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.quoted {
            return f.write_str(&self.text);
        }
        f.write_str("'")?;
        for (index, piece) in self.text.split('\'').enumerate() {
            if index > 0 {
                f.write_str("''")?;
            }
            f.write_str(piece)?;
        }
        f.write_str("'")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_decimal_and_finite() {
        assert_eq!(parse_number("1024E6"), Some(1.024e9));
        assert_eq!(parse_number("-1.5e-3"), Some(-0.0015));
        assert_eq!(parse_number(".5"), Some(0.5));
        assert_eq!(parse_number("+2"), Some(2.0));
        for not_a_number in ["", "inf", "NaN", "1e999", "0x10", "1_000", " 1", "e5", "1e", "--1"] {
            assert_eq!(parse_number(not_a_number), None, "{not_a_number:?}");
        }
    }

    #[test]
    fn strings_print_with_doubled_quotes() {
        assert_eq!(Literal::string("o'neil").to_string(), "'o''neil'");
        assert_eq!(Literal::number("1024E6").unwrap().to_string(), "1024E6");
        assert!(Literal::number("abc").is_none());
    }
}
