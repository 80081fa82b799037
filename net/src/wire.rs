//! The messages nodes exchange. Every request names the cluster it belongs to, so a node of
//! another cluster is refused on the first message.
//!
//! The invariant: every type here round-trips through CBOR unchanged (property-tested), and
//! byte payloads are `serde_bytes` (a CBOR byte string, not an array of integers).

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use serde::{Deserialize, Serialize};

use crate::refusal::reads_reasons;
pub use crate::refusal::{Reason, Refusal};
pub use crate::version::{Build, Protocol, PROTOCOL, VERSION};

/// A cluster's id: random, chosen once when the cluster is bootstrapped.
pub type ClusterId = u64;

/// How to reach a node and what it serves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// libp2p PeerId, base58.
    pub peer_id: String,
    /// Its listen multiaddrs.
    pub addrs: Vec<String>,
    /// Its HTTP API address.
    pub http: String,
    /// How many tasks it runs at once (`--slots`, by default its host's cores).
    #[serde(default)]
    pub slots: u32,
    /// Its host (kernel boot id, network and mount namespaces) when it takes its share of
    /// the host's cores, `--slots` not given (protocol 1.5): nodes of one host divide its
    /// cores between them. `None` for a node that was given its slots, or cannot tell its
    /// host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// A Raft RPC (`/shoal/raft/1`). The payload is the raft crate's encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftRequest {
    /// The sender's cluster.
    pub cluster_id: ClusterId,
    /// The RPC, encoded by the Raft layer.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// The answer to a [`RaftRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RaftResponse {
    /// Raft's answer, encoded by the Raft layer.
    Ok(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Not accepted (another cluster, not ready, malformed); the reason's text alone, as
    /// nodes of protocol 1.5 and older send and read it.
    Refused(String),
    /// Not accepted, and why as a type (protocol 1.6).
    Declined(Refusal),
}

/// What a node says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Its Raft node id.
    pub node_id: u64,
    /// How to reach it.
    pub info: PeerInfo,
    /// Its cluster, once it has one.
    pub cluster_id: Option<ClusterId>,
    /// Its build and wire protocol.
    #[serde(default)]
    pub build: Build,
}

/// A control request (`/shoal/ctl/1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CtlRequest {
    /// Who are you, and which cluster are you in?
    Hello(Hello),
    /// Bootstrap: become an initial voter of the new cluster `cluster_id`.
    Adopt {
        /// The new cluster.
        cluster_id: ClusterId,
        /// Its initial voters.
        voters: Vec<u64>,
    },
    /// Bootstrap aborted: forget `cluster_id` if nothing was built on it.
    Release {
        /// The abandoned cluster.
        cluster_id: ClusterId,
    },
    /// Add me to your cluster as a learner (forwarded to the leader).
    Join {
        /// The cluster the joiner adopted.
        cluster_id: ClusterId,
        /// The joiner.
        node_id: u64,
        /// How to reach it.
        info: PeerInfo,
    },
    /// Propose a command to the replicated state (forwarded to the leader).
    Propose {
        /// The sender's cluster.
        cluster_id: ClusterId,
        /// The command, encoded by the node.
        #[serde(with = "serde_bytes")]
        command: Vec<u8>,
    },
    /// A worker's heartbeat (to the leader).
    Heartbeat(Heartbeat),
    /// Take me out of the membership (to the leader): an operator removes the sender
    /// (`shoal remove`) and nothing there is needed any more.
    Leave {
        /// The sender's cluster.
        cluster_id: ClusterId,
    },
    /// List your files matching `pattern` under your `--input-root`, cut into line-aligned
    /// splits (a `node:` input being submitted).
    ListInputs {
        /// The sender's cluster.
        cluster_id: ClusterId,
        /// The glob, file or directory, relative to the input root.
        pattern: String,
        /// Target split size.
        split_size: u64,
        /// Longest line accepted.
        max_record: u64,
    },
    /// Every node's last heartbeat you heard (to the leader; protocol 1.2): how a node
    /// that is not a voter shows the whole cluster, on demand.
    Heard {
        /// The sender's cluster.
        cluster_id: ClusterId,
    },
    /// What changed of the jobs that concern a plain worker, and of the roster (from the
    /// leader; protocol 1.3). Answered `Ok` once applied.
    Push {
        /// The sender's cluster.
        cluster_id: ClusterId,
        /// The push, encoded by the node.
        #[serde(with = "serde_bytes")]
        push: Vec<u8>,
    },
}

