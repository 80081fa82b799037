//! Property tests of the whole local pipeline — splits, map, partition, sort, spill, merge,
//! reduce — through `run_local`, with apps defined here. Tiny sort budgets force many spills
//! and must not change a byte of the output.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use shoal_jobs::apps::{sum_values, App, Values};
use shoal_jobs::partition::Partitioner;
use shoal_jobs::spec::{JobKind, JobSpec};
use shoal_jobs::split::{expand_inputs, plan_splits};

/// Identity: every input record comes out as it went in.
struct Echo;
impl App for Echo {
    fn map(&self, _: &[u8], line: &[u8], emit: &mut dyn FnMut(&[u8], &[u8])) {
        match line.iter().position(|&b| b == b'\t') {
            Some(i) => emit(&line[..i], &line[i + 1..]),
            None => emit(line, b""),
        }
    }
    fn reduce(&self, key: &[u8], values: &mut dyn Values, emit: &mut dyn FnMut(&[u8], &[u8])) {
        while let Some(v) = values.next_value() {
            emit(key, v);
        }
    }
}

/// Sums with a combiner, so the hash buffer and the folding merge are exercised.
struct Sum;
impl App for Sum {
    fn map(&self, a: &[u8], line: &[u8], emit: &mut dyn FnMut(&[u8], &[u8])) {
        Echo.map(a, line, emit)
    }
    fn reduce(&self, key: &[u8], values: &mut dyn Values, emit: &mut dyn FnMut(&[u8], &[u8])) {
        emit(key, sum_values(values).to_string().as_bytes());
    }
    fn has_combiner(&self) -> bool {
        true
    }
    fn combine(&self, _: &[u8], values: &mut dyn Values, emit: &mut dyn FnMut(&[u8])) {
        emit(sum_values(values).to_string().as_bytes());
    }
}

/// Run `app` over `lines` with R reducers and a sort budget; the part files' contents.
fn run(app: Arc<dyn App>, lines: &[(Vec<u8>, Vec<u8>)], r: u32, budget: u64) -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let mut text = Vec::new();
    for (k, v) in lines {
        text.extend_from_slice(k);
        text.push(b'\t');
        text.extend_from_slice(v);
        text.push(b'\n');
    }
    std::fs::write(&input, &text).unwrap();
    let mut spec = JobSpec::new(
        "t",
        vec![input.to_string_lossy().into_owned()],
        JobKind::App("wordcount".into()),
    );
    spec.reducers = r;
    spec.split_size = 1024;
    spec.sort_bytes = budget;
    let out = dir.path().join("out");
    run_with_app(&spec, app, &out);
    let parts: Vec<Vec<u8>> = (0..r)
        .map(|p| std::fs::read(out.join(format!("part-{p:05}"))).unwrap())
        .collect();
    assert!(out.join("_SUCCESS").exists());
    let left: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left.len(),
        r as usize + 1,
        "only part files and _SUCCESS remain: {left:?}"
    );
    parts
}

/// `run_local` looks apps up by name, so these test apps drive the same task units by hand:
/// every map task, then every reduce task over the map outputs in map order.
fn run_with_app(spec: &JobSpec, app: Arc<dyn App>, out: &Path) {
    use shoal_jobs::task::{self, TaskEnv};
    let files = expand_inputs(&spec.inputs).unwrap();
    let splits = plan_splits(&files, spec.split_size, spec.max_record_bytes).unwrap();
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let scratch = tempfile::tempdir().unwrap();
    let map_out = scratch.path().join("map-out");
    std::fs::create_dir_all(&map_out).unwrap();
    std::fs::create_dir_all(out).unwrap();
    let part = Partitioner::Hash;
    fn env<'a>(
        spec: &'a JobSpec,
        app: &Arc<dyn App>,
        part: &'a Partitioner,
        dir: &'a Path,
        cancel: &'a std::sync::atomic::AtomicBool,
    ) -> TaskEnv<'a> {
        std::fs::create_dir_all(dir).unwrap();
        TaskEnv {
            job_id: "t",
            spec,
            app: Some(app.clone()),
            partitioner: part,
            attempt: 1,
            dir,
            work: dir,
            cancel,
            progress: None,
            sandbox: None,
            user: None,
            job_dir: None,
            log: None,
        }
    }
    let mut sizes = Vec::new();
    for s in &splits {
        let d = scratch.path().join(format!("m{}", s.index));
        let out = task::map_output_file(&map_out, s.index);
        let o = task::run_map(&env(spec, &app, &part, &d, &cancel), s, &out).unwrap();
        sizes.push(o.sizes);
    }
    for p in 0..spec.reducers {
        let inputs = (0..splits.len() as u32)
            .map(|m| {
                let (offset, len) = task::partition_range(&sizes[m as usize], p);
                let f =
                    shoal_jobs::sort::open_range(&task::map_output_file(&map_out, m), offset, len);
                Box::new(f.unwrap()) as task::ReduceInput
            })
            .collect();
        let d = scratch.path().join(format!("r{p}"));
        task::run_reduce(
            &env(spec, &app, &part, &d, &cancel),
            p,
            inputs,
            &out.join(task::part_name(p)),
        )
        .unwrap();
    }
    std::fs::write(out.join("_SUCCESS"), b"").unwrap();
}

