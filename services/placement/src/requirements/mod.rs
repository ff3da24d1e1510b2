//! The requirements language of `CreateSessions` (`Requirements` field):
//! which servers a session may be placed on.
//!
//! # Examples (from the Developer Guide and the API definition)
//!
//! ```text
//! tag:color = 'pink' and (server:Host.Os.Family = 'windows' or tag:color := 'red')
//! server:Host.Aws.Ec2InstanceType := 't2' and server:Host.CpuInfo.NumberOfCpus >= 2
//! server:Host.Memory.TotalBytes > 1024E6
//! ram_gb = '4' and software='my software'
//! irish_name='o''neil'
//! ```
//!
//! # Grammar
//!
//! ```text
//! expression := or                                  (empty or blank: matches every server)
//! or         := and ( "or" and )*
//! and        := unary ( "and" unary )*
//! unary      := "not" unary | "(" or ")" | comparison
//! comparison := operand operator value
//! operand    := "tag:" KEY | "server:" PROPERTY | KEY
//! operator   := "=" | "!=" | "<" | "<=" | ">" | ">=" | ":="
//! value      := 'text' | "text" | NUMBER
//! KEY        := one or more letters, digits, _ - . : / +
//! NUMBER     := decimal with optional sign, fraction and exponent: 2, -1.5, .5, 1024E6, 1.5e-3
//! ```
//!
//! - Precedence, tightest first: `not`, then `and`, then `or`; parentheses
//!   group. `not a = '1' and b = '2' or c = '3'` is `((not a = '1') and b = '2') or c = '3'`.
//! - Keywords `and`, `or`, `not` and the prefixes `tag:` and `server:` are
//!   case-insensitive. A bare key is a tag key (the API YAML's legacy form
//!   `ram_gb = '4'`); a key that is a keyword needs the prefix (`tag:and`).
//! - `PROPERTY` is one of the guide's 25 names ([`Property::ALL`]), matched
//!   case-insensitively, so the API's JSON spelling `Host.Aws.EC2InstanceType`
//!   works too; `Host.CpuInfo.PhysicalCorePerCpu` (the guide's other spelling)
//!   is an alias of `Host.CpuInfo.PhysicalCoresPerCpu`.
//! - Strings take single or double quotes; a doubled quote inside stands for
//!   one (`'o''neil'`, `"say ""hi"""`). An expression that is nothing but one
//!   double-quoted string (the guide prints its examples that way) is read as
//!   the expression inside the quotes.
//! - The value is always on the right: `2 < server:Host.CpuInfo.NumberOfCpus`
//!   is an error, and so is an unquoted word (`os = linux`: quote it).
//!
//! # Semantics
//!
//! - A comparison reads the operand from the server: a tag's value (the first
//!   tag with that key), or a property as DescribeServers reports it.
//! - **Numbers or text.** When both the operand's value and the literal read
//!   as finite decimal numbers (quoted or not: `'4'` is a number), they are
//!   compared as numbers (`'4.0' = 4`, `'10' > '9'`). Otherwise they are
//!   compared as text, case-sensitively, by Unicode code point
//!   (`'b' > 'a'`, `'10' < '9x'`). Load averages compare as the decimal
//!   DescribeServers shows (`0.1`, not the float's exact binary value). A version such as `'1.10'` reads as the
//!   number 1.1, so compare versions with `=`/`:=` on their exact text.
//! - **`:=` (contains)** is always textual: true when the operand's text
//!   contains the literal's text (`tag:color := 'red'` matches `dark-red`);
//!   numeric properties are tested on their decimal text.
//! - **Missing values.** A tag the server does not carry, a property it does
//!   not report (no host telemetry, `Host.Aws.*` on a host outside EC2, an
//!   empty text such as `Host.Os.KernelVersion` on Windows) makes *every*
//!   comparison on it false, including `!=`. `not` inverts that, so
//!   `not tag:gpu = 'a100'` selects servers without the tag as well, while
//!   `tag:gpu != 'a100'` selects only servers that have a different `gpu`.
//!
//! # Errors and limits
//!
//! An invalid expression is rejected with a message naming the 1-based column
//! (in characters) and what was expected, for example
//! `requirements: column 8: expected a value (a quoted string or a number) after '=', found end of input`.
//! These texts are the item's `FailureReason`. Expressions are limited to
//! [`MAX_CHARS`] characters and [`MAX_DEPTH`] nested `(`/`not`.
//!
//! # Cost
//!
//! [`Requirements::parse`] compiles each distinct text once per process and
//! keeps it in a bounded LRU cache ([`CAPACITY`] entries). Properties compile to
//! an enum accessor and literals to pre-parsed numbers, so
//! [`Requirements::matches`] does not allocate.

