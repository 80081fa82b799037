//! A key holder that floods a node can neither grow its memory without bound nor stop a job.
//! Crafted peers holding the cluster key (not members) connect to the leader: one sends the
//! first 56 MiB of 64 MiB Raft and control requests on 24 streams, then goes silent, until
//! the node sheds them; four open 1,000 streams that announce 64 MiB and send nothing; one
//! floods heartbeats and `Heard` requests for 60 s. Word counts run one after another
//! through the whole flood. The leader's memory stays under a stated bound, every count is
//! right, and their times are printed beside the quiet ones. A stranger's burst of requests
//! is answered at its pace, the rest told busy at once. Real `shoal node` processes on
//! 127.0.0.1, one cluster test at a time.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{Multiaddr, PeerId};
use shoal_net::codec::MAX_FRAME;
use shoal_net::wire::{CtlRequest, CtlResponse};
use shoal_net::Keypair;

use crate::common;
use crate::common::cluster::*;
use crate::common::*;
use crate::peer::{heartbeat, psk, TestPeer};

/// Streams sending most of a large request each, and how much of it.
const HEAVY_STREAMS: usize = 24;
const HEAVY_BYTES: usize = 56 << 20;
/// Streams that announce a frame of the largest size and send nothing after, and the key
/// holders they come from.
const SILENT_STREAMS: usize = 1_000;
const SILENT_PEERS: usize = 4;
/// Heartbeat and `Heard` senders, each one request after another.
const FLOODERS: usize = 4;
/// How long the flood lasts: word counts run one after another through it.
const FLOOD_FOR: Duration = Duration::from_secs(60);
/// Word counts run quiet, before the flood; their median is the quiet time.
const QUIET_RUNS: usize = 3;
/// The leader's resident memory must stay under this: what the node holds when quiet, plus
/// the Raft and control read budgets (192 + 128 MiB, and 8 MiB each for small frames), plus
/// room for the job it runs.
const RSS_BOUND_MIB: u64 = 640;

/// What the flood did, as counts.
#[derive(Default)]
struct Tally {
    opened: AtomicU64,
    refused_open: AtomicU64,
    /// Streams the node ended (reset or closed) while the flood held them.
    shed: AtomicU64,
    /// Heavy streams the node ended.
    heavy_shed: AtomicU64,
    answered: AtomicU64,
    busy: AtomicU64,
}

/// Open a stream of `protocol` and send a 64 MiB length prefix, then `body` bytes of zeros,
/// then nothing: until the node ends the stream (true) or it could not be opened.
async fn announce(peer: &TestPeer, protocol: &'static str, body: usize, tally: &Tally) -> bool {
    let Ok(mut stream) = peer.try_open(protocol).await else {
        tally.refused_open.fetch_add(1, Ordering::Relaxed);
        return false;
    };
    tally.opened.fetch_add(1, Ordering::Relaxed);
    let zeros = vec![0u8; 1 << 20];
    let mut sent = stream.write_all(&(MAX_FRAME as u32).to_be_bytes()).await;
    let mut left = body;
    while sent.is_ok() && left > 0 {
        let n = left.min(zeros.len());
        sent = stream.write_all(&zeros[..n]).await;
        left -= n;
    }
    if sent.is_ok() {
        // Silent now: what the node sends back, or its end of the stream, ends the wait.
        let _ = stream.read(&mut [0u8; 1]).await;
    }
    tally.shed.fetch_add(1, Ordering::Relaxed);
    true
}

