//! Splits an expression into tokens, each with its 1-based column.
//!
//! A *word* is a run of letters, digits and `_ - . : / +`: a keyword
//! (`and`/`or`/`not`, any case), an operand (`tag:KEY`, `server:NAME`, a bare
//! key) or an unquoted number; the parser decides which by position. A word
//! stops before `:=` so `tag:color:='red'` reads as `tag:color := 'red'`.

use super::{ParseError, ast::Operator};

/// One token and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token<'a> {
    /// What the token is.
    pub kind: TokenKind<'a>,
    /// 1-based column (in characters) of its first character.
    pub column: usize,
}

/// The kinds of token.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokenKind<'a> {
    /// A word that is not a keyword.
    Word(&'a str),
    /// A quoted string, unescaped; `raw` is the source between the quotes.
    Quoted { text: String, raw: &'a str, double: bool },
    /// A comparison operator.
    Operator(Operator),
    /// `(`
    Open,
    /// `)`
    Close,
    /// `and`
    And,
    /// `or`
    Or,
    /// `not`
    Not,
    /// The end of the input.
    End,
}

impl TokenKind<'_> {
    /// How an error message names the token ("found ...").
    pub fn describe(&self) -> String {
        match self {
            TokenKind::Word(word) => format!("'{word}'"),
            TokenKind::Quoted { raw, double: false, .. } => format!("the string '{raw}'"),
            TokenKind::Quoted { raw, double: true, .. } => format!("the string \"{raw}\""),
            TokenKind::Operator(operator) => format!("'{}'", operator.symbol()),
            TokenKind::Open => "'('".into(),
            TokenKind::Close => "')'".into(),
            TokenKind::And => "'and'".into(),
            TokenKind::Or => "'or'".into(),
            TokenKind::Not => "'not'".into(),
            TokenKind::End => "end of input".into(),
        }
    }
}

/// Whether `c` may appear in a word.
pub(crate) fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/' | '+')
}

/// Tokenizes `source`, whose first character is at column `first_column`.
/// The last token is always [`TokenKind::End`].
pub(crate) fn tokenize(source: &str, first_column: usize) -> Result<Vec<Token<'_>>, ParseError> {
    let mut tokens = Vec::new();
    // (byte offset, column) of every character, plus the end.
    let positions: Vec<(usize, usize)> = source
        .char_indices()
        .enumerate()
        .map(|(index, (offset, _))| (offset, first_column + index))
        .chain(std::iter::once((source.len(), first_column + source.chars().count())))
        .collect();
    let chars: Vec<char> = source.chars().collect();
    let mut index = 0;
    while index < chars.len() {
        let c = chars[index];
        let column = positions[index].1;
        let next = chars.get(index + 1).copied();
        let (kind, length) = match c {
            c if c.is_whitespace() => {
                index += 1;
                continue;
            }
            '(' => (TokenKind::Open, 1),
            ')' => (TokenKind::Close, 1),
            '=' if next == Some('=') => {
                return Err(ParseError::at(column, "'==' is not an operator; use '=' to test equality"));
            }
            '=' => (TokenKind::Operator(Operator::Equal), 1),
            '!' if next == Some('=') => (TokenKind::Operator(Operator::NotEqual), 2),
            '<' if next == Some('=') => (TokenKind::Operator(Operator::LessOrEqual), 2),
            '<' if next == Some('>') => return Err(ParseError::at(column, "'<>' is not an operator; use '!='")),
            '<' => (TokenKind::Operator(Operator::Less), 1),
            '>' if next == Some('=') => (TokenKind::Operator(Operator::GreaterOrEqual), 2),
            '>' => (TokenKind::Operator(Operator::Greater), 1),
            ':' if next == Some('=') => (TokenKind::Operator(Operator::Contains), 2),
            '\'' | '"' => {
                let (text, end) = quoted(&chars, index).ok_or_else(|| {
                    ParseError::at(
                        column,
                        format!("unterminated string: add the closing {c} (write {c}{c} for a {c} inside it)"),
                    )
                })?;
                let raw = &source[positions[index + 1].0..positions[end - 1].0];
                (TokenKind::Quoted { text, raw, double: c == '"' }, end - index)
            }
            c if is_word_char(c) => {
                let mut end = index;
                while end < chars.len()
                    && is_word_char(chars[end])
                    && !(chars[end] == ':' && chars.get(end + 1) == Some(&'='))
                {
                    end += 1;
                }
                let word = &source[positions[index].0..positions[end].0];
                (keyword(word).unwrap_or(TokenKind::Word(word)), end - index)
            }
            other => return Err(ParseError::at(column, unexpected(other))),
        };
        tokens.push(Token { kind, column });
        index += length;
    }
    tokens.push(Token { kind: TokenKind::End, column: positions[chars.len()].1 });
    Ok(tokens)
}

