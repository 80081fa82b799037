//! A web page cannot use a node's HTTP API: a request whose `Host` is not the node's is
//! refused (421, DNS rebinding), and a job submitted from another site — by `Origin` or
//! `Sec-Fetch-Site` — is refused (403) before anything runs, while `shoal`, curl (neither
//! header) and the node's own pages (same origin) still work. A real `shoal node` on
//! 127.0.0.1; the requests are written by hand, headers and all, as a browser would send them
//! — and then sent by a real browser, headless Chromium, from a page of another origin.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common;
use crate::common::cluster::*;
use crate::common::{browser, text, writable_by_tasks};
use serde_json::Value;

/// Send one request with `headers` (besides Host and Content-Length); status and JSON body.
fn request(
    addr: &str,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let resp = String::from_utf8_lossy(&resp);
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// The head of the answer to `GET path` with `Host: host`, lowercase.
fn head_of(addr: &str, host: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let ask = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(ask.as_bytes()).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let resp = String::from_utf8_lossy(&resp).to_ascii_lowercase();
    resp.split_once("\r\n\r\n")
        .map_or(resp.clone(), |(h, _)| h.to_string())
}

/// A multipart job whose mapper creates `marker`: what a hostile page would post.
fn job_body(marker: &std::path::Path) -> (String, Vec<u8>) {
    let spec = serde_json::json!({
        "name": "from-a-page",
        "inputs": ["in.txt"],
        "reducers": 1,
        "kind": { "Streaming": {
            "map": { "Shell": format!("touch {}; cat", marker.display()) },
            "reduce": { "Shell": "cat" },
            "combine": null,
        } },
    });
    let b = "shoalboundary7";
    let mut body = Vec::new();
    body.extend_from_slice(format!("--{b}\r\nContent-Disposition: form-data; name=\"spec\"\r\nContent-Type: application/json\r\n\r\n{spec}\r\n").as_bytes());
    body.extend_from_slice(format!("--{b}\r\nContent-Disposition: form-data; name=\"input\"; filename=\"in.txt\"\r\nContent-Type: text/plain\r\n\r\nhello page\r\n--{b}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={b}"), body)
}

#[test]
fn pages_of_other_sites_and_rebound_names_are_refused_shoal_and_same_origin_are_not() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let node = NodeProc::start(
        dir.path(),
        "n1",
        &["--expect", "1", "--http-host", "shoal.test"].map(String::from),
    );
    wait_for(60, "the node to lead", || leader_of(&node));
    let port = node.http.rsplit_once(':').unwrap().1.to_string();
    let own = node.http.clone();

    // DNS rebinding: a page at evil.example whose name now resolves to 127.0.0.1.
    for path in ["/", "/api/v1/cluster", "/api/v1/jobs"] {
        let (status, body) = request(&own, &format!("evil.example:{port}"), "GET", path, &[], b"");
        assert_eq!(status, 421, "{path}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("--http-host"),
            "{body}"
        );
    }
    // Every answer, a refusal too, says nosniff: a browser never reads text as a page.
    for host in [own.clone(), format!("evil.example:{port}")] {
        for path in ["/api/v1/cluster", "/api/v1/jobs/j-1/logs/m-00000/1"] {
            let head = head_of(&own, &host, path);
            assert!(
                head.contains("x-content-type-options: nosniff"),
                "{host}{path}: {head}"
            );
        }
    }
    for host in [
        own.clone(),
        format!("localhost:{port}"),
        format!("shoal.test:{port}"),
    ] {
        let (status, body) = request(&own, &host, "GET", "/api/v1/cluster", &[], b"");
        assert_eq!(status, 200, "{host}: {body}");
    }

    // A cross-site form post or no-cors fetch: refused before the body is read.
    let marker = writable_by_tasks(dir.path()).join("ran");
    let (ctype, body) = job_body(&marker);
    let ct = ("Content-Type", ctype.as_str());
    for extra in [
        vec![ct, ("Origin", "http://127.0.0.2:8000")],
        vec![ct, ("Origin", "null")],
        vec![
            ct,
            ("Sec-Fetch-Site", "cross-site"),
            ("Origin", "http://evil.example"),
        ],
        vec![ct, ("Sec-Fetch-Site", "same-site")],
    ] {
        let (status, answer) = request(&own, &own, "POST", "/api/v1/jobs", &extra, &body);
        assert_eq!(status, 403, "{extra:?}: {answer}");
        let (status, answer) = request(&own, &own, "DELETE", "/api/v1/jobs/j-1", &extra[1..], b"");
        assert_eq!(status, 403, "{extra:?}: {answer}");
        let drain = format!("/api/v1/nodes/{}/drain", node.node_id);
        let (status, answer) = request(&own, &own, "POST", &drain, &extra[1..], b"");
        assert_eq!(status, 403, "{extra:?}: {answer}");
    }
    let view = http_get_json(&node.http, "/api/v1/cluster").unwrap();
    assert!(
        view["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["drain"].is_null()),
        "no node was drained from another site: {view}"
    );
    let (_, jobs) = request(&own, &own, "GET", "/api/v1/jobs", &[], b"");
    assert_eq!(jobs, serde_json::json!([]), "no job was created");
    assert!(!marker.exists(), "no mapper ran");

    // The same body from the node's own page, and from curl or `shoal` (no Origin): taken.
    let origin = format!("http://{own}");
    for extra in [
        vec![
            ct,
            ("Origin", origin.as_str()),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        vec![ct],
    ] {
        let (status, answer) = request(&own, &own, "POST", "/api/v1/jobs", &extra, &body);
        assert_eq!(status, 201, "{extra:?}: {answer}");
        let id = answer["id"].as_str().unwrap().to_string();
        wait_for(60, "the job to succeed", || {
            let (_, j) = request(
                &own,
                &own,
                "GET",
                &format!("/api/v1/jobs/{id}?tasks=false"),
                &[],
                b"",
            );
            (j["state"] == "succeeded").then_some(())
        });
    }
    assert!(
        marker.exists(),
        "the same body, not from another site, runs its mapper"
    );
}

#[test]
fn a_page_of_another_origin_in_a_real_browser_runs_nothing_the_node_s_own_dashboard_does() {
    let Some(python) = browser("the cross-site browser test") else {
        return;
    };
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let node = NodeProc::start(dir.path(), "n1", &["--expect", "1"].map(String::from));
    wait_for(60, "the node to lead", || leader_of(&node));
    let url = format!("http://{}", node.http);
    let marks = writable_by_tasks(dir.path());
    let (by_fetch, by_form) = (marks.join("ran-fetch"), marks.join("ran-form"));
    let input = dir.path().join("words.txt");
    std::fs::write(&input, "to be or not to be\n").unwrap();
    let o = std::process::Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/it/browser/cross_site.py"
        ))
        .arg(&url)
        .args([&by_fetch, &by_form, &input])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "the browser script failed: {}",
        text(&o)
    );
    println!("the browser:\n{out}");
    let attacked = out.lines().find(|l| l.starts_with("ATTACKED")).unwrap();
    assert!(
        attacked.contains("another site"),
        "the form post was answered with the refusal: {attacked}"
    );
    let own = out.lines().find_map(|l| l.strip_prefix("OWN ")).unwrap();

    // Only the dashboard's job exists, and it ran; neither hostile mapper did.
    let jobs = http_get_json(&node.http, "/api/v1/jobs?tasks=false").unwrap();
    let ids: Vec<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [own], "only the dashboard's job was created");
    wait_for(60, "the dashboard's job to succeed", || {
        let j = http_get_json(&node.http, &format!("/api/v1/jobs/{own}?tasks=false"))?;
        (j["state"] == "succeeded").then_some(())
    });
    assert!(!by_fetch.exists(), "the no-cors fetch's mapper never ran");
    let refusals = node
        .log_text()
        .lines()
        .filter(|l| l.contains("refused a change from another site") && l.contains("/api/v1/jobs"))
        .count();
    assert_eq!(
        refusals, 2,
        "both the fetch and the form post reached the node and were refused"
    );
    assert!(!by_form.exists(), "the form post's mapper never ran");

    // curl, with no Origin, is a client like `shoal`: it may submit.
    let (ctype, body) = job_body(&by_form);
    let form = dir.path().join("body");
    std::fs::write(&form, body).unwrap();
    let o = std::process::Command::new("curl")
        .args([
            "-sS",
            "-H",
            &format!("Content-Type: {ctype}"),
            "--data-binary",
        ])
        .arg(format!("@{}", form.display()))
        .arg(format!("{url}/api/v1/jobs"))
        .output()
        .unwrap();
    let answer: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    let id = answer["id"]
        .as_str()
        .unwrap_or_else(|| panic!("curl: {}", text(&o)));
    wait_for(60, "curl's job to succeed", || {
        let j = http_get_json(&node.http, &format!("/api/v1/jobs/{id}?tasks=false"))?;
        (j["state"] == "succeeded").then_some(())
    });
    assert!(by_form.exists(), "curl's job ran its mapper");
}

