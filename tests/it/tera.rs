//! The sort benchmark's jobs with `shoal run`: teragen's records read by an independent
//! Python check of the `gensort -a` form, terasort's order against Python's, and
//! teravalidate catching what is wrong (a record out of order within a part and across
//! parts, a missing record), its checksum against the generator's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use shoal_jobs::apps::tera;

use crate::common;
use crate::common::*;

const ROWS: u64 = 20_000;

/// Teragen's control files: `maps` files of one `FIRST COUNT` line each.
fn control(dir: &Path, rows: u64, maps: u64) -> PathBuf {
    let c = dir.join("control");
    std::fs::create_dir_all(&c).unwrap();
    for (i, line) in tera::control_lines(rows, maps).iter().enumerate() {
        std::fs::write(c.join(format!("rows-{i:03}")), format!("{line}\n")).unwrap();
    }
    c
}

/// teravalidate's report on `input`: its `key<TAB>value` lines.
fn validate(dir: &Path, input: &Path, name: &str) -> BTreeMap<String, String> {
    let out = dir.join(name);
    shoal_run(input, &out, 1, &["--app", "teravalidate"]);
    let report = String::from_utf8(parts(&out, 1).concat()).unwrap();
    report
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

const CHECK_GENSORT: &str = r#"
import os, re, sys
rec = re.compile(rb'^[ -~]{10}  ([0-9A-F]{32})  (?:([0-9A-F])\2\2\2){13}\r\n$')
rows = []
for name in sorted(os.listdir(sys.argv[1])):
    if name.startswith('part-'):
        for line in open(os.path.join(sys.argv[1], name), 'rb'):
            m = rec.match(line)
            assert m, (name, line)
            rows.append(int(m.group(1), 16))
assert rows == list(range(len(rows))), 'record numbers are not 0, 1, 2, ... in part order'
print(len(rows))
"#;

#[test]
fn teragen_terasort_teravalidate_make_checked_and_sorted_gensort_records() {
    let dir = common::tempdir();
    let gen = dir.path().join("gen");
    shoal_run(
        &control(dir.path(), ROWS, 7),
        &gen,
        0,
        &["--app", "teragen"],
    );
    // The gensort form, every record in part order, by an independent reader.
    let o = run(std::process::Command::new("python3")
        .args(["-c", CHECK_GENSORT])
        .arg(&gen));
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), ROWS.to_string());

    let sorted = dir.path().join("sorted");
    shoal_run(&gen, &sorted, 3, &["--app", "terasort"]);
    let ps = parts(&sorted, 3);
    assert!(
        ps.iter().all(|p| !p.is_empty()),
        "sampled ranges fill every part"
    );
    let mut want: Vec<&[u8]> = Vec::new();
    let all_gen: Vec<u8> = parts(&gen, 7).concat();
    want.extend(all_gen.split_inclusive(|&b| b == b'\n'));
    want.sort_by(|a, b| a[..10].cmp(&b[..10]).then(a.cmp(b)));
    assert!(
        ps.concat() == want.concat(),
        "terasort's parts are not the records sorted by key"
    );

    let report = validate(dir.path(), &sorted, "valid");
    let checksum = format!("{:x}", tera::checksum_of_rows(0, ROWS));
    assert_eq!(report["records"], ROWS.to_string(), "{report:?}");
    assert_eq!(report["checksum"], checksum, "{report:?}");
    assert_eq!(report["misordered"], "0", "{report:?}");
    assert_eq!(report["malformed"], "0", "{report:?}");
    assert_eq!(report["files"], "3", "{report:?}");
    assert!(!report.contains_key("first_misorder"), "{report:?}");

    // The unsorted records: the same checksum, and out of order.
    let report = validate(dir.path(), &gen, "unsorted");
    assert_eq!(
        report["checksum"], checksum,
        "the checksum does not depend on the order"
    );
    assert!(
        report["misordered"].parse::<u64>().unwrap() > ROWS / 4,
        "{report:?}"
    );
    assert!(report["first_misorder"].contains("part-"), "{report:?}");
}

#[test]
fn teravalidate_finds_parts_out_of_order_and_a_lost_record() {
    let dir = common::tempdir();
    let gen = dir.path().join("gen");
    shoal_run(
        &control(dir.path(), ROWS, 2),
        &gen,
        0,
        &["--app", "teragen"],
    );
    let sorted = dir.path().join("sorted");
    shoal_run(&gen, &sorted, 2, &["--app", "terasort"]);
    // The two parts swapped: each is in order, the two together are not.
    let broken = dir.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    let (p0, p1) = (
        std::fs::read(sorted.join("part-00000")).unwrap(),
        std::fs::read(sorted.join("part-00001")).unwrap(),
    );
    std::fs::write(broken.join("part-00000"), &p1).unwrap();
    std::fs::write(broken.join("part-00001"), &p0).unwrap();
    let report = validate(dir.path(), &broken, "across");
    assert_eq!(report["records"], ROWS.to_string());
    assert_eq!(report["misordered"], "1", "{report:?}");
    assert!(
        report["first_misorder"].contains("part-00001"),
        "{report:?}"
    );
    assert_eq!(
        report["checksum"],
        format!("{:x}", tera::checksum_of_rows(0, ROWS))
    );

    // A lost record: the count and the checksum say so.
    std::fs::write(broken.join("part-00000"), &p0[tera::RECORD_BYTES..]).unwrap();
    std::fs::write(broken.join("part-00001"), &p1).unwrap();
    let report = validate(dir.path(), &broken, "lost");
    assert_eq!(report["records"], (ROWS - 1).to_string());
    assert_eq!(report["misordered"], "0", "{report:?}");
    assert_ne!(
        report["checksum"],
        format!("{:x}", tera::checksum_of_rows(0, ROWS))
    );
}

#[test]
fn a_bad_teragen_line_fails_the_job_naming_the_file_and_the_line() {
    let dir = common::tempdir();
    let c = dir.path().join("control");
    std::fs::create_dir_all(&c).unwrap();
    std::fs::write(c.join("rows"), "0 10\n10 ten\n").unwrap();
    let out = dir.path().join("out");
    let o = run(shoal()
        .args(["run", "--app", "teragen", "-R", "0", "--input"])
        .arg(&c)
        .arg("--output")
        .arg(&out));
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("rows: the line at byte offset 5") && err.contains("FIRST COUNT"),
        "{err}"
    );
    assert!(!out.join("_SUCCESS").exists());
    // A range past 2^64 is refused, not wrapped.
    assert!(tera::parse_rows(format!("{} 2", u64::MAX - 1).as_bytes()).is_err());
    assert!(tera::parse_rows(b"0 1099511627777").is_err());
    assert_eq!(tera::parse_rows(b" 5\t7 "), Ok((5, 7)));
}

#[test]
fn control_lines_cover_every_row_once() {
    for (rows, maps) in [(0, 3), (1, 3), (10, 3), (1_000_003, 16), (u64::MAX / 2, 7)] {
        let lines = tera::control_lines(rows, maps);
        let mut next = 0u64;
        for l in &lines {
            let (first, count) = l
                .split_once(' ')
                .map(|(a, b)| (a.parse::<u64>().unwrap(), b.parse::<u64>().unwrap()))
                .unwrap();
            assert_eq!(first, next, "{rows} rows in {maps}: {lines:?}");
            next = first + count;
        }
        assert_eq!(next, rows, "{rows} rows in {maps}");
    }
}