/// One split of a file read in place, as its node lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputSplit {
    /// The file, relative to the node's input root.
    pub path: String,
    /// First byte.
    pub offset: u64,
    /// Bytes.
    pub len: u64,
}

/// A worker's heartbeat to the leader: its slots and the attempts it is running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The sender's cluster.
    pub cluster_id: ClusterId,
    /// The sender.
    pub node_id: u64,
    /// Tasks it runs at once: its `--slots`, or its share of its host's cores.
    pub slots: u32,
    /// Slots running a task now.
    pub busy: u32,
    /// Its running attempts.
    pub running: Vec<RunningAttempt>,
    /// Bytes its object store holds (splits, map outputs, part files), measured every few
    /// seconds.
    #[serde(default)]
    pub disk_bytes: u64,
    /// Its data dir's disk is under its `--min-free-mb`: it takes no new task.
    #[serde(default)]
    pub disk_low: bool,
    /// Its build and wire protocol.
    #[serde(default)]
    pub build: Build,
}

/// One running attempt, as a heartbeat reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningAttempt {
    /// Job id.
    pub job: String,
    /// Task id (`m-00003`, `r-00001`).
    pub task: String,
    /// Attempt number.
    pub attempt: u32,
    /// Input consumed so far: split bytes for a map, map output bytes pulled for a reduce.
    pub progress_bytes: u64,
    /// Since the attempt started here, ms.
    pub elapsed_ms: u64,
}

/// The answer to a [`CtlRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CtlResponse {
    /// Answer to `Hello`.
    Hello(Hello),
    /// Done.
    Ok,
    /// A proposal was committed and applied; the state's answer, encoded by the node.
    Applied(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Not accepted; the reason's text alone, as nodes of protocol 1.5 and older send and
    /// read it.
    Refused(String),
    /// Not accepted, and why as a type (protocol 1.6).
    Declined(Refusal),
    /// Not accepted: this node belongs to another cluster, `cluster_id`.
    Foreign {
        /// The answering node's cluster.
        cluster_id: ClusterId,
    },
    /// Every node's last heartbeat the leader has heard: its answer to a voter's
    /// `Heartbeat` (a voter that becomes leader knows at once who is alive) and to `Heard`.
    /// Other nodes' heartbeats are answered `Ok`, so the leader's work per heartbeat round
    /// grows with the voters times the nodes, not with the square of the nodes.
    Heartbeats(Vec<HeardHeartbeat>),
    /// The answer to `ListInputs`.
    InputSplits(Vec<InputSplit>),
}

impl CtlResponse {
    /// The leader's answer to a member's heartbeat: every heartbeat it heard (`heard`) for
    /// a voter, which may lead next; an acknowledgement for anyone else.
    pub fn to_heartbeat(
        from_voter: bool,
        heard: impl FnOnce() -> Vec<HeardHeartbeat>,
    ) -> CtlResponse {
        if from_voter {
            CtlResponse::Heartbeats(heard())
        } else {
            CtlResponse::Ok
        }
    }
}

impl CtlResponse {
    /// A refusal of kind `reason`, explained by `why`.
    pub fn declined(reason: Reason, why: impl Into<String>) -> CtlResponse {
        CtlResponse::Declined(Refusal::new(reason, why))
    }

    /// The refusal this answer is, in either form; `None` for any other answer.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            CtlResponse::Declined(r) => Some(r.clone()),
            CtlResponse::Refused(why) => Some(Refusal::from_text(why.clone())),
            _ => None,
        }
    }

    /// This answer as a node of protocol `asker` reads it: a refusal as text alone before
    /// 1.6.
    pub fn for_protocol(self, asker: Option<Protocol>) -> CtlResponse {
        match self {
            CtlResponse::Declined(r) if !reads_reasons(asker) => {
                CtlResponse::Refused(r.into_text())
            }
            other => other,
        }
    }
}