mod ast;
mod cache;
mod eval;
mod lexer;
mod parser;
mod properties;

use std::sync::{Arc, LazyLock};

use switchboard_proto::ServerRecord;

pub use ast::{Comparison, Expr, Literal, Operand, Operator};
pub use cache::CAPACITY;
pub use properties::Property;

/// Longest accepted expression, in characters.
pub const MAX_CHARS: usize = 4096;
/// Deepest accepted nesting of `(` and `not`.
pub const MAX_DEPTH: usize = 32;

static CACHE: LazyLock<cache::Cache> = LazyLock::new(|| cache::Cache::new(CAPACITY));

/// Why an expression was rejected; `Display` is the API's FailureReason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("requirements: {}{message}", column.map(|column| format!("column {column}: ")).unwrap_or_default())]
pub struct ParseError {
    /// 1-based character column the problem was found at; `None` when it is
    /// about the whole expression (its length).
    pub column: Option<usize>,
    /// What was expected and what was found.
    pub message: String,
}

impl ParseError {
    pub(crate) fn at(column: usize, message: impl Into<String>) -> Self {
        Self { column: Some(column), message: message.into() }
    }
}

/// Parses `text` without the cache; `Ok(None)` for an empty expression.
pub fn parse_expression(text: &str) -> Result<Option<Expr>, ParseError> {
    let length = text.chars().count();
    if length > MAX_CHARS {
        let message = format!("the expression is {length} characters long; at most {MAX_CHARS} are accepted");
        return Err(ParseError { column: None, message });
    }
    parser::parse(text, 1)
}

/// A compiled requirements expression; the default matches every server.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Requirements {
    /// `None` for an empty expression. Shared with the cache.
    expression: Option<Arc<Expr>>,
}

impl Requirements {
    /// Parses (or fetches from the cache) an expression; `Err` is the API's
    /// FailureReason.
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::compile(text).map_err(|error| error.to_string())
    }

    /// Like [`Requirements::parse`], with the structured error.
    pub fn compile(text: &str) -> Result<Self, ParseError> {
        if let Some(expression) = CACHE.get(text) {
            return Ok(Self { expression: Some(expression) });
        }
        let Some(expression) = parse_expression(text)? else {
            return Ok(Self::default());
        };
        Ok(Self { expression: Some(CACHE.insert(text, Arc::new(expression))) })
    }

    /// Whether `server` satisfies the expression.
    pub fn matches(&self, server: &ServerRecord) -> bool {
        self.expression.as_deref().is_none_or(|expression| eval::evaluate(expression, server))
    }

    /// The parsed expression; `None` when it is empty.
    pub fn expression(&self) -> Option<&Expr> {
        self.expression.as_deref()
    }

    /// The clauses explanations name: the members of a top-level `and`, or
    /// the whole expression. Empty for an empty expression.
    pub fn clauses(&self) -> &[Expr] {
        match self.expression.as_deref() {
            None => &[],
            Some(Expr::And(members)) => members,
            Some(expression) => std::slice::from_ref(expression),
        }
    }

    /// The index (into [`Requirements::clauses`]) of the first clause
    /// `server` fails; `None` when it matches. Evaluates like
    /// [`Requirements::matches`], without allocating.
    pub fn failing_clause(&self, server: &ServerRecord) -> Option<usize> {
        self.clauses().iter().position(|clause| !eval::evaluate(clause, server))
    }

    /// The canonical text of the whole expression (empty when it is empty):
    /// equal for texts that differ only in spelling, spacing or quoting.
    pub fn canonical(&self) -> String {
        self.expression.as_deref().map(ToString::to_string).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