/// Heartbeats and `Heard` requests, one after another, until the flood ends.
async fn flood_requests(peer: &TestPeer, cluster_id: u64, tally: &Tally, end: &AtomicBool) {
    let mut i = 0u64;
    while !end.load(Ordering::Relaxed) {
        i += 1;
        let req = if i.is_multiple_of(2) {
            heartbeat(cluster_id, 0x5eed_0000 + i % 97)
        } else {
            CtlRequest::Heard { cluster_id }
        };
        let Ok(mut stream) = peer.try_open("/shoal/ctl/1").await else {
            // Not counted with the streams: a sender whose stream was refused tries again.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if shoal_net::codec::write_frame(&mut stream, &req)
            .await
            .is_err()
        {
            continue;
        }
        let answer = tokio::time::timeout(
            Duration::from_secs(30),
            shoal_net::codec::read_frame::<_, CtlResponse>(&mut stream, 1 << 20),
        )
        .await;
        match answer {
            Ok(Ok(r)) if r.refusal().is_some_and(|r| r.why.starts_with("busy")) => {
                tally.busy.fetch_add(1, Ordering::Relaxed)
            }
            Ok(Ok(_)) => tally.answered.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }
}

/// Every stream and request of the flood, until `end` is set. Each part comes from key
/// holders of its own (a connection carries at most 256 streams, and one whose window is
/// full of unread bytes carries little else): the heavy streams from one, the silent ones
/// from four, the requests from one more.
async fn flood(to: Target, tally: Arc<Tally>, end: Arc<AtomicBool>) {
    let mut tasks = tokio::task::JoinSet::new();
    let heavy = Arc::new(to.connect().await);
    for i in 0..HEAVY_STREAMS {
        let protocol = if i % 2 == 0 {
            "/shoal/raft/1"
        } else {
            "/shoal/ctl/1"
        };
        let (peer, tally) = (Arc::clone(&heavy), Arc::clone(&tally));
        tasks.spawn(async move {
            if announce(&peer, protocol, HEAVY_BYTES, &tally).await {
                tally.heavy_shed.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let asker = Arc::new(to.connect().await);
    for _ in 0..FLOODERS {
        let (peer, tally, end) = (Arc::clone(&asker), Arc::clone(&tally), Arc::clone(&end));
        let cluster_id = to.cluster_id;
        tasks.spawn(async move { flood_requests(&peer, cluster_id, &tally, &end).await });
    }
    for _ in 0..SILENT_PEERS {
        let silent = Arc::new(to.connect().await);
        for i in 0..SILENT_STREAMS / SILENT_PEERS {
            let protocol = ["/shoal/raft/1", "/shoal/ctl/1", "/shoal/data/1"][i % 3];
            let (peer, tally) = (Arc::clone(&silent), Arc::clone(&tally));
            tasks.spawn(async move {
                announce(&peer, protocol, 0, &tally).await;
            });
        }
    }
    // A stream the node keeps open keeps its task waiting: the flood ends by aborting every
    // task, when the test says so.
    while !end.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tasks.shutdown().await;
}

/// The node flooded, as a key holder reaches it.
#[derive(Clone)]
struct Target {
    peer: PeerId,
    addr: Multiaddr,
    psk: shoal_net::PreSharedKey,
    cluster_id: u64,
}

impl Target {
    /// A new key holder's connection to it.
    async fn connect(&self) -> TestPeer {
        let key = Keypair::generate_ed25519();
        TestPeer::connect(key, Some(self.psk), self.peer, self.addr.clone()).await
    }
}

/// `shoal submit --wait` of a word count, its output fetched into `out`: its time and part
/// files.
fn timed_wordcount(node: &NodeProc, input: &Path, out: &Path) -> (Duration, Vec<Vec<u8>>) {
    let started = Instant::now();
    let o = run(shoal()
        .args([
            "submit",
            "--wait",
            "-R",
            "2",
            "--app",
            "wordcount",
            "--node",
        ])
        .arg(format!("http://{}", node.http))
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(out));
    let took = started.elapsed();
    assert!(o.status.success(), "{}", text(&o));
    (took, parts(out, 2))
}

/// The middle of `times`.
fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

/// Word counts one after another until `done` (asked after each), each checked against
/// `counted`: their times.
fn wordcounts_until(
    node: &NodeProc,
    input: &Path,
    out: &Path,
    counted: &[Vec<u8>],
    done: impl Fn(&[Duration]) -> bool,
) -> Vec<Duration> {
    let mut times = Vec::new();
    while !done(&times) {
        let (took, parts) = timed_wordcount(node, input, &out.join(times.len().to_string()));
        assert_eq!(parts, counted, "word count {} under the flood", times.len());
        times.push(took);
    }
    times
}

/// Seconds, two decimals each.
fn seconds(times: &[Duration]) -> String {
    let s: Vec<String> = times
        .iter()
        .map(|t| format!("{:.2}", t.as_secs_f64()))
        .collect();
    s.join(" ")
}

#[test]
fn a_key_holder_flooding_the_leader_neither_grows_its_memory_nor_stops_a_job() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let key_file = common::keygen(dir.path());
    let key_arg = key_file.to_string_lossy().into_owned();
    let nodes = start_cluster(
        &dir.path().join("nodes"),
        3,
        &["--expect", "3", "--cluster-key", &key_arg],
    );
    let leader_id = wait_agreed(&nodes.iter().collect::<Vec<_>>(), 3, 60);
    let leader = nodes.iter().find(|n| n.node_id == leader_id).unwrap();
    let cluster_id = u64::from_str_radix(
        leader.cluster().unwrap()["cluster_id"].as_str().unwrap(),
        16,
    )
    .unwrap();
    let input = common::corpus(dir.path(), 8, 400_000);
    let (_, counted) = timed_wordcount(leader, &input, &dir.path().join("warm"));
    let quiet_runs: Vec<Duration> = (0..QUIET_RUNS)
        .map(|i| {
            let (took, parts) = timed_wordcount(leader, &input, &dir.path().join(format!("q{i}")));
            assert_eq!(parts, counted, "quiet word count {i}");
            took
        })
        .collect();
    let quiet = median(&quiet_runs);
    let quiet_rss = rss_kib(leader.child.as_ref().unwrap().id()) >> 10;

    let (tally, end) = (Arc::new(Tally::default()), Arc::new(AtomicBool::new(false)));
    let to = Target {
        peer: leader.peer_id.parse().unwrap(),
        addr: leader.addrs[0].parse().unwrap(),
        psk: psk(&key_file),
        cluster_id,
    };
    let started = Instant::now();
    let flooder = {
        let (tally, end) = (Arc::clone(&tally), Arc::clone(&end));
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(flood(to, tally, end))
        })
    };
    // The leader's memory, sampled until the flood ends.
    let peak = {
        let end = Arc::clone(&end);
        let pid = leader.child.as_ref().unwrap().id();
        std::thread::spawn(move || {
            let mut peak = 0;
            let alive = || std::path::Path::new(&format!("/proc/{pid}")).exists();
            while !end.load(Ordering::Relaxed) && alive() {
                peak = peak.max(rss_kib(pid) >> 10);
                std::thread::sleep(Duration::from_millis(50));
            }
            peak
        })
    };
    // Word counts run from the flood's first second to its last: while the heavy streams
    // hold the read budgets (until the node sheds them: they stall), then through the
    // silent streams and the requests.
    let heavy_shed = || tally.heavy_shed.load(Ordering::Relaxed) as usize == HEAVY_STREAMS;
    let heavy_runs = wordcounts_until(
        leader,
        &input,
        &dir.path().join("heavy"),
        &counted,
        |runs| !runs.is_empty() && (heavy_shed() || started.elapsed() > FLOOD_FOR),
    );
    let heavy_for = started.elapsed();
    assert!(
        heavy_shed(),
        "the heavy streams were not shed within {FLOOD_FOR:?}"
    );
    let flooded_runs = wordcounts_until(
        leader,
        &input,
        &dir.path().join("flooded"),
        &counted,
        |runs| runs.len() >= 3 && started.elapsed() >= FLOOD_FOR,
    );
    let t = &tally;
    let tried = t.opened.load(Ordering::Relaxed) + t.refused_open.load(Ordering::Relaxed);
    let asked = t.answered.load(Ordering::Relaxed) + t.busy.load(Ordering::Relaxed);
    let lasted = started.elapsed();
    end.store(true, Ordering::Relaxed);
    flooder.join().unwrap();
    let peak = peak.join().unwrap();
    let flooded = median(&flooded_runs);
    println!(
        "flood of {:.0} s: {} streams opened, {} refused at opening, {} ended by the node; {} requests answered, {} refused as busy",
        lasted.as_secs_f64(),
        tally.opened.load(Ordering::Relaxed),
        tally.refused_open.load(Ordering::Relaxed),
        tally.shed.load(Ordering::Relaxed),
        tally.answered.load(Ordering::Relaxed),
        tally.busy.load(Ordering::Relaxed),
    );
    println!(
        "the leader's RSS: {quiet_rss} MiB quiet, at most {peak} MiB under the flood (bound {RSS_BOUND_MIB} MiB)"
    );
    println!(
        "word counts: quiet {} s (median {:.2} s); while the heavy streams were held ({:.1} s) {} s; \
         then under the flood {} s (median {:.2} s, {:.2}x quiet)",
        seconds(&quiet_runs),
        quiet.as_secs_f64(),
        heavy_for.as_secs_f64(),
        seconds(&heavy_runs),
        seconds(&flooded_runs),
        flooded.as_secs_f64(),
        flooded.as_secs_f64() / quiet.as_secs_f64()
    );
    assert!(
        tried >= (HEAVY_STREAMS + SILENT_STREAMS) as u64,
        "the flood opened {tried} streams"
    );
    assert!(asked > 0, "no flooding request was answered");
    assert!(
        peak < RSS_BOUND_MIB,
        "the leader held {peak} MiB under the flood"
    );
    // A word count submitted meanwhile finishes within twice its quiet time: the median
    // of those run while the heavy streams held the read budgets, and of those after.
    let heavy = median(&heavy_runs);
    assert!(
        heavy <= quiet * 2 && flooded <= quiet * 2,
        "word counts took {heavy:?} while the heavy streams were held and {flooded:?} after, {quiet:?} quiet"
    );
    assert_eq!(
        wait_agreed(&nodes.iter().collect::<Vec<_>>(), 3, 30),
        leader_id
    );
}

/// Clients polling one node's API while jobs run.
const POLLERS: usize = 200;
/// What each poller waits between its requests: a dashboard refreshing ten times a second.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// The polled node's resident memory must stay under this.
const POLL_RSS_BOUND_MIB: u64 = 300;

/// GET `path` over plain HTTP/1.1, read to the end: the status code.
fn status_of(addr: &str, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).ok()?;
    let head = String::from_utf8_lossy(&answer[..answer.len().min(64)]).into_owned();
    head.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn two_hundred_clients_polling_a_node_while_twenty_jobs_run_cost_it_bounded_memory() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let c = crate::common::three::three_nodes(dir.path());
    let polled = &c.nodes[c.follower];
    let (input, _) = small_word_input(dir.path(), 4, 400);
    let stop = Arc::new(AtomicBool::new(false));
    let counts: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
    let pollers: Vec<_> = (0..POLLERS)
        .map(|i| {
            let (stop, counts, http) =
                (Arc::clone(&stop), Arc::clone(&counts), polled.http.clone());
            std::thread::spawn(move || {
                let path = if i % 2 == 0 {
                    "/api/v1/jobs"
                } else {
                    "/metrics"
                };
                while !stop.load(Ordering::Relaxed) {
                    let slot = match status_of(&http, path) {
                        Some(200) => 0,
                        Some(503) => 1,
                        _ => 2,
                    };
                    counts[slot].fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(POLL_EVERY);
                }
            })
        })
        .collect();
    let peak = {
        let stop = Arc::clone(&stop);
        let pid = polled.child.as_ref().unwrap().id();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid) >> 10);
                std::thread::sleep(Duration::from_millis(50));
            }
            peak
        })
    };
    let started = Instant::now();
    let ids: Vec<String> = (0..20)
        .map(|_| {
            let (id, o) = c.submit(&["--app", "wordcount", "--input", input.to_str().unwrap()]);
            assert!(o.status.success(), "{}", text(&o));
            id
        })
        .collect();
    for id in &ids {
        let j = wait_for(300, &format!("job {id} to end"), || {
            let j = c.job(c.follower, id);
            (j.state != "running").then_some(j)
        });
        assert_eq!(j.state, "succeeded", "{j}");
    }
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for p in pollers {
        p.join().unwrap();
    }
    let peak = peak.join().unwrap();
    let [ok, busy, failed] = [0, 1, 2].map(|i| counts[i].load(Ordering::Relaxed));
    println!(
        "{POLLERS} clients polling: {ok} answered, {busy} told busy (503), {failed} unanswered; \
         20 jobs ran in {:.1} s; the polled node's RSS peaked at {peak} MiB (bound {POLL_RSS_BOUND_MIB} MiB)",
        took.as_secs_f64()
    );
    assert!(ok > 0, "no poll was answered");
    assert_eq!(failed, 0, "requests with no answer at all");
    assert!(peak < POLL_RSS_BOUND_MIB, "the polled node held {peak} MiB");
}

