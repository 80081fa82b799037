//! A user's own Rust MapReduce job, built outside Shoal and run through the streaming
//! contract: how many words of each length (in bytes) the input holds.
//!
//! ```sh
//! cargo build --example wordlengths
//! shoal run --input text/ --output out --file target/debug/examples/wordlengths \
//!   --map './wordlengths map' --reduce './wordlengths reduce' --combine './wordlengths combine'
//! ```

use shoal::prelude::{sum_values, words, App, Values};

struct WordLengths;

impl App for WordLengths {
    fn map(&self, _input: &[u8], line: &[u8], emit: &mut dyn FnMut(&[u8], &[u8])) {
        for w in words(line) {
            emit(format!("{:03}", w.len()).as_bytes(), b"1");
        }
    }

    fn reduce(&self, key: &[u8], values: &mut dyn Values, emit: &mut dyn FnMut(&[u8], &[u8])) {
        emit(key, sum_values(values).to_string().as_bytes());
    }

    fn has_combiner(&self) -> bool {
        true
    }

    fn combine(&self, _key: &[u8], values: &mut dyn Values, emit: &mut dyn FnMut(&[u8])) {
        emit(sum_values(values).to_string().as_bytes());
    }
}

fn main() -> std::process::ExitCode {
    shoal::streaming_main(&WordLengths)
}
