//! `grep`: every line matching a regex, keyed by its input file, in file order.

use super::{App, Values};
use crate::error::{Error, Result};

/// Distributed grep.
pub struct Grep {
    re: regex::bytes::Regex,
}

impl Grep {
    /// A grep for `pattern` (Rust regex syntax, matched against bytes).
    pub fn new(pattern: &str) -> Result<Self> {
        let re = regex::bytes::Regex::new(pattern).map_err(|e| {
            Error::InvalidSpec(format!(
                "GREP_PATTERN {pattern:?} is not a valid regex: {e}"
            ))
        })?;
        Ok(Grep { re })
    }
}

impl App for Grep {
    fn map(&self, input: &[u8], line: &[u8], emit: &mut dyn FnMut(&[u8], &[u8])) {
        if self.re.is_match(line) {
            emit(input, line);
        }
    }

    fn reduce(&self, key: &[u8], values: &mut dyn Values, emit: &mut dyn FnMut(&[u8], &[u8])) {
        while let Some(line) = values.next_value() {
            emit(key, line);
        }
    }
}
