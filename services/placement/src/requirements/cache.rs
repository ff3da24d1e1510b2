//! A small least-recently-used cache of compiled expressions, keyed by text.
//!
//! Placement sees the same few expressions again and again (one per client
//! workload), so each is parsed once per process. A std `Mutex` guards it: the
//! lock is held only for a map lookup or insert, never across an `.await` or
//! a parse. Eviction scans for the oldest entry, which is cheap at this size
//! and only happens on a miss.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use super::ast::Expr;

/// Expressions kept by the process-wide cache.
pub const CAPACITY: usize = 512;

/// A bounded text → compiled expression map.
#[derive(Debug)]
pub(crate) struct Cache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<Box<str>, Entry>,
    clock: u64,
}

#[derive(Debug)]
struct Entry {
    expression: Arc<Expr>,
    last_used: u64,
}

impl Cache {
    /// An empty cache holding at most `capacity` expressions.
    pub(crate) fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), inner: Mutex::default() }
    }

    /// The cached expression for `text`, marking it recently used.
    pub(crate) fn get(&self, text: &str) -> Option<Arc<Expr>> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.clock += 1;
        let now = inner.clock;
        let entry = inner.entries.get_mut(text)?;
        entry.last_used = now;
        Some(entry.expression.clone())
    }

    /// Stores `expression` for `text`, evicting the least recently used
    /// entry when full; returns the stored value (an earlier one if another
    /// caller raced us to it, so equal texts share one tree).
    pub(crate) fn insert(&self, text: &str, expression: Arc<Expr>) -> Arc<Expr> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.clock += 1;
        let now = inner.clock;
        if let Some(entry) = inner.entries.get_mut(text) {
            entry.last_used = now;
            return entry.expression.clone();
        }
        if inner.entries.len() >= self.capacity {
            let oldest = inner.entries.iter().min_by_key(|(_, entry)| entry.last_used).map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                inner.entries.remove(&oldest);
            }
        }
        inner.entries.insert(text.into(), Entry { expression: expression.clone(), last_used: now });
        expression
    }

    /// How many expressions are cached.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requirements::parse_expression;

    fn expression(text: &str) -> Arc<Expr> {
        Arc::new(parse_expression(text).unwrap().unwrap())
    }

    #[test]
    fn evicts_the_least_recently_used() {
        let cache = Cache::new(2);
        cache.insert("a = '1'", expression("a = '1'"));
        cache.insert("b = '2'", expression("b = '2'"));
        assert!(cache.get("a = '1'").is_some());
        cache.insert("c = '3'", expression("c = '3'"));
        assert_eq!(cache.len(), 2);
        assert!(cache.get("b = '2'").is_none(), "b was the least recently used");
        assert!(cache.get("a = '1'").is_some());
        assert!(cache.get("c = '3'").is_some());
    }

    #[test]
    fn a_second_insert_keeps_the_first_tree() {
        let cache = Cache::new(4);
        let first = cache.insert("a = '1'", expression("a = '1'"));
        let second = cache.insert("a = '1'", expression("a = '1'"));
        assert!(Arc::ptr_eq(&first, &second));
        assert!(Arc::ptr_eq(&first, &cache.get("a = '1'").unwrap()));
    }
}
