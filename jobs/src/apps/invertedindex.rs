//! `invertedindex`: for each word, the sorted distinct list of input files it occurs in.

use std::collections::BTreeSet;

use super::{words, App, Values};

/// Inverted index, with a de-duplicating combiner.
pub struct InvertedIndex;

fn distinct(values: &mut dyn Values) -> BTreeSet<Vec<u8>> {
    let mut set = BTreeSet::new();
    while let Some(v) = values.next_value() {
        if !set.contains(v) {
            set.insert(v.to_vec());
        }
    }
    set
}

impl App for InvertedIndex {
    fn map(&self, input: &[u8], line: &[u8], emit: &mut dyn FnMut(&[u8], &[u8])) {
        for w in words(line) {
            emit(w, input);
        }
    }

    fn reduce(&self, key: &[u8], values: &mut dyn Values, emit: &mut dyn FnMut(&[u8], &[u8])) {
        let docs: Vec<Vec<u8>> = distinct(values).into_iter().collect();
        emit(key, &docs.join(&b","[..]));
    }

    fn has_combiner(&self) -> bool {
        true
    }

    fn combine(&self, _key: &[u8], values: &mut dyn Values, emit: &mut dyn FnMut(&[u8])) {
        for d in distinct(values) {
            emit(&d);
        }
    }
}
