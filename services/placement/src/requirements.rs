//! A deliberately minimal `Requirements` matcher for the foundation.
//!
//! Supported: tag equality clauses joined by `and`, for example
//! `tag:os = 'linux' and gpu = 'a100'`. A key with or without the `tag:`
//! prefix names a server tag; values are single-quoted with `''` as the escape
//! for a quote (`name = 'o''neil'`). An empty expression matches every server.
//!
//! Anything else (`or`, `not`, parentheses, other operators, `server:`
//! properties, numbers) is refused with a FailureReason starting with
//! `unsupported requirements expression`, so a request is never placed on a
//! host that does not satisfy what the caller asked for. A later issue replaces
//! this module with the full requirements language of the developer guide.

use switchboard_proto::ServerRecord;

/// A parsed expression: every clause must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Requirements {
    /// `(tag key, value)` pairs that must all be present on the server.
    tags: Vec<(String, String)>,
}

impl Requirements {
    /// Parses an expression; `Err` is the API's FailureReason.
    pub fn parse(expression: &str) -> Result<Self, String> {
        let unsupported = |why: &str| format!("unsupported requirements expression: {why}");
        let mut tags = Vec::new();
        let mut rest = expression.trim();
        if rest.is_empty() {
            return Ok(Self { tags });
        }
        loop {
            let key_len = rest.find(|c: char| !is_key_char(c)).unwrap_or(rest.len());
            if key_len == 0 {
                return Err(unsupported(&format!("expected a tag key at \"{}\"", excerpt(rest))));
            }
            let raw_key = &rest[..key_len];
            if raw_key.contains(':') && !raw_key.starts_with("tag:") {
                return Err(unsupported(&format!("only tag equality is supported for now (\"{raw_key}\")")));
            }
            let key = raw_key.strip_prefix("tag:").unwrap_or(raw_key);
            if key.is_empty() {
                return Err(unsupported("empty tag key"));
            }
            rest = rest[key_len..].trim_start();
            rest = rest.strip_prefix('=').filter(|after| !after.starts_with('=')).ok_or_else(|| {
                unsupported(&format!("only '=' comparisons are supported (at \"{}\")", excerpt(rest)))
            })?;
            let (value, after) = quoted(rest.trim_start())
                .ok_or_else(|| unsupported(&format!("expected a single-quoted value after \"{raw_key} =\"")))?;
            tags.push((key.to_owned(), value));
            rest = after.trim_start();
            if rest.is_empty() {
                return Ok(Self { tags });
            }
            let word_len = rest.find(char::is_whitespace).unwrap_or(rest.len());
            if !rest[..word_len].eq_ignore_ascii_case("and") || word_len == rest.len() {
                return Err(unsupported(&format!("only 'and' may join clauses (at \"{}\")", excerpt(rest))));
            }
            rest = rest[word_len..].trim_start();
        }
    }

    /// Whether `server` carries every required tag.
    pub fn matches(&self, server: &ServerRecord) -> bool {
        self.tags.iter().all(|(key, value)| server.tags.iter().any(|tag| &tag.key == key && &tag.value == value))
    }
}

fn is_key_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/')
}

/// Reads `'...'` with `''` as an escaped quote; returns the value and the rest.
fn quoted(input: &str) -> Option<(String, &str)> {
    let mut chars = input.strip_prefix('\'')?.char_indices().peekable();
    let mut value = String::new();
    while let Some((index, c)) = chars.next() {
        if c != '\'' {
            value.push(c);
            continue;
        }
        if matches!(chars.peek(), Some((_, '\''))) {
            chars.next();
            value.push('\'');
            continue;
        }
        // `index` is relative to the text after the opening quote.
        return Some((value, &input[1 + index + 1..]));
    }
    None
}

fn excerpt(text: &str) -> String {
    text.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use switchboard_proto::KeyValue;

    use super::*;

    fn server(tags: &[(&str, &str)]) -> ServerRecord {
        ServerRecord {
            tags: tags.iter().map(|(k, v)| KeyValue { key: (*k).into(), value: (*v).into() }).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn empty_matches_everything() {
        assert!(Requirements::parse("  ").unwrap().matches(&server(&[])));
    }

    #[test]
    fn conjunction_of_tag_equalities() {
        let req = Requirements::parse("tag:os = 'linux' AND gpu='a100'").unwrap();
        assert!(req.matches(&server(&[("os", "linux"), ("gpu", "a100")])));
        assert!(!req.matches(&server(&[("os", "linux")])));
        assert!(!req.matches(&server(&[("os", "windows"), ("gpu", "a100")])));
    }

    #[test]
    fn quotes_escape_and_and_inside_values_is_literal() {
        let req = Requirements::parse("name = 'o''neil and co'").unwrap();
        assert!(req.matches(&server(&[("name", "o'neil and co")])));
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        for expression in [
            "os = 'a' or os = 'b'",
            "not os = 'a'",
            "(os = 'a')",
            "server:Host.CpuInfo.NumberOfCpus >= 2",
            "ram != '4'",
            "ram == '4'",
            "os = linux",
            "os = 'unterminated",
            "os = 'a' and",
            "os = 'a' os = 'b'",
        ] {
            let err = Requirements::parse(expression).unwrap_err();
            assert!(err.starts_with("unsupported requirements expression: "), "{expression}: {err}");
        }
    }
}
