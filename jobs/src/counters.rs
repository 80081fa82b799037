//! Job counters: the engine's built-in ones (group `shoal`) and those a streaming task reports
//! with `reporter:counter:GROUP,NAME,AMOUNT` on stderr. An attempt's counters are added to
//! the job only when that attempt succeeds, so retries never double-count.
//!
//! The invariant: a counter is data a task wrote, so nothing here can panic or wrap. Names
//! are bounded ([`MAX_GROUP_BYTES`], [`MAX_NAME_BYTES`]) and so is their number
//! ([`MAX_COUNTERS`], [`MAX_TASK_COUNTERS`]); sums saturate at `i64`'s bounds and say so
//! ([`Added::Saturated`]), so the job's view can name the counters that did. The `shoal`
//! group is the engine's: a task cannot report into it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The built-in counter group.
pub const GROUP: &str = "shoal";

/// Longest group name, in bytes (Hadoop's `mapreduce.job.counters.group.name.max`).
pub const MAX_GROUP_BYTES: usize = 128;
/// Longest counter name, in bytes (Hadoop's `mapreduce.job.counters.counter.name.max`).
pub const MAX_NAME_BYTES: usize = 64;
/// Most counters a task may report of its own (Hadoop's `mapreduce.job.counters.max`).
pub const MAX_TASK_COUNTERS: usize = 120;
/// Most counters one set holds: a job's, or an attempt's report, the engine's included.
pub const MAX_COUNTERS: usize = 256;

/// What adding to a counter did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// The counter holds the sum.
    Added,
    /// The sum was past `i64`'s range: the counter stays at the bound it passed.
    Saturated,
    /// Not added (why, in [`Refused`]).
    Refused(Refused),
}

/// Why a counter was not added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// An empty group or name.
    #[error("a counter needs a group and a name")]
    Empty,
    /// A group name past [`MAX_GROUP_BYTES`].
    #[error("a counter group is at most {MAX_GROUP_BYTES} bytes")]
    LongGroup,
    /// A counter name past [`MAX_NAME_BYTES`].
    #[error("a counter name is at most {MAX_NAME_BYTES} bytes")]
    LongName,
    /// A new counter where the set is full.
    #[error("at most {MAX_TASK_COUNTERS} counters of a task's own, {MAX_COUNTERS} in all")]
    TooMany,
    /// A task reporting into the engine's group.
    #[error("the `shoal` group is the engine's; report into a group of your own")]
    Reserved,
    /// An amount that is not a whole number in `i64`'s range.
    #[error("the amount is not a whole number from -9223372036854775808 to 9223372036854775807")]
    Amount,
}

/// Counters by group, then name. Ordered maps: the same counters print the same way.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters(pub BTreeMap<String, BTreeMap<String, i64>>);

impl Counters {
    /// Add `amount` to `group.name`, within the bounds: a new counter past
    /// [`MAX_COUNTERS`] or with a name too long is refused, a sum past `i64` saturates.
    pub fn add(&mut self, group: &str, name: &str, amount: i64) -> Added {
        if let Some(v) = self.0.get_mut(group).and_then(|g| g.get_mut(name)) {
            return match v.checked_add(amount) {
                Some(sum) => {
                    *v = sum;
                    Added::Added
                }
                None => {
                    *v = v.saturating_add(amount);
                    Added::Saturated
                }
            };
        }
        if let Err(why) = check_names(group, name) {
            return Added::Refused(why);
        }
        if self.len() >= MAX_COUNTERS {
            return Added::Refused(Refused::TooMany);
        }
        self.0
            .entry(group.to_owned())
            .or_default()
            .insert(name.to_owned(), amount);
        Added::Added
    }

    /// How many counters there are.
    pub fn len(&self) -> usize {
        self.0.values().map(BTreeMap::len).sum()
    }

    /// No counter at all.
    pub fn is_empty(&self) -> bool {
        self.0.values().all(|g| g.is_empty())
    }

    /// Add a built-in counter (an amount past `i64::MAX` counts as `i64::MAX`).
    pub fn add_builtin(&mut self, name: &str, amount: u64) {
        self.add(GROUP, name, i64::try_from(amount).unwrap_or(i64::MAX));
    }

    /// One counter's value (0 when absent).
    pub fn get(&self, group: &str, name: &str) -> i64 {
        self.0
            .get(group)
            .and_then(|g| g.get(name))
            .copied()
            .unwrap_or(0)
    }

    /// Add every counter of `other`; the names (`group.name`) of those that saturated.
    /// Counters `other` may not hold (names too long, past the bound) are left out.
    pub fn merge(&mut self, other: &Counters) -> Vec<String> {
        self.add_each(other, |v| v)
    }

    /// Take back every counter of `other` (a task whose output was lost and will re-run);
    /// the names of those that saturated.
    pub fn unmerge(&mut self, other: &Counters) -> Vec<String> {
        self.add_each(other, i64::saturating_neg)
    }

    fn add_each(&mut self, other: &Counters, sign: impl Fn(i64) -> i64) -> Vec<String> {
        let mut saturated = Vec::new();
        for (group, names) in &other.0 {
            for (name, v) in names {
                if self.add(group, name, sign(*v)) == Added::Saturated {
                    saturated.push(format!("{group}.{name}"));
                }
            }
        }
        saturated
    }