fn parse(part: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    part.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| match l.iter().position(|&b| b == b'\t') {
            Some(i) => (l[..i].to_vec(), l[i + 1..].to_vec()),
            None => (l.to_vec(), vec![]),
        })
        .collect()
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    // Few distinct keys (so groups are large), including non-UTF-8 and NUL bytes; some share
    // their first 8 bytes, so the sort's full-key comparison is exercised too.
    let short = proptest::collection::vec(
        prop_oneof![Just(b'a'), Just(b'b'), Just(0xffu8), Just(b' '), Just(0u8)],
        1..4,
    );
    prop_oneof![
        short.clone(),
        short.prop_map(|mut k| {
            let mut long = b"prefix-8".to_vec();
            long.append(&mut k);
            long
        }),
    ]
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![Just(b'x'), Just(b'\t'), Just(0x80u8), Just(b'1')],
        0..12,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn every_record_once_grouped_sorted_in_input_order(
        lines in proptest::collection::vec((key(), value()), 0..400),
        r in 1u32..5,
    ) {
        let big = run(Arc::new(Echo), &lines, r, 64 << 20);
        let tiny = run(Arc::new(Echo), &lines, r, 200);
        prop_assert_eq!(&big, &tiny, "a tiny sort budget changed the output");

        let mut seen_keys: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
        let mut out_values: BTreeMap<Vec<u8>, Vec<Vec<u8>>> = BTreeMap::new();
        for (p, part) in big.iter().enumerate() {
            let recs = parse(part);
            prop_assert!(recs.windows(2).all(|w| w[0].0 <= w[1].0), "part {} is not sorted", p);
            for (k, v) in recs {
                if let Some(&q) = seen_keys.get(&k) {
                    prop_assert_eq!(q, p, "a key is in two part files");
                }
                seen_keys.insert(k.clone(), p);
                out_values.entry(k).or_default().push(v);
            }
        }
        let mut in_values: BTreeMap<Vec<u8>, Vec<Vec<u8>>> = BTreeMap::new();
        for (k, v) in &lines {
            in_values.entry(k.clone()).or_default().push(v.clone());
        }
        prop_assert_eq!(out_values, in_values, "records lost, duplicated or reordered within a key");
    }

    #[test]
    fn combining_under_tiny_budgets_gives_the_same_sums(
        lines in proptest::collection::vec((key(), (0u32..1000).prop_map(|n| n.to_string().into_bytes())), 0..400),
        r in 1u32..4,
    ) {
        let big = run(Arc::new(Sum), &lines, r, 64 << 20);
        let tiny = run(Arc::new(Sum), &lines, r, 300);
        prop_assert_eq!(&big, &tiny);
        let mut want: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        for (k, v) in &lines {
            *want.entry(k.clone()).or_default() += std::str::from_utf8(v).unwrap().parse::<u64>().unwrap();
        }
        let got: BTreeMap<Vec<u8>, u64> = big
            .iter()
            .flat_map(|p| parse(p))
            .map(|(k, v)| (k, std::str::from_utf8(&v).unwrap().parse().unwrap()))
            .collect();
        prop_assert_eq!(got, want);
    }
}