/// Open a `POST /api/v1/jobs` whose body stops after its first bytes, and keep it open.
fn stalled_upload(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /api/v1/jobs HTTP/1.1\r\nHost: {addr}\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: {}\r\n\r\n",
        1 << 20
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(b"--b\r\nContent-Disposition: form-data; name=\"spec\"\r\n\r\n{")
        .unwrap();
    s
}

#[test]
fn a_crowd_of_stalled_uploads_gets_others_a_busy_answer_until_it_leaves() {
    use shoal_node::http::guard::MAX_IN_PROGRESS;
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let node = NodeProc::start(dir.path(), "n1", &["--expect", "1"].map(String::from));
    wait_for(60, "the node to lead", || leader_of(&node));
    let own = node.http.clone();
    let stalled: Vec<TcpStream> = (0..MAX_IN_PROGRESS).map(|_| stalled_upload(&own)).collect();
    // Each upload holds a turn while its body is awaited: the next request is told to wait.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let head = loop {
        let head = head_of(&own, &own, "/api/v1/jobs");
        if head.starts_with("http/1.1 503") {
            break head;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no request was answered busy within 60 s; the last answer: {head}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(head.contains("retry-after: 1"), "{head}");
    let (status, body) = request(&own, &own, "GET", "/api/v1/cluster", &[], b"");
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap().starts_with("busy"),
        "{body}"
    );
    // The crowd hangs up: its turns come back, and nothing it sent became a job.
    drop(stalled);
    wait_for(60, "the API to answer again", || {
        (request(&own, &own, "GET", "/api/v1/jobs", &[], b"").0 == 200).then_some(())
    });
    let (_, jobs) = request(&own, &own, "GET", "/api/v1/jobs", &[], b"");
    assert_eq!(jobs.as_array().map(Vec::len), Some(0), "{jobs}");
}