/// Requests a stranger sends at once in the burst test.
const BURST: usize = 200;

#[test]
fn a_stranger_s_burst_is_answered_up_to_its_pace_and_the_rest_is_told_busy_at_once() {
    use shoal_node::cluster::pace::{MAX_WAIT, STRANGER_BURST, STRANGER_RATE};
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let key_file = common::keygen(dir.path());
    let key_arg = key_file.to_string_lossy().into_owned();
    let node = NodeProc::start(
        dir.path(),
        "n1",
        &["--expect", "1", "--cluster-key", &key_arg].map(String::from),
    );
    wait_for(60, "the node to lead", || leader_of(&node));
    let cluster_id =
        u64::from_str_radix(node.cluster().unwrap()["cluster_id"].as_str().unwrap(), 16).unwrap();
    let to = Target {
        peer: node.peer_id.parse().unwrap(),
        addr: node.addrs[0].parse().unwrap(),
        psk: psk(&key_file),
        cluster_id,
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (answered, busy, took) = rt.block_on(async {
        let peer = Arc::new(to.connect().await);
        let started = Instant::now();
        let asks = (0..BURST).map(|_| {
            let peer = Arc::clone(&peer);
            async move {
                let answer = peer.ctl(&CtlRequest::Heard { cluster_id }).await;
                answer.refusal().is_some_and(|r| r.why.starts_with("busy"))
            }
        });
        let busy = futures::future::join_all(asks)
            .await
            .into_iter()
            .filter(|&b| b)
            .count();
        (BURST - busy, busy, started.elapsed())
    });
    println!(
        "a stranger's {BURST} requests at once: {answered} answered, {busy} told busy, all within {:.2} s",
        took.as_secs_f64()
    );
    // The burst, and what the rate lets through while the others wait their turn (the
    // longest wait, and the time the requests took to arrive).
    let paced = (STRANGER_BURST + STRANGER_RATE) as usize
        + (f64::from(STRANGER_RATE) * took.as_secs_f64()).ceil() as usize;
    assert!(
        (STRANGER_BURST as usize..=paced).contains(&answered),
        "{answered} answered; the pace allows {STRANGER_BURST} at once and {STRANGER_RATE} a second"
    );
    assert_eq!(answered + busy, BURST);
    assert!(took < MAX_WAIT * 10, "the burst took {took:?}");
}
