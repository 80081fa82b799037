//! Job counters: the engine's built-in ones (group `shoal`) and those a streaming task reports
//! with `reporter:counter:GROUP,NAME,AMOUNT` on stderr. An attempt's counters are added to
//! the job only when that attempt succeeds, so retries never double-count.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The built-in counter group.
pub const GROUP: &str = "shoal";

/// Counters by group, then name. Ordered maps: the same counters print the same way.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters(pub BTreeMap<String, BTreeMap<String, i64>>);

impl Counters {
    /// Add `amount` to `group.name`.
    pub fn add(&mut self, group: &str, name: &str, amount: i64) {
        let g = match self.0.get_mut(group) {
            Some(g) => g,
            None => self.0.entry(group.to_owned()).or_default(),
        };
        match g.get_mut(name) {
            Some(v) => *v += amount,
            None => {
                g.insert(name.to_owned(), amount);
            }
        }
    }

    /// No counter at all.
    pub fn is_empty(&self) -> bool {
        self.0.values().all(|g| g.is_empty())
    }

    /// Add a built-in counter.
    pub fn add_builtin(&mut self, name: &str, amount: u64) {
        self.add(GROUP, name, amount as i64);
    }

    /// One counter's value (0 when absent).
    pub fn get(&self, group: &str, name: &str) -> i64 {
        self.0
            .get(group)
            .and_then(|g| g.get(name))
            .copied()
            .unwrap_or(0)
    }

    /// Add every counter of `other`.
    pub fn merge(&mut self, other: &Counters) {
        for (group, names) in &other.0 {
            for (name, v) in names {
                self.add(group, name, *v);
            }
        }
    }

    /// Take back every counter of `other` (a task whose output was lost and will re-run).
    pub fn unmerge(&mut self, other: &Counters) {
        for (group, names) in &other.0 {
            for (name, v) in names {
                self.add(group, name, -*v);
            }
        }
    }

    /// Parse a `reporter:counter:GROUP,NAME,AMOUNT` line (without the prefix).
    /// Returns false when the line is malformed; the caller keeps it as plain stderr.
    pub fn add_reported(&mut self, rest: &str) -> bool {
        let mut parts = rest.trim_end().splitn(3, ',');
        match (
            parts.next(),
            parts.next(),
            parts.next().map(|a| a.trim().parse::<i64>()),
        ) {
            (Some(g), Some(n), Some(Ok(amount))) if !g.is_empty() && !n.is_empty() => {
                self.add(g, n, amount);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_counters_sum_and_malformed_lines_are_refused() {
        let mut c = Counters::default();
        assert!(c.add_reported("app,lines,3"));
        assert!(c.add_reported("app,lines,4\n"));
        assert!(!c.add_reported("app,lines"));
        assert!(!c.add_reported("app,lines,many"));
        assert!(!c.add_reported(",lines,1"));
        assert_eq!(c.get("app", "lines"), 7);
    }
}
