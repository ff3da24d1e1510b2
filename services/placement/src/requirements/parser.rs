//! Recursive-descent parser: tokens to an [`Expr`].
//!
//! `or` and `and` chains are parsed with loops, so recursion only happens for
//! `(` and `not`; both count against [`MAX_DEPTH`].

use super::{
    MAX_DEPTH, ParseError,
    ast::{Comparison, Expr, Literal, Operand},
    lexer::{Token, TokenKind, tokenize},
    properties::Property,
};

/// Parses `source` (already known to be within the length limit) whose first
/// character is at `first_column`; `None` for an empty expression.
pub(crate) fn parse(source: &str, first_column: usize) -> Result<Option<Expr>, ParseError> {
    let tokens = tokenize(source, first_column)?;
    if let [Token { kind: TokenKind::Quoted { raw, double: true, .. }, column }, Token { kind: TokenKind::End, .. }] =
        tokens.as_slice()
        && !raw.contains('"')
    {
        // The guide prints its examples wrapped in double quotes; a copy of one
        // taken with its quotes is read as the expression inside them.
        return parse(raw, column + 1);
    }
    let mut parser = Parser { tokens, position: 0, depth: 0 };
    if parser.peek().kind == TokenKind::End {
        return Ok(None);
    }
    let expression = parser.or()?;
    let next = parser.peek();
    if next.kind != TokenKind::End {
        let message = match next.kind {
            TokenKind::Close => "unexpected ')' without a matching '('".to_owned(),
            _ => format!("expected 'and', 'or' or the end of the expression, found {}", next.kind.describe()),
        };
        return Err(ParseError::at(next.column, message));
    }
    Ok(Some(expression))
}

struct Parser<'a> {
    tokens: Vec<Token<'a>>,
    position: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> &Token<'a> {
        &self.tokens[self.position]
    }

    fn advance(&mut self) -> Token<'a> {
        let token = self.tokens[self.position].clone();
        if token.kind != TokenKind::End {
            self.position += 1;
        }
        token
    }

    /// or := and ('or' and)*
    fn or(&mut self) -> Result<Expr, ParseError> {
        let first = self.and()?;
        if self.peek().kind != TokenKind::Or {
            return Ok(first);
        }
        let mut members = vec![first];
        while self.peek().kind == TokenKind::Or {
            self.advance();
            members.push(self.and()?);
        }
        Ok(Expr::Or(members))
    }

    /// and := unary ('and' unary)*
    fn and(&mut self) -> Result<Expr, ParseError> {
        let first = self.unary()?;
        if self.peek().kind != TokenKind::And {
            return Ok(first);
        }
        let mut members = vec![first];
        while self.peek().kind == TokenKind::And {
            self.advance();
            members.push(self.unary()?);
        }
        Ok(Expr::And(members))
    }

    /// unary := 'not' unary | '(' or ')' | comparison
    fn unary(&mut self) -> Result<Expr, ParseError> {
        let token = self.peek().clone();
        match token.kind {
            TokenKind::Not => {
                self.advance();
                self.nested(token.column, |parser| Ok(Expr::Not(Box::new(parser.unary()?))))
            }
            TokenKind::Open => {
                self.advance();
                self.nested(token.column, |parser| {
                    let inner = parser.or()?;
                    let close = parser.advance();
                    if close.kind != TokenKind::Close {
                        let found = close.kind.describe();
                        let message =
                            format!("expected ')' to close the '(' at column {}, found {found}", token.column);
                        return Err(ParseError::at(close.column, message));
                    }
                    Ok(inner)
                })
            }
            TokenKind::Word(word) => {
                self.advance();
                self.comparison(word, token.column)
            }
            other => Err(ParseError::at(
                token.column,
                format!(
                    "expected a tag (tag:KEY), a server property (server:NAME), 'not' or '(', found {}",
                    other.describe()
                ),
            )),
        }
    }

    fn nested(
        &mut self,
        column: usize,
        parse: impl FnOnce(&mut Self) -> Result<Expr, ParseError>,
    ) -> Result<Expr, ParseError> {
        if self.depth == MAX_DEPTH {
            let message = format!("expression nests more than {MAX_DEPTH} levels of '(' and 'not'");
            return Err(ParseError::at(column, message));
        }
        self.depth += 1;
        let result = parse(self);
        self.depth -= 1;
        result
    }

    /// comparison := operand operator value
    fn comparison(&mut self, word: &str, column: usize) -> Result<Expr, ParseError> {
        let operand = operand(word, column)?;
        let token = self.advance();
        let TokenKind::Operator(operator) = token.kind else {
            let message = format!(
                "expected a comparison operator (=, !=, <, <=, >, >=, :=) after '{word}', found {}",
                token.kind.describe()
            );
            return Err(ParseError::at(token.column, message));
        };
        let token = self.advance();
        let value = match token.kind {
            TokenKind::Quoted { text, .. } => Literal::string(text),
            TokenKind::Word(word) => {
                Literal::number(word).ok_or_else(|| not_a_value(word, operator.symbol(), token.column))?
            }
            other => {
                let message = format!(
                    "expected a value (a quoted string or a number) after '{}', found {}",
                    operator.symbol(),
                    other.describe()
                );
                return Err(ParseError::at(token.column, message));
            }
        };
        Ok(Expr::Compare(Comparison { operand, operator, value }))
    }
}

/// Explains why an unquoted word after an operator is not a value.
fn not_a_value(word: &str, operator: &str, column: usize) -> ParseError {
    let message = if word.bytes().next().is_some_and(|b| b.is_ascii_digit() || b"+-.".contains(&b)) {
        format!("'{word}' is not a valid number; write a string in quotes: '{word}'")
    } else if strip_prefix_ignore_case(word, "tag:").or(strip_prefix_ignore_case(word, "server:")).is_some() {
        format!(
            "expected a value after '{operator}', found '{word}'; a comparison takes a tag or server property on \
             the left and a quoted string or a number on the right"
        )
    } else {
        format!("expected a value after '{operator}', found '{word}'; write a string in quotes: '{word}'")
    };
    ParseError::at(column, message)
}

/// Reads `tag:KEY`, `server:NAME` or a bare tag key.
fn operand(word: &str, column: usize) -> Result<Operand, ParseError> {
    if let Some(key) = strip_prefix_ignore_case(word, "tag:") {
        if key.is_empty() {
            return Err(ParseError::at(column, "expected a tag key after 'tag:'"));
        }
        return Ok(Operand::Tag(key.to_owned()));
    }
    if let Some(name) = strip_prefix_ignore_case(word, "server:") {
        return Property::lookup(name).map(Operand::Server).ok_or_else(|| {
            let known: Vec<_> = Property::ALL.iter().map(|property| property.name()).collect();
            let message = if name.is_empty() {
                format!("expected a property name after 'server:', one of: {}", known.join(", "))
            } else {
                format!("unknown server property '{name}'; known properties: {}", known.join(", "))
            };
            ParseError::at(column, message)
        });
    }
    if let Some((prefix, _)) = word.split_once(':') {
        let message =
            format!("unknown prefix '{prefix}:'; tag keys are prefixed by 'tag:' and server properties by 'server:'");
        return Err(ParseError::at(column, message));
    }
    Ok(Operand::Tag(word.to_owned()))
}

fn strip_prefix_ignore_case<'w>(word: &'w str, prefix: &str) -> Option<&'w str> {
    let head = word.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &word[prefix.len()..])
}
