//! The command line's own pieces, checked without a cluster: part names and checksums of
//! `shoal output`, the multipart body of `shoal submit`, the escaping of `shoal logs`, the
//! demo's corpus. (The root library builds no unit-test binary of its own: one build of it
//! less in CI.)

use futures::StreamExt;
use shoal::cli::client::{duration, utc};
use shoal::cli::jobargs::parse_size;
use shoal::cli::logs::escaped;
use shoal::cli::output::{is_part_name, parse_checksum};
use shoal::cli::upload::multipart;
use shoal::demo::corpus::{generate, word};
use shoal_jobs::split::InputFile;

#[test]
fn only_part_names_become_files_and_checksums_parse_strictly() {
    for ok in [
        "part-00000",
        "part-00017",
        "part-123456",
        "part-00001.gz",
        "part-00002.zst",
    ] {
        assert!(is_part_name(ok), "{ok}");
    }
    for bad in [
        "",
        "part-",
        "part-1",
        "part-0000a",
        "../part-00000",
        "part-00000/../x",
        "part-00000.a1",
        "part-00000.gz.gz",
        "part-.gz",
        "_SUCCESS",
        "/etc/passwd",
        "part-00000\n",
    ] {
        assert!(!is_part_name(bad), "{bad:?}");
    }
    assert_eq!(parse_checksum("crc32c=0000002a"), Some(42));
    assert_eq!(parse_checksum("md5=0000002a"), None);
    assert_eq!(parse_checksum("crc32c=zz"), None);
}

#[test]
fn the_body_is_a_multipart_form_with_the_spec_then_each_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (name, text) in [("a.txt", "one\n"), ("we\"ird\nname", "two\n")] {
        let path = dir.path().join(format!("f{}", files.len()));
        std::fs::write(&path, text).unwrap();
        files.push(InputFile {
            path,
            name: name.into(),
            len: text.len() as u64,
        });
    }
    let (ctype, body) = multipart(b"SPEC".to_vec(), Vec::new(), files);
    let boundary = ctype
        .strip_prefix("multipart/form-data; boundary=")
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bytes: Vec<u8> =
        rt.block_on(async { body.map(|c| c.unwrap()).collect::<Vec<_>>().await.concat() });
    let text = String::from_utf8(bytes).unwrap();
    let want = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"spec\"\r\nContent-Type: application/cbor\r\n\r\nSPEC\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"input\"; filename=\"a.txt\"\r\nContent-Type: application/octet-stream\r\n\r\none\n\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"input\"; filename=\"we%22ird%0Aname\"\r\nContent-Type: application/octet-stream\r\n\r\ntwo\n\r\n\
         --{boundary}--\r\n"
    );
    assert_eq!(text, want);
}

#[test]
fn a_terminal_sees_control_characters_escaped_and_text_as_it_is() {
    let task = b"ok\tdone\n\x1b]0;owned\x07\x1b[2Jcaf\xc3\xa9 \xc2\x9b31m \xff\n";
    let shown = String::from_utf8(escaped(task)).unwrap();
    assert_eq!(
        shown,
        "ok\tdone\n\\x1b]0;owned\\x07\\x1b[2Jcafé \\u{9b}31m \\xff\n"
    );
    assert!(!shown.bytes().any(|b| b == 0x1b || b == 0x07));
}

#[test]
fn corpus_is_deterministic_and_skewed() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    generate(&a, 200_000, 5000, 7).unwrap();
    generate(&b, 200_000, 5000, 7).unwrap();
    let text = std::fs::read(&a).unwrap();
    assert_eq!(text, std::fs::read(&b).unwrap());
    let the = word(0);
    let count = |w: &str| {
        text.split(|&c| c == b' ' || c == b'\n')
            .filter(|x| *x == w.as_bytes())
            .count()
    };
    assert!(
        count(&the) > 20 * count(&word(100)).max(1),
        "rank 0 is far more frequent than rank 100"
    );
}

