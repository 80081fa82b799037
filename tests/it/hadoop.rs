//! `shoal streaming`: the Hadoop Streaming documentation's own examples, their command lines
//! unchanged after `hadoop jar hadoop-streaming.jar`, on a three-node cluster; each output
//! checked against the documented result or a Python reference. And what it refuses, by name.

use std::path::Path;
use std::process::Output;

use crate::common;
use crate::common::cluster::*;
use crate::common::*;

/// Hadoop's line, split as a shell would (the examples quote nothing but whole words).
fn hadoop_words(line: &str) -> Vec<String> {
    line.split_whitespace().map(String::from).collect()
}

/// `shoal streaming` with the Hadoop options of `line` (and `extra` flags of ours first),
/// from `dir`.
fn streaming(dir: &Path, extra: &[&str], line: &str) -> Output {
    run(shoal()
        .current_dir(dir)
        .arg("streaming")
        .args(extra)
        .args(hadoop_words(line)))
}

/// The part files of `out` under `dir`, in order, after checking `_SUCCESS`.
fn parts_of(dir: &Path, out: &str) -> Vec<Vec<u8>> {
    all_parts(&dir.join(out))
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", text(o));
}

/// `wc`'s three numbers of `bytes`, counted by Python.
fn wc_of(dir: &Path, bytes: &[u8]) -> Vec<u64> {
    let f = dir.join("wc-input");
    std::fs::write(&f, bytes).unwrap();
    let o = run(std::process::Command::new("python3").arg("-c").arg(
        "import sys; b = open(sys.argv[1], 'rb').read(); print(b.count(b'\\n'), len(b.split()), len(b))",
    ).arg(&f));
    ok(&o);
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect()
}

/// The numbers of a `wc` output.
fn numbers(part: &[u8]) -> Vec<u64> {
    String::from_utf8_lossy(part)
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect()
}

const MAPPER_PY: &str = "#!/usr/bin/env python3\nimport sys\nfor line in sys.stdin:\n    for w in line.split():\n        print(w.lower() + '\\t1')\n";
const ENV_PY: &str = "#!/usr/bin/env python3\nimport os, sys\nfor line in sys.stdin:\n    print(os.environ.get('EXAMPLE_DIR', 'unset') + '\\t' + line.rstrip('\\n'))\n";

/// The map output keys of the documentation's key-field examples.
const DOTTED: &str = "11.12.1.2\n11.14.2.3\n11.11.4.1\n11.12.1.1\n11.14.2.2\n";

