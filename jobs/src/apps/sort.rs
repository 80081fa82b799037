//! `sort`: TeraSort-style total order. Each line is a key; sampled range partitioning puts
//! every key of part i before every key of part i+1, so the part files in order are sorted.

use super::{App, PartitionKind, Values};

/// Total-order sort of lines (bytewise), duplicates kept.
pub struct Sort;

impl App for Sort {
    fn map(&self, _input: &[u8], line: &[u8], emit: &mut dyn FnMut(&[u8], &[u8])) {
        emit(line, b"");
    }

    fn reduce(&self, key: &[u8], values: &mut dyn Values, emit: &mut dyn FnMut(&[u8], &[u8])) {
        while values.next_value().is_some() {
            emit(key, b"");
        }
    }

    fn partition_kind(&self) -> PartitionKind {
        PartitionKind::SampledRanges
    }
}
