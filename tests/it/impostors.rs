//! Identities are bound to keys. On a LAN of network namespaces, a crafted peer on a fifth
//! machine speaks the wire types directly to the leader: with the cluster key but a key of its
//! own (a key holder, not a member) it may say hello and nothing else — its proposal, its
//! heartbeat, its Raft RPC and its data are refused and no job appears; with a member's
//! identity key it may heartbeat under that member's id but not under another's, and may not
//! report another member's attempt or assign tasks. The cluster goes on working. A key
//! holder cannot push a plain worker jobs either. Needs root
//! and iproute2 (skipped with a message elsewhere, a failure under SHOAL_REQUIRE_NETNS=1).

use crate::common::cluster::*;
use crate::common::netns::{in_ns, setup, start_on};
use crate::common::*;
use crate::peer::{heartbeat, identity_of, psk, TestPeer};
use libp2p::{Multiaddr, PeerId};
use shoal_jobs::cluster::{Command as JobCommand, TaskKind};
use shoal_jobs::counters::Counters;
use shoal_net::wire::{CtlRequest, CtlResponse, DataFrame, DataRequest, RaftRequest, Reason};
use shoal_net::{codec, Keypair};
use shoal_node::cluster::pushed::Push;
use shoal_node::cluster::state::Command;

/// Run `f` on a runtime of its own on the LAN's fifth machine, the crafted peer's.
fn on_fifth_machine<T: Send>(
    lan: &crate::common::netns::Lan,
    f: impl std::future::Future<Output = T> + Send,
) -> T {
    in_ns(&lan.hosts[4].ns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(f)
    })
}

/// Send `req` over `/shoal/raft/1` from `peer`; the answer, as text.
async fn raft_ask(peer: &TestPeer, req: &RaftRequest) -> String {
    let mut st = peer.open("/shoal/raft/1").await;
    codec::write_frame(&mut st, req).await.unwrap();
    let r: shoal_net::wire::RaftResponse = codec::read_frame(&mut st, 1 << 20).await.unwrap();
    format!("{r:?}")
}

/// `shoal submit --wait` of a word count of `corpus` to `node`, from its machine.
fn wordcount(node: &NodeProc, corpus: &std::path::Path) -> std::process::Output {
    run(node
        .command()
        .args([
            "submit",
            "--wait",
            "--app",
            "wordcount",
            "-R",
            "2",
            "--node",
        ])
        .arg(format!("http://{}", node.http))
        .arg("--input")
        .arg(corpus))
}

fn propose(cluster_id: u64, cmd: &Command) -> CtlRequest {
    CtlRequest::Propose {
        cluster_id,
        command: codec::encode(cmd),
    }
}

/// The answer is a refusal whose text says `says`; of kind `reason` when it came typed. The
/// crafted peer says no hello, so the node answers it as it would a node of protocol 1.5:
/// with the text alone.
fn refused(answer: &CtlResponse, reason: Reason, says: &str) {
    let Some(r) = answer.refusal() else {
        panic!("expected a {reason:?} refusal naming {says:?}, got {answer:?}");
    };
    assert!(r.why.contains(says), "refused, but: {r}");
    if let CtlResponse::Declined(r) = answer {
        assert_eq!(r.reason, reason, "refused, but: {r}");
    }
}

/// What a key holder proposes that it may not: a job of its own (whose mapper would touch
/// `marker`), a report of map attempt `(map, attempt)` of `job` that ran on another node,
/// and the next attempt of it assigned to member `member_id` (only the manager assigns).
fn lies(
    job: &str,
    (map, attempt): (u32, u32),
    member_id: u64,
    marker: &std::path::Path,
) -> (Command, Command, Command) {
    let stranger_job = {
        let spec = shoal_jobs::spec::JobSpec::new(
            "from-a-stranger",
            vec!["in".into()],
            shoal_jobs::spec::JobKind::Streaming {
                map: shoal_jobs::spec::Program::Shell(format!("touch {}; cat", marker.display())),
                reduce: shoal_jobs::spec::Program::Shell("cat".into()),
                combine: None,
            },
        );
        Command::Jobs(JobCommand::SubmitJob {
            id: "j-stranger".into(),
            spec: Box::new(spec),
            splits: vec![],
            partitioner: shoal_jobs::partition::Partitioner::Hash,
            at_ms: 1,
            counters: Default::default(),
        })
    };
    let report = Command::Jobs(JobCommand::TaskFinished {
        job: job.to_string(),
        kind: TaskKind::Map,
        index: map,
        attempt,
        sizes: vec![0, 0],
        checksums: vec![0, 0],
        holders: vec![member_id],
        counters: Counters::default(),
        at_ms: 1,
    });
    let assign = Command::Jobs(JobCommand::Assign {
        job: job.to_string(),
        kind: TaskKind::Map,
        index: map,
        attempt: attempt + 1,
        node: member_id,
        backup: false,
        at_ms: 1,
    });
    (stranger_job, report, assign)
}