#[test]
fn hadoop_s_documented_examples_run_unchanged_on_three_nodes() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let work = dir.path().join("work");
    std::fs::create_dir_all(work.join("myInputDirs")).unwrap();
    let text_a = "The quick brown fox\njumps over the lazy dog\n";
    let text_b = "the dog sleeps\nThe fox runs\n";
    std::fs::write(work.join("myInputDirs/a.txt"), text_a).unwrap();
    std::fs::write(work.join("myInputDirs/b.txt"), text_b).unwrap();
    std::fs::write(work.join("keys.txt"), DOTTED).unwrap();
    for (name, body) in [("myPythonScript.py", MAPPER_PY), ("env.py", ENV_PY)] {
        std::fs::write(work.join(name), body).unwrap();
    }
    let nodes = start_cluster(&dir.path().join("nodes"), 3, &["--expect", "3"]);
    wait_agreed(&nodes.iter().collect::<Vec<_>>(), 3, 60);
    let url = format!("http://{}", nodes[1].http);
    let on = ["--node", url.as_str()];
    let all_input = [text_a, text_b].concat();

    // The basics: cat and wc.
    let o = streaming(
        &work,
        &on,
        "-input myInputDirs -output myOutputDir -mapper /bin/cat -reducer /usr/bin/wc",
    );
    ok(&o);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("runs as shoal submit --node"),
        "it says what it runs: {}",
        text(&o)
    );
    let parts = parts_of(&work, "myOutputDir");
    assert_eq!(parts.len(), 1);
    assert_eq!(
        numbers(&parts[0]),
        wc_of(dir.path(), all_input.as_bytes()),
        "wc of every line"
    );

    // The same in this process.
    let o = streaming(
        &work,
        &["--in-process"],
        "-input myInputDirs -output here -mapper /bin/cat -reducer /usr/bin/wc",
    );
    ok(&o);
    assert_eq!(
        numbers(&parts_of(&work, "here")[0]),
        wc_of(dir.path(), all_input.as_bytes())
    );

    // -file: the documented Python mapper, shipped.
    ok(&streaming(&work, &on, "-input myInputDirs -output withFile -mapper myPythonScript.py -reducer /usr/bin/wc -file myPythonScript.py"));
    let words: String = all_input
        .split_whitespace()
        .map(|w| format!("{}\t1\n", w.to_lowercase()))
        .collect();
    assert_eq!(
        numbers(&parts_of(&work, "withFile")[0]),
        wc_of(dir.path(), words.as_bytes())
    );

    // -cmdenv, seen by the mapper; and map-only with -reducer NONE.
    ok(&streaming(&work, &on, "-input myInputDirs -output withEnv -mapper env.py -file env.py -reducer NONE -cmdenv EXAMPLE_DIR=/home/example/dictionaries/"));
    let got: Vec<String> = parts_of(&work, "withEnv")
        .iter()
        .flat_map(|p| {
            String::from_utf8_lossy(p)
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect();
    let want: Vec<String> = all_input
        .lines()
        .map(|l| format!("/home/example/dictionaries/\t{l}"))
        .collect();
    assert_eq!(
        got, want,
        "map-only: each map's output as it wrote it, in input order"
    );

    // Map-only with -D mapreduce.job.reduces=0.
    ok(&streaming(
        &work,
        &on,
        "-D mapreduce.job.reduces=0 -input myInputDirs -output mapOnly -mapper /bin/cat",
    ));
    assert_eq!(parts_of(&work, "mapOnly").concat(), all_input.as_bytes());

    // KeyFieldBasedPartitioner with keypartitioner.options, 12 reducers: lines sharing the
    // first two key fields meet in one reducer, each reducer's input sorted on the key.
    ok(&streaming(&work, &on, "-D stream.map.output.field.separator=. -D stream.num.map.output.key.fields=4 -D map.output.key.field.separator=. -D mapreduce.partition.keypartitioner.options=-k1,2 -D mapreduce.job.reduces=12 -input keys.txt -output partitioned -mapper /bin/cat -reducer /bin/cat -partitioner org.apache.hadoop.mapred.lib.KeyFieldBasedPartitioner"));
    let parts = parts_of(&work, "partitioned");
    assert_eq!(parts.len(), 12);
    let mut owner = std::collections::BTreeMap::new();
    let mut all = Vec::new();
    for (p, part) in parts.iter().enumerate() {
        let ls: Vec<String> = String::from_utf8_lossy(part)
            .lines()
            .map(String::from)
            .collect();
        let mut sorted = ls.clone();
        sorted.sort();
        assert_eq!(ls, sorted, "part {p} sorted on the key");
        for l in ls {
            let first_two: Vec<&str> = l.split('.').take(2).collect();
            let prev = owner.insert(first_two.join("."), p);
            assert!(
                prev.is_none_or(|q| q == p),
                "{l}: one reducer per first two fields"
            );
            all.push(l);
        }
    }
    all.sort();
    let mut want: Vec<String> = DOTTED.lines().map(String::from).collect();
    want.sort();
    assert_eq!(all, want);
    assert_eq!(owner.len(), 3, "11.11, 11.12 and 11.14");

    // KeyFieldBasedComparator with keycomparator.options -k2,2nr: the documented order.
    ok(&streaming(&work, &on, "-D mapreduce.job.output.key.comparator.class=org.apache.hadoop.mapreduce.lib.partition.KeyFieldBasedComparator -D stream.map.output.field.separator=. -D stream.num.map.output.key.fields=4 -D mapreduce.map.output.key.field.separator=. -D mapreduce.partition.keycomparator.options=-k2,2nr -D mapreduce.job.reduces=1 -input keys.txt -output sorted -mapper /bin/cat -reducer /bin/cat"));
    assert_eq!(
        String::from_utf8_lossy(&parts_of(&work, "sorted")[0]),
        "11.14.2.3\n11.14.2.2\n11.12.1.2\n11.12.1.1\n11.11.4.1\n"
    );
}

#[test]
fn what_shoal_streaming_does_not_support_is_refused_by_name() {
    let dir = common::tempdir();
    for (line, named) in [
        ("-input a -output o -mapper cat -reducer aggregate", "-reducer aggregate"),
        ("-input a -output o -mapper cat -inputformat org.apache.hadoop.mapred.SequenceFileInputFormat", "-inputformat org.apache.hadoop.mapred.SequenceFileInputFormat"),
        ("-input a -output o -mapper cat -D mapreduce.map.memory.mb=2048", "-D mapreduce.map.memory.mb"),
        ("-input a -output o -mapper cat -partitioner com.example.MyPartitioner", "-partitioner com.example.MyPartitioner"),
        ("-input a -output o -mapper cat -lazyOutput", "-lazyOutput"),
        ("-input a -mapper cat", "-output is required"),
    ] {
        let o = streaming(dir.path(), &["--explain"], line);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{line}: {err}");
        assert!(err.contains(named), "{line}: names {named}: {err}");
    }
    let o = streaming(dir.path(), &["--explain"], "-D mapreduce.job.name=top -D mapreduce.output.fileoutputformat.compress=true -D mapreduce.output.fileoutputformat.compress.codec=org.apache.hadoop.io.compress.GzipCodec -input a,b -output o -mapper m.py -combiner c.py -reducer r.py -numReduceTasks 4 -archives deps.zip#deps -file m.py");
    ok(&o);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "shoal submit --node http://127.0.0.1:7070 --input a --input b --output o --map m.py --name top --reduce r.py --reducers 4 --combine c.py --compress-output gzip --file m.py --archive deps.zip#deps"
    );
}
