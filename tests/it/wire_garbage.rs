//! Garbage on the wire does not crash a node. A test peer that holds the cluster key opens
//! each Shoal protocol over an authenticated, encrypted stream (raw TCP garbage would die in
//! the handshake and prove nothing) and sends random bytes, a huge length prefix, and a
//! valid frame of the wrong type. The node logs each error and stays a voter. Then the same
//! peer lies in well-formed data requests — a byte range past an object's end or wrapping
//! around, too many pieces or objects at once, a key outside the store, other bytes over a
//! committed object — and each is refused with a reason, nothing is stored or overwritten.
//! Last, from the node's own host, it offers hard links that lie — another host, a file
//! outside any store, a symbolic link named as an object, another user's file, a path of
//! 60 KiB — and each is refused with a reason, nothing is linked; one of 900 KiB is past
//! what a data request may be, and its stream is closed unanswered.

use std::time::Duration;

use crate::common;
use crate::common::cluster::*;
use crate::peer;
use crate::peer::TestPeer;
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{Multiaddr, PeerId};
use shoal_net::codec;
use shoal_net::wire::{DataFrame, DataRequest, Hello, PeerInfo, Piece, MAX_BATCH_KEYS};

/// The node's answer on a data stream: one frame, within 10 s.
async fn answer(stream: &mut libp2p::Stream) -> DataFrame {
    tokio::time::timeout(Duration::from_secs(10), DataFrame::read(stream, 1 << 20))
        .await
        .expect("an answer in time")
        .expect("a frame")
}

/// Garbage on every protocol: random bytes, a frame longer than allowed, and a frame of the
/// wrong type (a hello on the data protocol); each stream read to its end (at most 10 s).
async fn send_garbage(test_peer: &TestPeer) {
    let wrong_type = codec::encode(&DataFrame::Chunk(vec![1, 2, 3]));
    let hello = codec::encode(&Hello {
        node_id: 1,
        info: PeerInfo::default(),
        cluster_id: None,
        build: Default::default(),
    });
    let mut random = vec![0u8; 4096];
    rand::fill(&mut random[..]);
    let mut framed_wrong = (wrong_type.len() as u32).to_be_bytes().to_vec();
    framed_wrong.extend_from_slice(&wrong_type);
    let mut framed_hello_on_data = (hello.len() as u32).to_be_bytes().to_vec();
    framed_hello_on_data.extend_from_slice(&hello);
    for protocol in ["/shoal/raft/1", "/shoal/ctl/1", "/shoal/data/1"] {
        let wrong = if protocol == "/shoal/data/1" {
            &framed_hello_on_data
        } else {
            &framed_wrong
        };
        for payload in [
            &random[..],
            &[0xff, 0xff, 0xff, 0xff, 1, 2, 3][..],
            &wrong[..],
        ] {
            let mut stream = test_peer.open(protocol).await;
            let _ = stream.write_all(payload).await;
            let _ = stream.close().await;
            // The node answers with nothing usable and closes the stream.
            let mut rest = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
        }
    }
}

