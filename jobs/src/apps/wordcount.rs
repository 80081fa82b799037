//! `wordcount`: counts words (maximal runs of non-`isspace` bytes, as `wc -w`).

use super::{sum_values, words, App, Values};

/// Word count, with a summing combiner.
pub struct WordCount;

impl App for WordCount {
    fn map(&self, _input: &[u8], line: &[u8], emit: &mut dyn FnMut(&[u8], &[u8])) {
        for w in words(line) {
            emit(w, b"1");
        }
    }

    fn reduce(&self, key: &[u8], values: &mut dyn Values, emit: &mut dyn FnMut(&[u8], &[u8])) {
        let n = sum_values(values);
        emit(key, n.to_string().as_bytes());
    }

    fn has_combiner(&self) -> bool {
        true
    }

    fn combiner_sums(&self) -> bool {
        true
    }

    fn combine(&self, _key: &[u8], values: &mut dyn Values, emit: &mut dyn FnMut(&[u8])) {
        emit(sum_values(values).to_string().as_bytes());
    }
}
