//! Evaluates an [`Expr`] against one server without allocating.
//!
//! Numbers render into a small stack buffer when a comparison needs their
//! text (`:=`, or a string comparison against a non-numeric value).

use std::{cmp::Ordering, fmt::Write};

use switchboard_proto::ServerRecord;

use super::{
    ast::{Comparison, Expr, Literal, Operand, Operator, parse_number},
    properties::Value,
};

/// Whether `server` satisfies `expression`.
pub(crate) fn evaluate(expression: &Expr, server: &ServerRecord) -> bool {
    match expression {
        Expr::Or(members) => members.iter().any(|member| evaluate(member, server)),
        Expr::And(members) => members.iter().all(|member| evaluate(member, server)),
        Expr::Not(inner) => !evaluate(inner, server),
        Expr::Compare(comparison) => compare(comparison, server),
    }
}

fn compare(comparison: &Comparison, server: &ServerRecord) -> bool {
    let value = match &comparison.operand {
        Operand::Tag(key) => server.tags.iter().find(|tag| &tag.key == key).map(|tag| Value::Text(&tag.value)),
        Operand::Server(property) => property.value(server),
    };
    // A tag or property the server does not report fails every comparison.
    value.is_some_and(|value| holds(value, comparison.operator, &comparison.value))
}

fn holds(value: Value<'_>, operator: Operator, literal: &Literal) -> bool {
    if operator == Operator::Contains {
        return with_text(value, |text| text.contains(literal.text()));
    }
    let number = match value {
        Value::Text(text) => parse_number(text),
        Value::Integer(integer) => Some(integer as f64),
        // A load average compares as the shortest decimal the API shows for it
        // (`0.1`, not 0.10000000149 as a plain widening would give); NaN and
        // infinities print as `NaN`/`inf`, which are not numbers.
        Value::Float(_) => with_text(value, parse_number),
    };
    let ordering = match (number, literal.as_number()) {
        (Some(left), Some(right)) => left.partial_cmp(&right),
        _ => with_text(value, |text| Some(text.cmp(literal.text()))),
    };
    ordering.is_some_and(|ordering| match operator {
        Operator::Equal => ordering == Ordering::Equal,
        Operator::NotEqual => ordering != Ordering::Equal,
        Operator::Less => ordering == Ordering::Less,
        Operator::LessOrEqual => ordering != Ordering::Greater,
        Operator::Greater => ordering == Ordering::Greater,
        Operator::GreaterOrEqual => ordering != Ordering::Less,
        Operator::Contains => unreachable!("handled above"),
    })
}

/// Calls `use_text` with the value's text as DescribeServers would show it.
fn with_text<T: Default>(value: Value<'_>, use_text: impl FnOnce(&str) -> T) -> T {
    let mut buffer = StackText::default();
    let rendered = match value {
        Value::Text(text) => return use_text(text),
        Value::Integer(integer) => write!(buffer, "{integer}"),
        Value::Float(float) => write!(buffer, "{float}"),
    };
    // An f32 prints in at most 48 characters, so this never fails in practice.
    if rendered.is_err() { T::default() } else { use_text(buffer.as_str()) }
}

/// A fixed buffer a number is formatted into.
struct StackText {
    bytes: [u8; 64],
    length: usize,
}

impl Default for StackText {
    fn default() -> Self {
        Self { bytes: [0; 64], length: 0 }
    }
}

impl StackText {
    fn as_str(&self) -> &str {
        // Only whole `&str`s are ever copied in.
        std::str::from_utf8(&self.bytes[..self.length]).unwrap_or_default()
    }
}

impl Write for StackText {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        let end = self.length + text.len();
        let slot = self.bytes.get_mut(self.length..end).ok_or(std::fmt::Error)?;
        slot.copy_from_slice(text.as_bytes());
        self.length = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_render_like_display() {
        for value in
            [Value::Integer(u64::MAX), Value::Float(f32::MAX), Value::Float(-f32::MIN_POSITIVE), Value::Float(1e-45)]
        {
            let expected = match value {
                Value::Integer(integer) => integer.to_string(),
                Value::Float(float) => float.to_string(),
                Value::Text(_) => unreachable!(),
            };
            assert_eq!(with_text(value, str::to_owned), expected);
        }
    }
}