#[test]
fn a_key_holder_is_not_a_member_and_a_member_cannot_speak_for_another() {
    let Some((_serial, dir, lan)) = setup(
        "a_key_holder_is_not_a_member_and_a_member_cannot_speak_for_another",
        &[5],
    ) else {
        return;
    };
    // Three voters and a learner (whichever the bootstrap did not choose); h5 is the crafted
    // peer's machine.
    let mut nodes = start_on(dir.path(), &lan, &[0, 1, 2, 3], &["--expect", "3"]);
    let refs: Vec<&NodeProc> = nodes.iter().collect();
    let leader_id = wait_agreed(&refs, 3, 60);
    let leader = nodes.iter().position(|n| n.node_id == leader_id).unwrap();
    let learner_id = wait_for(60, "the fourth node to be a learner", || {
        members(&nodes[leader].cluster()?, "learner").pop()
    });
    let learner = nodes.iter().position(|n| n.node_id == learner_id).unwrap();

    // A finished job: attempts that ran on known members.
    let corpus = corpus(dir.path(), 4, 100);
    let o = wordcount(&nodes[leader], &corpus);
    assert!(o.status.success(), "{}", text(&o));
    let job = job_id(&o);
    let (_, v) = nodes[leader].get(&format!("/api/v1/jobs/{job}")).unwrap();
    let (map, attempt, ran_on) = v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "map")
        .flat_map(|t| {
            let index: u32 = t["id"].as_str().unwrap()[2..].parse().unwrap();
            t["attempts"].as_array().unwrap().iter().map(move |a| {
                (
                    index,
                    a["attempt"].as_u64().unwrap() as u32,
                    a["node"].as_str().unwrap().to_string(),
                )
            })
        })
        .find(|(_, _, n)| *n != nodes[learner].node_id)
        .expect("a map attempt ran on a node other than the learner");
    let other = u64::from_str_radix(&ran_on, 16).unwrap();
    let view = nodes[leader].cluster().unwrap();
    let cluster_id = u64::from_str_radix(view["cluster_id"].as_str().unwrap(), 16).unwrap();

    // The learner stops; its identity key is what the crafted peer will speak with.
    nodes[learner].kill();
    let member_key = identity_of(&nodes[learner].data);
    let member_id = u64::from_str_radix(&nodes[learner].node_id, 16).unwrap();
    let key = psk(&dir.path().join("lan.key"));
    let target: PeerId = nodes[leader].peer_id.parse().unwrap();
    // Its LAN address, on the port it listens on everywhere.
    let port = nodes[leader].addrs[0].rsplit('/').next().unwrap();
    let addr: Multiaddr = format!("/ip4/{}/tcp/{port}", lan.hosts[leader].addr)
        .parse()
        .unwrap();
    let marker = dir.path().join("stranger-ran");
    let (stranger_job, report, assign) = lies(&job, (map, attempt), member_id, &marker);
    let planted = format!("{job}/planted");
    let answers = on_fifth_machine(&lan, async move {
        let mut said = Vec::new();
        // A key holder that is not a member.
        let stranger_key = Keypair::generate_ed25519();
        let stranger_id =
            shoal_jobs::partition::stable_hash(&stranger_key.public().to_peer_id().to_bytes());
        let s = TestPeer::connect(stranger_key, Some(key), target, addr.clone()).await;
        said.push((
            "stranger heartbeat",
            s.ctl(&heartbeat(cluster_id, stranger_id)).await,
        ));
        said.push((
            "stranger proposal",
            s.ctl(&propose(cluster_id, &stranger_job)).await,
        ));
        let garbage = RaftRequest {
            cluster_id,
            payload: vec![1, 2, 3],
        };
        let raft = raft_ask(&s, &garbage).await;
        let data = {
            let mut st = s.open("/shoal/data/1").await;
            codec::write_frame(
                &mut st,
                &DataRequest::Put {
                    cluster_id,
                    key: planted,
                },
            )
            .await
            .unwrap();
            let r = DataFrame::read(&mut st, 1 << 20).await.unwrap();
            format!("{r:?}")
        };
        // A member (the stopped learner's key).
        let m = TestPeer::connect(member_key, Some(key), target, addr).await;
        said.push((
            "member heartbeat as another",
            m.ctl(&heartbeat(cluster_id, other)).await,
        ));
        said.push((
            "member heartbeat as itself",
            m.ctl(&heartbeat(cluster_id, member_id)).await,
        ));
        said.push((
            "member report of another's attempt",
            m.ctl(&propose(cluster_id, &report)).await,
        ));
        said.push((
            "member assignment",
            m.ctl(&propose(cluster_id, &assign)).await,
        ));
        // Everyone's heartbeats (what a learner asks the leader for): members only.
        said.push((
            "stranger asking for the heartbeats heard",
            s.ctl(&CtlRequest::Heard { cluster_id }).await,
        ));
        // A command one byte over the log's bound: an append carrying it could never
        // be sent, and nothing after it would commit.
        let huge = CtlRequest::Propose {
            cluster_id,
            command: vec![0; shoal_node::cluster::state::MAX_COMMAND_BYTES + 1],
        };
        said.push(("member proposal over the bound", m.ctl(&huge).await));
        // The first piece of a snapshot under an old vote: it would reset a real
        // leader's transfer to this node.
        let piece = raft_ask(&m, &old_snapshot_piece(cluster_id, member_id)).await;
        (said, raft, data, piece)
    });
    let (said, raft, data, piece) = answers;
    for (what, answer) in &said {
        println!("{what}: {answer:?}");
    }
    println!("stranger raft: {raft}\nstranger put: {data}");
    refused(&said[0].1, Reason::NotAMember, "is not a member");
    refused(&said[1].1, Reason::NotAMember, "is not a member");
    assert!(
        (raft.contains("Refused") || raft.contains("NotAMember"))
            && raft.contains("is not a member"),
        "{raft}"
    );
    assert!(
        data.contains("Error") && data.contains("members only"),
        "{data}"
    );
    refused(&said[2].1, Reason::NotAMember, "in the name of node");
    // A learner's heartbeat is acknowledged (a voter's is answered with everyone's).
    assert!(
        matches!(&said[3].1, CtlResponse::Ok),
        "a member's own heartbeat is taken: {:?}",
        said[3].1
    );
    refused(
        &said[4].1,
        Reason::Forbidden,
        &format!("which runs on node {ran_on}"),
    );
    refused(&said[5].1, Reason::Forbidden, "only the manager");
    refused(&said[6].1, Reason::NotAMember, "is not a member");
    refused(&said[7].1, Reason::Malformed, "over the log's bound");
    println!("member snapshot piece under term 1: {piece}");
    assert!(piece.contains("not as new as this node's"), "{piece}");
    let logged = nodes[leader].log_text();
    assert!(
        logged.contains("refused a proposal") && logged.contains("over the log's bound"),
        "the leader logs the oversized proposal"
    );

    // Nothing the impostors said changed the cluster: one job, no stranger's mapper ran, the
    // stranger is in no heartbeat or view, and a new job still runs.
    let (_, jobs) = nodes[leader].get("/api/v1/jobs?tasks=false").unwrap();
    assert_eq!(jobs.as_array().unwrap().len(), 1, "{jobs}");
    assert!(!marker.exists());
    let (_, v) = nodes[leader].get(&format!("/api/v1/jobs/{job}")).unwrap();
    assert_eq!(v["state"], "succeeded");
    let other = (0..4).find(|&i| i != leader && i != learner).unwrap();
    let o = wordcount(&nodes[other], &corpus);
    assert!(o.status.success(), "{}", text(&o));
    let ids: Vec<String> = nodes[leader].cluster().unwrap()["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ids.len(),
        4,
        "three voters and the stopped learner: {ids:?}"
    );
}