/// Links that lie, each with what its refusal says: to another host's file, to a file
/// outside any store, through a symbolic link, with a path of 60 KiB, and (as root) to
/// another user's file; and one whose path is 900 KiB, over what a request may take.
struct Lies {
    links: Vec<(DataRequest, &'static str)>,
    huge: DataRequest,
    names: [&'static str; 5],
}

/// The [`Lies`] for `job` of cluster `cluster_id`, their files made in `dir`.
fn lying_links(dir: &std::path::Path, job: &str, cluster_id: u64) -> Lies {
    // What the lying links name: a file outside any store, and in a directory laid out as a
    // store, a symbolic link to it and a file of another user (only root can make one).
    let secret = dir.join("secret.txt");
    let secret_bytes = b"not an object of any store\n".to_vec();
    std::fs::write(&secret, &secret_bytes).unwrap();
    let fake = dir.join("fake").join("blobs");
    std::fs::create_dir_all(fake.join(job)).unwrap();
    let link_key = |name: &str| format!("{job}/{name}");
    std::os::unix::fs::symlink(&secret, fake.join(link_key("lie-symlink"))).unwrap();
    let theirs = fake.join(link_key("lie-theirs"));
    std::fs::write(&theirs, &secret_bytes).unwrap();
    // SAFETY: geteuid has no preconditions; chown takes a NUL-terminated path.
    let as_root = unsafe { libc::geteuid() } == 0;
    if as_root {
        let c = std::ffi::CString::new(theirs.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::chown(c.as_ptr(), 65534, 65534) }, 0);
    } else {
        eprintln!("not root: the link to another user's file is not offered");
    }
    let host = shoal_node::storage::link::host_id().expect("this host's id");
    let crc = {
        let mut sum = shoal_jobs::checksum::Running::default();
        sum.update(&secret_bytes);
        sum.value()
    };
    let link = |name: &str, host: &str, path: &std::path::Path| DataRequest::Link {
        cluster_id,
        key: link_key(name),
        host: host.into(),
        path: path.to_string_lossy().into_owned(),
        len: secret_bytes.len() as u64,
        checksum: crc,
    };
    // A path of 60 KiB (a data request may take 64 KiB) and one of 900 KiB.
    let path_of = |kib: usize| {
        std::path::PathBuf::from(format!(
            "/{}blobs/{}",
            "a/".repeat(kib << 9),
            link_key("lie-long")
        ))
    };
    let (long, huge) = (path_of(60), path_of(900));
    let mut lying_links = vec![
        (link("lie-host", "another host", &secret), "host"),
        (link("lie-secret", &host, &secret), "is not object"),
        (
            link("lie-symlink", &host, &fake.join(link_key("lie-symlink"))),
            "is not a file",
        ),
        (link("lie-long", &host, &long), "storing a link to"),
    ];
    if as_root {
        lying_links.push((link("lie-theirs", &host, &theirs), "not owned"));
    }
    let link_names = [
        "lie-host",
        "lie-secret",
        "lie-symlink",
        "lie-long",
        "lie-theirs",
    ];
    Lies {
        huge: link("lie-long", &host, &huge),
        links: lying_links,
        names: link_names,
    }
}

/// A word count submitted to `target`, to its end: the job's id.
fn word_count(dir: &std::path::Path, target: &NodeProc) -> String {
    let input = dir.join("in.txt");
    std::fs::write(&input, "a b c\n".repeat(50)).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["submit", "--wait", "--app", "wordcount", "--node"])
        .arg(format!("http://{}", target.http))
        .arg("--input")
        .arg(&input)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn garbage_on_every_protocol_is_logged_and_the_node_stays_a_voter() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let key_file = common::keygen(dir.path());
    let key_arg = key_file.to_string_lossy().into_owned();
    // Three voters and a learner; the learner stops, and the test peer speaks with its
    // identity key: a member that lies (a stranger's data requests are refused before any
    // of this is looked at).
    let mut nodes = start_cluster(dir.path(), 4, &["--expect", "3", "--cluster-key", &key_arg]);
    let leader = wait_agreed(&nodes.iter().collect::<Vec<_>>(), 3, 60);
    let learner_id = wait_for(60, "a learner", || {
        members(&nodes[0].cluster()?, "learner").pop()
    });
    let learner = nodes.iter().position(|n| n.node_id == learner_id).unwrap();
    nodes[learner].kill();
    let member_key = peer::identity_of(&nodes[learner].data);
    nodes.remove(learner);
    let target = &nodes[0];
    let term_before = target.cluster().unwrap()["term"].as_u64().unwrap();

    // A finished job's part file on the target: an object to ask for wrong ranges of.
    let job = word_count(dir.path(), target);
    let v = job_at(&target.http, &job).unwrap();
    let reduce = common::three::tasks(&v)
        .iter()
        .find(|t| t.kind == "reduce")
        .unwrap();
    let part_size = reduce.output_sizes[0];
    assert!(part_size > 0);
    // Each reduce attempt writes its own part object; the table names the accepted one.
    let accepted = reduce
        .attempts
        .iter()
        .find(|a| a.state == "done")
        .unwrap()
        .attempt;
    let part = format!("{job}/out/part-00000.a{accepted}");
    let lied_into_store = target.data.join("blobs").join(&job).join("x");
    let part_path = target.data.join("blobs").join(&part);
    let original = std::fs::read(&part_path).unwrap();
    let original_copy = original.clone();
    let cluster_id = u64::from_str_radix(
        target.cluster().unwrap()["cluster_id"].as_str().unwrap(),
        16,
    )
    .unwrap();

    let linked_dir = target.data.join("blobs").join(&job);
    let Lies {
        links: lying_links,
        huge,
        names: link_names,
    } = lying_links(dir.path(), &job, cluster_id);

    let psk = peer::psk(&key_file);
    let peer: PeerId = target.peer_id.parse().unwrap();
    let addr: Multiaddr = target.addrs[0].parse().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let test_peer = TestPeer::connect(member_key, Some(psk), peer, addr).await;
        send_garbage(&test_peer).await;