#[test]
fn sizes_take_units_and_refuse_what_is_not_a_size() {
    for (text, bytes) in [
        ("65536", 65_536),
        ("64K", 64 << 10),
        ("64M", 64 << 20),
        ("64MiB", 64 << 20),
        ("64mb", 64 << 20),
        ("1G", 1 << 30),
        ("1.5g", 3 << 29),
        ("2T", 2 << 40),
        (" 7 ", 7),
    ] {
        assert_eq!(parse_size(text), Ok(bytes), "{text}");
    }
    for bad in [
        "",
        "M",
        "64X",
        "-1",
        "1.5",
        "64 MB of it",
        "99999999999999999999T",
    ] {
        let err = parse_size(bad).unwrap_err();
        assert!(err.contains("is not a size"), "{bad}: {err}");
    }
}

#[test]
fn times_read_as_dates_and_durations() {
    assert_eq!(utc(0), "1970-01-01 00:00:00");
    assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
    assert_eq!(utc(1_796_661_064_554), "2026-12-07 16:31:04");
    assert_eq!(utc(4_107_542_399_000), "2100-02-28 23:59:59");
    for (ms, text) in [
        (850, "850 ms"),
        (12_345, "12.3 s"),
        (245_000, "4m05s"),
        (7_620_000, "2h07m"),
    ] {
        assert_eq!(duration(ms), text);
    }
}

#[test]
fn a_job_is_named_by_its_whole_id_or_a_unique_end_of_it() {
    use shoal::cli::http::pick_job;
    let ids = [
        "j-19af0000001aa01",
        "j-19af0000002bb02",
        "j-19af0000003bb03",
    ];
    assert_eq!(pick_job("j-19af0000002bb02", ids).unwrap(), ids[1], "whole");
    assert_eq!(pick_job("a01", ids).unwrap(), ids[0], "last digits");
    assert_eq!(
        pick_job("j-19af0000003", ids).unwrap(),
        ids[2],
        "first digits"
    );
    assert_eq!(pick_job("19af0000003", ids).unwrap(), ids[2], "without j-");
    let e = pick_job("j-19af", ids).unwrap_err();
    assert!(e.contains("names 3 jobs") && e.contains(ids[0]), "{e}");
    let e = pick_job("ffff", ids).unwrap_err();
    assert!(e.contains("no job's id starts or ends with ffff"), "{e}");
    assert!(pick_job("j-", ids).is_err() && pick_job("", ids).is_err());
}

#[test]
fn far_too_many_reducers_draw_a_warning_that_says_why() {
    use shoal::cli::client::reducer_warning;
    let w = reducer_warning(2000, Some(85 * 1024), Some(6)).expect("a warning");
    assert!(
        w.starts_with("warning: -R 2000 is far more reducers than this job needs")
            && w.contains("the input is 85.0 KiB")
            && w.contains("runs 6 tasks at once, so they run in 334 waves")
            && w.contains("-R 6 would finish sooner"),
        "{w}"
    );
    assert_eq!(
        reducer_warning(8, Some(10), Some(1)),
        None,
        "a few reducers never warn"
    );
    assert_eq!(
        reducer_warning(16, Some(1 << 30), Some(6)),
        None,
        "16 reducers for 1 GiB on 6 slots"
    );
    assert_eq!(
        reducer_warning(100, None, None),
        None,
        "nothing known, nothing said"
    );
    let w = reducer_warning(100, None, Some(4)).expect("beyond the cluster");
    assert!(w.contains("25 waves") && !w.contains("input"), "{w}");
}

#[test]
fn a_waiting_client_names_a_manager_change_and_maps_that_run_again() {
    use shoal::cli::client::News;
    use shoal_node::http::jobs_view::JobView;
    let job = |done: usize| -> JobView {
        serde_json::from_value(serde_json::json!({
            "id": "j-1", "name": "n", "user": "u", "priority": 0, "state": "running", "phase": "map",
            "submitted_ms": 0, "maps": {"total": 12, "done": done, "running": 0},
            "reduces": {"total": 1, "done": 0, "running": 0},
            "counters": {}
        }))
        .expect("a job view")
    };
    let mut news = News::default();
    assert!(
        news.of(&job(3), Some("aa".into())).is_empty(),
        "the first look says nothing"
    );
    assert!(
        news.of(&job(5), None).is_empty(),
        "no manager during an election"
    );
    let said = news.of(&job(4), Some("bb".into()));
    assert_eq!(
        said,
        [
            "j-1: the manager changed from aa to bb; the job goes on from the replicated job table",
            "j-1: 1 finished map(s) run again: their output was lost with a node"
        ]
    );
    assert!(news.of(&job(6), Some("bb".into())).is_empty());
}
