//! What a simulated task computes, in memory: the job's native app over a split's lines,
//! partitioned, sorted and combined (a map), and the app's reducer over the map outputs of
//! one partition (a reduce).

use std::collections::BTreeMap;
use std::sync::Arc;

use shoal_jobs::apps::{App, Values};
use shoal_jobs::partition::Partitioner;

/// Values of one key, for the app's combine and reduce.
struct VecValues<'a> {
    values: &'a [Vec<u8>],
    next: usize,
}

impl Values for VecValues<'_> {
    fn next_value(&mut self) -> Option<&[u8]> {
        let v = self.values.get(self.next)?;
        self.next += 1;
        Some(v)
    }
}

/// Append one `key<TAB>value` line to `out`.
pub fn line(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    out.extend_from_slice(key);
    out.push(b'\t');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// A map task: the job's native app over every line of the split, its output partitioned
/// by the job's partitioner, sorted by key and folded by the app's combiner — one
/// `key\tvalue` list per partition.
pub fn map_split(
    app: &dyn App,
    input: &[u8],
    text: &[u8],
    partitioner: &Partitioner,
    r: u32,
) -> Vec<Vec<u8>> {
    let mut parts: Vec<BTreeMap<Vec<u8>, Vec<Vec<u8>>>> = vec![BTreeMap::new(); r as usize];
    for l in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        app.map(input, l, &mut |k, v| {
            let p = partitioner.partition(k, r) as usize;
            parts[p].entry(k.to_vec()).or_default().push(v.to_vec());
        });
    }
    parts
        .iter()
        .map(|groups| {
            let mut out = Vec::new();
            for (k, values) in groups {
                if app.has_combiner() {
                    let mut vs = VecValues { values, next: 0 };
                    app.combine(k, &mut vs, &mut |v| line(&mut out, k, v));
                } else {
                    for v in values {
                        line(&mut out, k, v);
                    }
                }
            }
            out
        })
        .collect()
}

/// A reduce task: merge every map's list for its partition, group by key (values in map
/// order) and run the app's reducer.
pub fn reduce(app: &dyn App, inputs: &[Arc<Vec<u8>>]) -> Vec<u8> {
    let mut groups: BTreeMap<Vec<u8>, Vec<Vec<u8>>> = BTreeMap::new();
    for input in inputs {
        for l in input.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let tab = l.iter().position(|&b| b == b'\t').unwrap_or(l.len());
            let value = l.get(tab + 1..).unwrap_or_default();
            groups
                .entry(l[..tab].to_vec())
                .or_default()
                .push(value.to_vec());
        }
    }
    let mut out = Vec::new();
    for (k, values) in &groups {
        let mut vs = VecValues { values, next: 0 };
        app.reduce(k, &mut vs, &mut |k, v| line(&mut out, k, v));
    }
    out
}