        // Well-formed requests that lie: each answered with an error naming why.
        let piece = |key: &str, offset: u64, len: u64| Piece {
            key: key.into(),
            offset,
            len,
        };
        let lies: Vec<(DataRequest, &str)> = vec![
            (
                DataRequest::FetchMany {
                    cluster_id,
                    pieces: vec![piece(&part, 0, part_size + 1)],
                },
                "holds",
            ),
            (
                DataRequest::FetchMany {
                    cluster_id,
                    pieces: vec![piece(&part, u64::MAX, 2)],
                },
                "holds",
            ),
            (
                DataRequest::FetchMany {
                    cluster_id,
                    pieces: vec![piece(&part, 0, 1); MAX_BATCH_KEYS + 1],
                },
                "at most",
            ),
            (
                DataRequest::PutMany {
                    cluster_id,
                    keys: vec![format!("{job}/x"); MAX_BATCH_KEYS + 1],
                },
                "at most",
            ),
            (
                DataRequest::FetchMany {
                    cluster_id,
                    pieces: vec![piece("../node.redb", 0, 1)],
                },
                "no object",
            ),
        ];
        // With the links that lie, from the node's own host.
        for (lie, says) in lies.into_iter().chain(lying_links) {
            let mut stream = test_peer.open("/shoal/data/1").await;
            codec::write_frame(&mut stream, &lie).await.unwrap();
            let answer = answer(&mut stream).await;
            let what = format!("{lie:?}");
            let what = what.get(..160).unwrap_or(&what);
            match answer {
                DataFrame::Error(why) => assert!(
                    why.contains(says),
                    "{what}…: {}",
                    why.get(..300).unwrap_or(&why)
                ),
                other => panic!("{what}… was answered with {other:?}"),
            }
        }

        // A Put over a committed object: other bytes are refused; the same bytes again (a
        // retry whose answer was lost) are taken as stored.
        for (bytes, taken) in [(b"forged part\n".to_vec(), false), (original, true)] {
            let mut stream = test_peer.open("/shoal/data/1").await;
            let put = DataRequest::Put {
                cluster_id,
                key: part.clone(),
            };
            codec::write_frame(&mut stream, &put).await.unwrap();
            codec::write_frame(&mut stream, &DataFrame::Chunk(bytes))
                .await
                .unwrap();
            codec::write_frame(&mut stream, &DataFrame::End)
                .await
                .unwrap();
            let answer = answer(&mut stream).await;
            match (answer, taken) {
                (DataFrame::End, true) => {}
                (DataFrame::Error(why), false) => {
                    assert!(why.contains("never overwritten"), "{why}")
                }
                (other, _) => panic!("a Put over {part} was answered with {other:?}"),
            }
        }

        let mut stream = test_peer.open("/shoal/data/1").await;
        let _ = codec::write_frame(&mut stream, &huge).await;
        let closed = tokio::time::timeout(
            Duration::from_secs(10),
            DataFrame::read(&mut stream, 1 << 20),
        )
        .await
        .expect("the stream ends in time");
        assert!(closed.is_err(), "a link request of 900 KiB: {closed:?}");
    });
    for name in link_names {
        assert!(!linked_dir.join(name).exists(), "{name} was not linked");
    }
    assert!(!lied_into_store.exists(), "nothing was stored");
    assert_eq!(
        std::fs::read(&part_path).unwrap(),
        original_copy,
        "the committed part is unchanged"
    );

    // Each protocol's errors were logged; the node still runs and is still a voter.
    let log = wait_for(30, "the errors in the node's log", || {
        let log = target.log_text();
        let raft = log.matches("protocol=\"/shoal/raft/1\"").count()
            + log.matches("protocol=/shoal/raft/1").count();
        let ctl = log.matches("protocol=\"/shoal/ctl/1\"").count()
            + log.matches("protocol=/shoal/ctl/1").count();
        let data = log.matches("protocol=\"/shoal/data/1\"").count()
            + log.matches("protocol=/shoal/data/1").count();
        if std::env::var("SHOAL_DEBUG_LOG").is_ok() {
            eprintln!("raft {raft} ctl {ctl} data {data}\n{log}");
        }
        (raft >= 3 && ctl >= 3 && data >= 3).then_some(log)
    });
    assert!(!log.contains("panicked"), "{log}");
    let v = target.cluster().expect("the node still answers");
    assert_eq!(v["this"]["membership"].as_str(), Some("voter"));
    let agreed = wait_agreed(&nodes.iter().collect::<Vec<_>>(), 3, 30);
    assert_eq!(
        agreed, leader,
        "garbage did not cost the cluster its leader"
    );
    assert_eq!(
        target.cluster().unwrap()["term"].as_u64().unwrap(),
        term_before,
        "no election was triggered"
    );
}