impl RaftResponse {
    /// A refusal of kind `reason`, explained by `why`.
    pub fn declined(reason: Reason, why: impl Into<String>) -> RaftResponse {
        RaftResponse::Declined(Refusal::new(reason, why))
    }

    /// This answer as a node of protocol `asker` reads it: a refusal as text alone before
    /// 1.6.
    pub fn for_protocol(self, asker: Option<Protocol>) -> RaftResponse {
        match self {
            RaftResponse::Declined(r) if !reads_reasons(asker) => {
                RaftResponse::Refused(r.into_text())
            }
            other => other,
        }
    }
}

/// A heartbeat as the leader heard it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeardHeartbeat {
    /// How long ago it came, ms.
    pub ms_ago: u64,
    /// The heartbeat.
    pub heartbeat: Heartbeat,
}

/// A bulk data request (`/shoal/data/1`): the first frame of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataRequest {
    /// Send the object stored under `key`.
    Fetch {
        /// The sender's cluster.
        cluster_id: ClusterId,
        /// The object.
        key: String,
    },
    /// Store the object that follows (`Chunk`s, then `End`) under `key`; the receiver
    /// answers `End` once it is durable, or `Error`.
    Put {
        /// The sender's cluster.
        cluster_id: ClusterId,
        /// The object.
        key: String,
    },
    /// Send the byte ranges `pieces` of stored objects, one after another (each as
    /// `Chunk`s, then `End`): many small pieces — a reduce's partition of many map outputs —
    /// for the price of one stream. At most [`MAX_BATCH_KEYS`].
    FetchMany {
        /// The sender's cluster.
        cluster_id: ClusterId,
        /// The pieces, in the order they are sent.
        pieces: Vec<Piece>,
    },
    /// Store the objects that follow, one per key in order (each as `Chunk`s, then `End`);
    /// the receiver answers `End` once every one is durable, or `Error`. At most
    /// [`MAX_BATCH_KEYS`].
    PutMany {
        /// The sender's cluster.
        cluster_id: ClusterId,
        /// The objects, in the order they follow.
        keys: Vec<String>,
    },
    /// Store under `key`, by a hard link, the object the sender stored at `path` on this
    /// same host (protocol 1.4): no bytes follow. The receiver answers `End` once its link
    /// is durable, or `Error` — another host, another filesystem, a file that is not the
    /// object offered — and the sender then sends the bytes with `Put`.
    Link {
        /// The sender's cluster.
        cluster_id: ClusterId,
        /// The object.
        key: String,
        /// The sender's host: its kernel's boot and its network and mount namespaces.
        host: String,
        /// The object's file in the sender's store.
        path: String,
        /// Its size.
        len: u64,
        /// Its checksum (CRC-32C of the whole object).
        checksum: u32,
    },
}

/// Bytes `offset..offset + len` of the object stored under `key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Piece {
    /// The object.
    pub key: String,
    /// First byte.
    pub offset: u64,
    /// Bytes.
    pub len: u64,
}

/// Most objects or pieces one `FetchMany` or `PutMany` may name.
pub const MAX_BATCH_KEYS: usize = 1024;

impl DataRequest {
    /// The sender's cluster.
    pub fn cluster_id(&self) -> ClusterId {
        match self {
            DataRequest::Fetch { cluster_id, .. }
            | DataRequest::Put { cluster_id, .. }
            | DataRequest::FetchMany { cluster_id, .. }
            | DataRequest::PutMany { cluster_id, .. }
            | DataRequest::Link { cluster_id, .. } => *cluster_id,
        }
    }

    /// How many objects or pieces it names.
    pub fn count(&self) -> usize {
        match self {
            DataRequest::Fetch { .. } | DataRequest::Put { .. } | DataRequest::Link { .. } => 1,
            DataRequest::FetchMany { pieces, .. } => pieces.len(),
            DataRequest::PutMany { keys, .. } => keys.len(),
        }
    }
}