fn keyword(word: &str) -> Option<TokenKind<'static>> {
    [("and", TokenKind::And), ("or", TokenKind::Or), ("not", TokenKind::Not)]
        .into_iter()
        .find(|(name, _)| word.eq_ignore_ascii_case(name))
        .map(|(_, kind)| kind)
}

/// Reads a string opened at `chars[start]`; returns its text and the index
/// just past the closing quote. A doubled quote stands for one quote.
fn quoted(chars: &[char], start: usize) -> Option<(String, usize)> {
    let quote = chars[start];
    let mut text = String::new();
    let mut index = start + 1;
    while index < chars.len() {
        if chars[index] != quote {
            text.push(chars[index]);
            index += 1;
        } else if chars.get(index + 1) == Some(&quote) {
            text.push(quote);
            index += 2;
        } else {
            return Some((text, index + 1));
        }
    }
    None
}

fn unexpected(c: char) -> String {
    match c {
        '!' => "unexpected character '!'; use 'not' to negate or '!=' to compare".into(),
        '&' => "unexpected character '&'; use 'and'".into(),
        '|' => "unexpected character '|'; use 'or'".into(),
        ':' => "unexpected character ':'; did you mean ':=' (contains)?".into(),
        c if c.is_control() => format!("unexpected control character U+{:04X}", u32::from(c)),
        c => format!("unexpected character '{c}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(source: &str) -> Vec<TokenKind<'_>> {
        tokenize(source, 1).unwrap().into_iter().map(|token| token.kind).collect()
    }

    #[test]
    fn words_operators_and_columns() {
        let tokens = tokenize("tag:color:='r''ed' AND (x>=1e3)", 1).unwrap();
        let columns: Vec<_> = tokens.iter().map(|token| token.column).collect();
        assert_eq!(columns, [1, 10, 12, 20, 24, 25, 26, 28, 31, 32]);
        assert_eq!(tokens[0].kind, TokenKind::Word("tag:color"));
        assert_eq!(tokens[1].kind, TokenKind::Operator(Operator::Contains));
        assert_eq!(tokens[2].kind, TokenKind::Quoted { text: "r'ed".into(), raw: "r''ed", double: false });
        assert_eq!(tokens[3].kind, TokenKind::And);
        assert_eq!(tokens[7].kind, TokenKind::Word("1e3"));
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let tokens = tokenize("é = 'ü' x", 1).unwrap();
        assert_eq!(tokens.iter().map(|token| token.column).collect::<Vec<_>>(), [1, 3, 5, 9, 10]);
    }

    #[test]
    fn double_quotes_are_strings_too() {
        assert_eq!(kinds("\"a\"\"b\"")[0], TokenKind::Quoted { text: "a\"b".into(), raw: "a\"\"b", double: true });
    }

    #[test]
    fn errors_name_the_column() {
        let error = |source| tokenize(source, 1).unwrap_err().to_string();
        assert_eq!(
            error("a = 'x"),
            "requirements: column 5: unterminated string: add the closing ' (write '' for a ' inside it)"
        );
        assert_eq!(error("a == 'x'"), "requirements: column 3: '==' is not an operator; use '=' to test equality");
        assert_eq!(error("a = 'x' && b"), "requirements: column 9: unexpected character '&'; use 'and'");
    }
}