/// A Raft request from `from`: the first piece of a snapshot under a vote of term 1.
fn old_snapshot_piece(cluster_id: u64, from: u64) -> RaftRequest {
    let piece = shoal_raft::network::SnapshotRequest {
        vote: shoal_raft::types::Vote::new_committed(1, from),
        meta: shoal_raft::types::SnapshotMeta::default(),
        offset: 0,
        total: 1 << 20,
        data: vec![0; 1024],
    };
    let payload = shoal_node::cluster::rpc::Payload {
        kind: shoal_raft::RpcKind::Snapshot,
        body: codec::encode(&piece),
    };
    RaftRequest {
        cluster_id,
        payload: codec::encode(&payload),
    }
}

/// A plain worker takes its jobs from the leader's pushes only. A key holder that is no
/// member — on a fifth machine, speaking the wire types directly to the worker — is refused
/// whether its push is malformed, names the leader it is not, or names itself leader of a
/// later term while the real leader keeps pushing; the worker then still runs a job.
#[test]
fn a_key_holder_cannot_push_a_plain_worker_jobs() {
    let Some((_serial, dir, lan)) = setup("a_key_holder_cannot_push_a_plain_worker_jobs", &[5])
    else {
        return;
    };
    let nodes = start_on(
        dir.path(),
        &lan,
        &[0, 1, 2, 3],
        &["--expect", "3", "--voters", "3", "--learners", "0"],
    );
    let refs: Vec<&NodeProc> = nodes.iter().collect();
    let leader_id = wait_agreed(&refs, 3, 60);
    let leader = nodes.iter().position(|n| n.node_id == leader_id).unwrap();
    let worker_id = wait_for(60, "the fourth node to be a plain worker", || {
        members(&nodes[leader].cluster()?, "worker").pop()
    });
    let worker = nodes.iter().position(|n| n.node_id == worker_id).unwrap();
    // The worker holds the leader's pushes: its view names the leader.
    wait_for(30, "the worker to know the leader", || {
        let v = nodes[worker].cluster()?;
        (v["leader"]["id"].as_str()? == leader_id).then_some(())
    });
    let view = nodes[leader].cluster().unwrap();
    let cluster_id = u64::from_str_radix(view["cluster_id"].as_str().unwrap(), 16).unwrap();
    let leader_num = u64::from_str_radix(&leader_id, 16).unwrap();
    let key = psk(&dir.path().join("lan.key"));
    let target: PeerId = nodes[worker].peer_id.parse().unwrap();
    let port = nodes[worker].addrs[0].rsplit('/').next().unwrap();
    let addr: Multiaddr = format!("/ip4/{}/tcp/{port}", lan.hosts[worker].addr)
        .parse()
        .unwrap();
    let said = on_fifth_machine(&lan, async move {
        let stranger_key = Keypair::generate_ed25519();
        let stranger_id =
            shoal_jobs::partition::stable_hash(&stranger_key.public().to_peer_id().to_bytes());
        let s = TestPeer::connect(stranger_key, Some(key), target, addr).await;
        let push = |p: &Push| CtlRequest::Push {
            cluster_id,
            push: codec::encode(p),
        };
        // A term no leader reached, everything from scratch: the whole table its own.
        let own = Push {
            term: 1 << 40,
            leader: stranger_id,
            seq: 1,
            base: 0,
            roster: Some(vec![]),
            ..Push::default()
        };
        let in_leaders_name = Push {
            leader: leader_num,
            ..own.clone()
        };
        let garbage = CtlRequest::Push {
            cluster_id,
            push: vec![0xff, 0x00, 0x13],
        };
        vec![
            ("malformed push", s.ctl(&garbage).await),
            (
                "push in the leader's name",
                s.ctl(&push(&in_leaders_name)).await,
            ),
            ("push as leader of a later term", s.ctl(&push(&own)).await),
        ]
    });
    for (what, answer) in &said {
        println!("{what}: {answer:?}");
    }
    refused(&said[0].1, Reason::Malformed, "a malformed push");
    refused(&said[1].1, Reason::NotAMember, "in the name of node");
    refused(
        &said[2].1,
        Reason::NotTheLeader,
        "not in the cluster's roster",
    );
    // The worker still follows the real leader and runs a job submitted to it.
    let v = nodes[worker].cluster().unwrap();
    assert_eq!(v["leader"]["id"].as_str(), Some(leader_id.as_str()), "{v}");
    let corpus = corpus(dir.path(), 4, 100);
    let o = wordcount(&nodes[worker], &corpus);
    assert!(o.status.success(), "{}", text(&o));
    let key = psk(&dir.path().join("lan.key"));
    members_lie_to_a_worker_and_the_leader(
        nodes,
        (leader, worker),
        (&lan, key),
        cluster_id,
        &corpus,
    );
}