/// Frames a data stream answers with: `Chunk`s, then `End` (or an `Error`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataFrame {
    /// Some bytes of the object.
    Chunk(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The object is complete.
    End,
    /// The request failed; the reason.
    Error(String),
}

/// The CBOR of `DataFrame::Chunk(b)` up to `b`'s bytes: a one-entry map, the text "Chunk".
const CHUNK_PREFIX: [u8; 7] = [0xa1, 0x65, b'C', b'h', b'u', b'n', b'k'];

/// The CBOR head of a byte string of `len` bytes (major type 2, shortest form), as ciborium
/// writes it.
fn bytes_head(len: usize) -> ([u8; 5], usize) {
    let mut h = [0u8; 5];
    match len {
        0..=23 => {
            h[0] = 0x40 | len as u8;
            (h, 1)
        }
        24..=0xff => {
            h[..2].copy_from_slice(&[0x58, len as u8]);
            (h, 2)
        }
        0x100..=0xffff => {
            h[0] = 0x59;
            h[1..3].copy_from_slice(&(len as u16).to_be_bytes());
            (h, 3)
        }
        _ => {
            h[0] = 0x5a;
            h[1..5].copy_from_slice(&(len as u32).to_be_bytes());
            (h, 5)
        }
    }
}

impl DataFrame {
    /// Write `DataFrame::Chunk(bytes)` — the same bytes as [`codec::write_frame`] would —
    /// without copying `bytes` into an encoding buffer.
    ///
    /// [`codec::write_frame`]: crate::codec::write_frame
    pub async fn write_chunk<W: AsyncWrite + Unpin>(io: &mut W, bytes: &[u8]) -> io::Result<()> {
        let (head, n) = bytes_head(bytes.len());
        let total = CHUNK_PREFIX.len() + n + bytes.len();
        if total > crate::codec::MAX_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a chunk of {} bytes is over the frame limit", bytes.len()),
            ));
        }
        let mut header = Vec::with_capacity(16);
        header.extend_from_slice(&(total as u32).to_be_bytes());
        header.extend_from_slice(&CHUNK_PREFIX);
        header.extend_from_slice(&head[..n]);
        io.write_all(&header).await?;
        io.write_all(bytes).await?;
        io.flush().await
    }

    /// Read one frame of a data stream. A `Chunk`'s bytes are read straight into their own
    /// buffer; any other frame is decoded as usual. Lengths over `max` are refused first.
    pub async fn read<R: AsyncRead + Unpin>(io: &mut R, max: usize) -> io::Result<DataFrame> {
        let len = crate::codec::read_frame_len(io, max).await?;
        // Enough for the prefix and the longest byte-string head.
        let mut start = [0u8; 12];
        let k = len.min(start.len());
        io.read_exact(&mut start[..k]).await?;
        if k == start.len() && start[..7] == CHUNK_PREFIX {
            let n = match start[7] {
                b @ 0x40..=0x57 => Some(((b - 0x40) as usize, 1)),
                0x58 => Some((start[8] as usize, 2)),
                0x59 => Some((u16::from_be_bytes([start[8], start[9]]) as usize, 3)),
                0x5a => Some((
                    u32::from_be_bytes([start[8], start[9], start[10], start[11]]) as usize,
                    5,
                )),
                _ => None,
            };
            if let Some((blen, hlen)) = n {
                let body = 7 + hlen;
                if body + blen == len {
                    let mut bytes = vec![0u8; blen];
                    let early = (k - body).min(blen);
                    bytes[..early].copy_from_slice(&start[body..body + early]);
                    io.read_exact(&mut bytes[early..]).await?;
                    return Ok(DataFrame::Chunk(bytes));
                }
            }
        }
        let mut body = vec![0u8; len];
        body[..k].copy_from_slice(&start[..k]);
        io.read_exact(&mut body[k..]).await?;
        crate::codec::decode(&body)
    }
}