    /// These counters within the bounds a replica holds any set to: counters with names
    /// too long, and those past [`MAX_COUNTERS`] in order, are left out. How a report from
    /// a member is taken where it is applied, so every replica keeps the same.
    pub fn bounded(mut self) -> Counters {
        let mut kept = 0usize;
        self.0.retain(|group, names| {
            names.retain(|name, _| {
                let ok = check_names(group, name).is_ok() && kept < MAX_COUNTERS;
                kept += usize::from(ok);
                ok
            });
            !names.is_empty()
        });
        self
    }

    /// Counters that are not the engine's (group `shoal`).
    fn own(&self) -> usize {
        self.0
            .iter()
            .filter(|(g, _)| g.as_str() != GROUP)
            .map(|(_, n)| n.len())
            .sum()
    }

    /// Parse a task's `reporter:counter:GROUP,NAME,AMOUNT` line (without the prefix) and add
    /// it. `Err` when the line is malformed or the counter is refused: the caller keeps the
    /// line as plain stderr with the reason.
    pub fn add_reported(&mut self, rest: &str) -> Result<Added, Refused> {
        let mut parts = rest.trim_end().splitn(3, ',');
        let (Some(group), Some(name), Some(amount)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(Refused::Empty);
        };
        let amount: i64 = amount.trim().parse().map_err(|_| Refused::Amount)?;
        check_names(group, name)?;
        if group == GROUP {
            return Err(Refused::Reserved);
        }
        let new = self.0.get(group).is_none_or(|g| !g.contains_key(name));
        if new && self.own() >= MAX_TASK_COUNTERS {
            return Err(Refused::TooMany);
        }
        match self.add(group, name, amount) {
            Added::Refused(why) => Err(why),
            added => Ok(added),
        }
    }
}

/// Whether `group.name` is a counter any set may hold.
fn check_names(group: &str, name: &str) -> Result<(), Refused> {
    if group.is_empty() || name.is_empty() {
        Err(Refused::Empty)
    } else if group.len() > MAX_GROUP_BYTES {
        Err(Refused::LongGroup)
    } else if name.len() > MAX_NAME_BYTES {
        Err(Refused::LongName)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_counters_sum_and_malformed_lines_are_refused() {
        let mut c = Counters::default();
        assert_eq!(c.add_reported("app,lines,3"), Ok(Added::Added));
        assert_eq!(c.add_reported("app,lines,4\n"), Ok(Added::Added));
        assert_eq!(c.add_reported("app,lines"), Err(Refused::Empty));
        assert_eq!(c.add_reported("app,lines,many"), Err(Refused::Amount));
        assert_eq!(c.add_reported(",lines,1"), Err(Refused::Empty));
        assert_eq!(c.add_reported("app,lines,-1"), Ok(Added::Added));
        assert_eq!(c.get("app", "lines"), 6);
    }

    #[test]
    fn a_task_cannot_write_the_engines_counters_or_long_or_endless_names() {
        let mut c = Counters::default();
        let max = i64::MAX;
        assert_eq!(
            c.add_reported(&format!("shoal,input_uploaded_bytes,{max}")),
            Err(Refused::Reserved)
        );
        assert_eq!(
            c.add_reported(&format!("app,{},1", "n".repeat(1 << 20))),
            Err(Refused::LongName)
        );
        assert_eq!(
            c.add_reported(&format!("{},n,1", "g".repeat(129))),
            Err(Refused::LongGroup)
        );
        for i in 0..MAX_TASK_COUNTERS {
            assert_eq!(c.add_reported(&format!("app,c{i},1")), Ok(Added::Added));
        }
        assert_eq!(c.add_reported("app,one-more,1"), Err(Refused::TooMany));
        assert_eq!(
            c.add_reported("app,c0,1"),
            Ok(Added::Added),
            "an old one still adds"
        );
        assert_eq!(c.get(GROUP, "input_uploaded_bytes"), 0);
        assert_eq!(c.len(), MAX_TASK_COUNTERS);
    }

    #[test]
    fn sums_saturate_and_say_so() {
        let mut c = Counters::default();
        assert_eq!(
            c.add_reported(&format!("app,big,{}", i64::MAX)),
            Ok(Added::Added)
        );
        assert_eq!(
            c.add_reported(&format!("app,big,{}", i64::MAX)),
            Ok(Added::Saturated)
        );
        assert_eq!(c.get("app", "big"), i64::MAX);
        let mut job = Counters::default();
        assert!(job.merge(&c).is_empty());
        assert_eq!(job.merge(&c), vec!["app.big".to_string()]);
        let mut low = Counters::default();
        low.add("app", "min", i64::MIN);
        assert_eq!(job.unmerge(&low), Vec::<String>::new());
        assert_eq!(job.get("app", "min"), i64::MAX, "-(i64::MIN) saturates");
        job.add_builtin("huge", u64::MAX);
        assert_eq!(job.get(GROUP, "huge"), i64::MAX);
    }

    #[test]
    fn a_report_is_bounded_the_same_way_on_every_replica() {
        let mut raw = Counters::default();
        raw.0
            .entry("g".repeat(500))
            .or_default()
            .insert("x".into(), 1);
        for i in 0..(MAX_COUNTERS + 50) {
            raw.0
                .entry("app".into())
                .or_default()
                .insert(format!("c{i:04}"), 1);
        }
        let kept = raw.clone().bounded();
        assert_eq!(kept.len(), MAX_COUNTERS);
        assert_eq!(kept, raw.bounded());
        assert!(kept.0.keys().all(|g| g.len() <= MAX_GROUP_BYTES));
    }
}