/// A voter's key pushes the worker under a term no election reaches; then the worker's key,
/// its node stopped, sends the leader an AppendEntries under a higher term carrying
/// `NodeLost` of the leader. Each is refused, the refusal is logged, and jobs still run.
fn members_lie_to_a_worker_and_the_leader(
    mut nodes: Vec<NodeProc>,
    (leader, worker): (usize, usize),
    (lan, key): (&crate::common::netns::Lan, shoal_net::PreSharedKey),
    cluster_id: u64,
    corpus: &std::path::Path,
) {
    let voter = (0..4).find(|&i| i != leader && i != worker).unwrap();
    nodes[voter].kill();
    let voter_key = identity_of(&nodes[voter].data);
    let voter_num = u64::from_str_radix(&nodes[voter].node_id, 16).unwrap();
    let at = |i: usize| {
        let port = nodes[i].addrs[0].rsplit('/').next().unwrap().to_string();
        let addr: Multiaddr = format!("/ip4/{}/tcp/{port}", lan.hosts[i].addr)
            .parse()
            .unwrap();
        (nodes[i].peer_id.parse::<PeerId>().unwrap(), addr)
    };
    let (to_worker, worker_addr) = at(worker);
    let (to_leader, leader_addr) = at(leader);
    let forged = Push {
        term: 1 << 40,
        leader: voter_num,
        seq: 1,
        base: 0,
        roster: Some(vec![]),
        ..Push::default()
    };
    let answer = on_fifth_machine(lan, async move {
        let v = TestPeer::connect(voter_key, Some(key), to_worker, worker_addr).await;
        v.ctl(&CtlRequest::Push {
            cluster_id,
            push: codec::encode(&forged),
        })
        .await
    });
    println!("a voter's push of term 2^40: {answer:?}");
    refused(&answer, Reason::NotTheLeader, "no election gets that far");
    wait_for(10, "the worker to log the refusal", || {
        nodes[worker]
            .log_text()
            .contains("no election gets that far")
            .then_some(())
    });
    let o = wordcount(&nodes[worker], corpus);
    assert!(o.status.success(), "{}", text(&o));

    // The worker stops; its key sends the leader entries under a higher term.
    nodes[worker].kill();
    let worker_key = identity_of(&nodes[worker].data);
    let worker_num = u64::from_str_radix(&nodes[worker].node_id, 16).unwrap();
    let leader_num = u64::from_str_radix(&nodes[leader].node_id, 16).unwrap();
    let raft = on_fifth_machine(lan, async move {
        let w = TestPeer::connect(worker_key, Some(key), to_leader, leader_addr).await;
        let req = RaftRequest {
            cluster_id,
            payload: codec::encode(&forged_append(worker_num, leader_num)),
        };
        raft_ask(&w, &req).await
    });
    println!("a plain worker's AppendEntries of term 2^40: {raft}");
    assert!(
        raft.contains("Forbidden") && raft.contains("is not in the Raft membership"),
        "{raft}"
    );
    assert!(nodes[leader].log_text().contains("refused a Raft request"));
    let o = wordcount(&nodes[leader], corpus);
    assert!(o.status.success(), "{}", text(&o));
    let v = nodes[leader].cluster().unwrap();
    assert_eq!(v["leader"]["id"], nodes[leader].node_id.as_str(), "{v}");
}

/// An AppendEntries from `from` as leader of term 2^40, carrying `NodeLost` of `victim`.
fn forged_append(from: u64, victim: u64) -> shoal_node::cluster::rpc::Payload {
    use shoal_raft::types::{Entry, LogId, Vote};
    let term = 1u64 << 40;
    let lost = Command::Jobs(JobCommand::NodeLost {
        node: victim,
        at_ms: 1,
    });
    let entry = Entry {
        log_id: LogId::new_term_index(term, 1 << 20),
        payload: openraft::EntryPayload::Normal(shoal_raft::Cmd(codec::encode(&lost))),
    };
    let req = openraft::raft::AppendEntriesRequest::<shoal_raft::TypeConfig> {
        vote: Vote::new_committed(term, from),
        prev_log_id: None,
        entries: vec![entry],
        leader_commit: Some(LogId::new_term_index(term, 1 << 20)),
    };
    shoal_node::cluster::rpc::Payload {
        kind: shoal_raft::RpcKind::Append,
        body: codec::encode(&req),
    }
}
