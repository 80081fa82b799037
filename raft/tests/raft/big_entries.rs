//! Whatever the log holds, no message outgrows the transport's frame: a learner added after
//! twelve 12 MiB commands (144 MiB, more than two 64 MiB frames) catches up over a network that
//! refuses any message over 64 MiB, as the real one does — from the log, in appends batched
//! by bytes, and from a snapshot of all of it, sent in pieces.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shoal_raft::{
    handle_rpc, AppState, Cmd, Inbound, NodeId, NodeInfo, Raft, RaftRpc, RpcError, RpcKind, Store,
    Timing,
};

/// The transport's frame limit.
const FRAME: usize = 64 << 20;

#[derive(Serialize, Deserialize)]
struct Blob(#[serde(with = "serde_bytes")] Vec<u8>);

/// A state that keeps every command's bytes, so its snapshot is as big as its log.
#[derive(Default, Serialize, Deserialize)]
struct Blobs(Vec<Blob>);

impl AppState for Blobs {
    type Command = Blob;
    type Response = usize;
    fn apply(&mut self, b: Blob) -> usize {
        self.0.push(b);
        self.0.len()
    }
}

type Nodes = Arc<Mutex<HashMap<NodeId, (Raft<Blobs>, Arc<Inbound>)>>>;

/// In-process delivery with the real transport's frame limit; `from` is the sender.
#[derive(Clone)]
struct Mesh {
    nodes: Nodes,
    from: NodeId,
    /// The largest message so far, and how many snapshot pieces were sent.
    largest: Arc<Mutex<(usize, usize)>>,
}

impl RaftRpc for Mesh {
    async fn call(
        &self,
        target: NodeId,
        _node: &NodeInfo,
        kind: RpcKind,
        body: Vec<u8>,
        _timeout: Duration,
    ) -> Result<Vec<u8>, RpcError> {
        if body.len() > FRAME {
            return Err(RpcError::Unreachable(format!(
                "frame of {} bytes is over the {FRAME}-byte limit",
                body.len()
            )));
        }
        {
            let mut l = self.largest.lock().unwrap();
            l.0 = l.0.max(body.len());
            if kind == RpcKind::Snapshot {
                l.1 += 1;
            }
        }
        let target = self.nodes.lock().unwrap().get(&target).cloned();
        let Some((raft, inbound)) = target else {
            return Err(RpcError::Unreachable("not started".into()));
        };
        handle_rpc(&raft, &inbound, self.from, kind, &body).await
    }
}

async fn start(
    id: NodeId,
    nodes: &Nodes,
    largest: &Arc<Mutex<(usize, usize)>>,
    timing: Timing,
) -> Raft<Blobs> {
    let mesh = Mesh {
        nodes: Arc::clone(nodes),
        from: id,
        largest: Arc::clone(largest),
    };
    let store = Store::in_memory().unwrap();
    let (raft, _) = shoal_raft::start::<Blobs, _>(id, &store, timing, mesh, id)
        .await
        .unwrap();
    nodes
        .lock()
        .unwrap()
        .insert(id, (raft.clone(), Arc::new(Inbound::default())));
    raft
}

/// Twelve 12 MiB commands on a one-node cluster, then a learner; the learner catches up. The
/// largest message sent and the number of snapshot pieces.
async fn learner_catches_up(timing: Timing) -> (usize, usize) {
    let nodes: Nodes = Arc::default();
    let largest = Arc::new(Mutex::new((0, 0)));
    let leader = start(1, &nodes, &largest, timing).await;
    leader
        .initialize(BTreeMap::from([(1, NodeInfo::default())]))
        .await
        .unwrap();
    leader
        .wait(Some(Duration::from_secs(10)))
        .current_leader(1, "node 1 leads")
        .await
        .unwrap();
    for i in 0..12u8 {
        let mut cmd = Vec::new();
        ciborium::into_writer(&Blob(vec![i; 12 << 20]), &mut cmd).unwrap();
        leader.client_write(Cmd(cmd)).await.unwrap();
    }
    let learner = start(2, &nodes, &largest, timing).await;
    leader
        .add_learner(2, NodeInfo::default(), false)
        .await
        .unwrap();
    let last = shoal_raft::metrics(&leader).last_log_index;
    learner
        .wait(Some(Duration::from_secs(60)))
        .applied_index_at_least(last, "the learner catches up")
        .await
        .unwrap();
    leader.shutdown().await.unwrap();
    learner.shutdown().await.unwrap();
    let (sent, pieces) = *largest.lock().unwrap();
    println!(
        "largest message: {:.1} MiB; snapshot pieces: {pieces}",
        sent as f64 / (1 << 20) as f64
    );
    (sent, pieces)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_catches_up_from_a_log_bigger_than_a_frame() {
    let (sent, pieces) = learner_catches_up(Timing::default()).await;
    assert!(sent <= FRAME);
    assert_eq!(pieces, 0, "from the log alone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_catches_up_from_a_snapshot_bigger_than_a_frame() {
    let timing = Timing {
        snapshot_every: 12,
        keep_behind_snapshot: 0,
        ..Timing::default()
    };
    let (sent, pieces) = learner_catches_up(timing).await;
    assert!(sent <= FRAME);
    // More 8 MiB pieces than one frame holds: the snapshot could not have gone whole.
    assert!(pieces > FRAME / (8 << 20), "{pieces} snapshot pieces");
}
