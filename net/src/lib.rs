//! # shoal-net — the wire
//!
//! How Shoal nodes talk: libp2p over TCP with noise and yamux (and pnet when the cluster has
//! a key), discovery by mDNS and Kademlia, and three protocols of our own, each carrying
//! CBOR messages in length-prefixed frames:
//! `/shoal/raft/1` (Raft RPCs), `/shoal/ctl/1` (hello, bootstrap, join) and
//! `/shoal/data/1` (bulk streams).
//!
//! Shape (as rust-libp2p's file-sharing example): [`start`] returns a [`Client`] handle, a
//! stream of [`Event`]s and the [`EventLoop`] that alone owns the swarm. The node's loops
//! use the [`Transport`] trait, which [`Client`] implements (and the simulator will
//! implement in memory).
//!
//! # Layout
//! - [`codec`]: frames, CBOR, the request-response codec.
//! - [`wire`]: the message types.
//! - [`behaviour`]: the transport chain and the libp2p behaviours.
//! - [`event_loop`]: the loop that owns the swarm.
//!
//! The invariant: bytes from a peer never panic a node — a frame that does not decode is an
//! error on that stream, logged, and the stream is closed.

pub mod behaviour;
pub mod codec;
pub mod event_loop;
pub mod refusal;
pub mod version;
pub mod wire;

use std::future::Future;
use std::time::Duration;

use futures::{AsyncReadExt, StreamExt};
pub use libp2p::identity::Keypair;
pub use libp2p::pnet::PreSharedKey;
pub use libp2p::{Multiaddr, PeerId, Stream};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use event_loop::Command;
pub use event_loop::EventLoop;
use wire::{CtlRequest, CtlResponse, DataRequest, RaftRequest, RaftResponse};

/// Network errors.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// Setting up the swarm failed.
    #[error("network setup: {0}")]
    Setup(String),
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {message}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        message: String,
    },
    /// A request got no answer.
    #[error("{0}")]
    Request(String),
    /// No answer in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The event loop is gone (the node is shutting down).
    #[error("network stopped")]
    Stopped,
}

/// How to start the network.
pub struct Config {
    /// The node's identity.
    pub keypair: Keypair,
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Peers to dial (and keep dialling until they answer), with or without `/p2p/ID`.
    pub peers: Vec<Multiaddr>,
    /// Discover peers on the LAN by mDNS.
    pub mdns: bool,
    /// The cluster key (pnet); `None` lets any host connect.
    pub psk: Option<PreSharedKey>,
}

/// What the network tells the node.
#[derive(Debug)]
pub enum Event {
    /// Listening on a new address.
    Listening {
        /// The address.
        addr: Multiaddr,
    },
    /// A connection to `peer` was established.
    Connected {
        /// The peer.
        peer: PeerId,
        /// Its address on this connection.
        addr: Multiaddr,
    },
    /// The last connection to `peer` closed.
    Disconnected {
        /// The peer.
        peer: PeerId,
    },
    /// `peer` answered a ping: it is alive.
    Seen {
        /// The peer.
        peer: PeerId,
    },
    /// An inbound Raft RPC; answer through `reply`.
    Raft {
        /// The sender.
        peer: PeerId,
        /// The request.
        request: RaftRequest,
        /// Where the answer goes.
        reply: oneshot::Sender<RaftResponse>,
    },
    /// An inbound control request; answer through `reply`.
    Ctl {
        /// The sender.
        peer: PeerId,
        /// The request.
        request: CtlRequest,
        /// Where the answer goes.
        reply: oneshot::Sender<CtlResponse>,
    },
    /// An inbound data stream whose first frame was `request`.
    Data {
        /// The sender.
        peer: PeerId,
        /// The request.
        request: DataRequest,
        /// The stream, to answer on.
        stream: Stream,
    },
}

/// A peer to send to: its id and any addresses known for it.
#[derive(Debug, Clone)]
pub struct PeerRef {
    /// The peer.
    pub peer: PeerId,
    /// Where it may be reached.
    pub addrs: Vec<Multiaddr>,
}

/// What the node's loops need from the network (libp2p here, memory in the simulator).
pub trait Transport: Clone + Send + Sync + 'static {
    /// Send a Raft RPC and wait for the answer.
    fn raft(
        &self,
        to: &PeerRef,
        req: RaftRequest,
        timeout: Duration,
    ) -> impl Future<Output = Result<RaftResponse, NetError>> + Send;
    /// Send a control request and wait for the answer.
    fn ctl(
        &self,
        to: &PeerRef,
        req: CtlRequest,
        timeout: Duration,
    ) -> impl Future<Output = Result<CtlResponse, NetError>> + Send;
}

/// The handle the node uses to talk to the event loop.
#[derive(Clone)]
pub struct Client {
    commands: mpsc::UnboundedSender<Command>,
    local: PeerId,
    control: libp2p_stream::Control,
}

impl Client {
    /// This node's PeerId.
    pub fn local_peer_id(&self) -> PeerId {
        self.local
    }

    /// Peers with an open connection.
    pub async fn connected_peers(&self) -> Vec<PeerId> {
        let (tx, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::Connected { reply: tx })
            .is_err()
        {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Addresses the node listens on.
    pub async fn listen_addrs(&self) -> Vec<Multiaddr> {
        let (tx, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::ListenAddrs { reply: tx })
            .is_err()
        {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Open a `/shoal/data/1` stream to `peer`.
    pub async fn open_data(&self, peer: PeerId) -> Result<Stream, NetError> {
        self.control
            .clone()
            .open_stream(peer, behaviour::DATA_PROTOCOL)
            .await
            .map_err(|e| NetError::Request(format!("data stream to {peer}: {e}")))
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, NetError>>) -> Command,
        timeout: Duration,
    ) -> Result<T, NetError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .map_err(|_| NetError::Stopped)?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(NetError::Stopped),
            Err(_) => Err(NetError::Timeout(timeout)),
        }
    }
}

impl Transport for Client {
    async fn raft(
        &self,
        to: &PeerRef,
        req: RaftRequest,
        timeout: Duration,
    ) -> Result<RaftResponse, NetError> {
        let (peer, addrs) = (to.peer, to.addrs.clone());
        self.ask(
            |reply| Command::Raft {
                peer,
                addrs,
                req,
                reply,
            },
            timeout,
        )
        .await
    }

    async fn ctl(
        &self,
        to: &PeerRef,
        req: CtlRequest,
        timeout: Duration,
    ) -> Result<CtlResponse, NetError> {
        let (peer, addrs) = (to.peer, to.addrs.clone());
        self.ask(
            |reply| Command::Ctl {
                peer,
                addrs,
                req,
                reply,
            },
            timeout,
        )
        .await
    }
}

/// Largest first frame of a data stream.
const MAX_DATA_REQUEST: usize = 64 << 10;
/// A data stream's first frame (its request) must arrive within this.
pub const DATA_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Data streams whose request is still being read, from all peers together; one more is
/// dropped at once (a fetch or put is retried by an honest sender).
pub const MAX_DATA_OPENING: usize = 256;

/// Build the swarm and start listening. Run the returned [`EventLoop`] on the runtime.
pub fn start(
    config: Config,
) -> Result<(Client, mpsc::UnboundedReceiver<Event>, EventLoop), NetError> {
    let psk = config.psk;
    let mdns = config.mdns;
    let transport = behaviour::build_transport(&config.keypair, psk)
        .map_err(|e| NetError::Setup(format!("transport: {e}")))?;
    let behaviour = behaviour::Behaviour::new(&config.keypair, mdns)
        .map_err(|e| NetError::Setup(format!("behaviour: {e}")))?;
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(config.keypair)
        .with_tokio()
        .with_other_transport(|_| transport)
        .map_err(|e| NetError::Setup(e.to_string()))?
        .with_behaviour(|_| behaviour)
        .map_err(|e| NetError::Setup(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    for addr in &config.listen {
        swarm.listen_on(addr.clone()).map_err(|e| {
            // Transport errors nest; the innermost one names the cause ("Address in use").
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                if !s.to_string().trim().is_empty() {
                    message = s.to_string();
                }
                source = s.source();
            }
            NetError::Listen {
                addr: addr.to_string(),
                message,
            }
        })?;
    }
    let local = *swarm.local_peer_id();
    let mut control = swarm.behaviour().data.new_control();
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    // libp2p-stream drops inbound streams nobody accepts: accept them all, always.
    let mut incoming = control
        .accept(behaviour::DATA_PROTOCOL)
        .map_err(|e| NetError::Setup(format!("data protocol: {e}")))?;
    let data_events = ev_tx.clone();
    tokio::spawn(async move {
        let opening = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_DATA_OPENING));
        while let Some((peer, stream)) = incoming.next().await {
            let Ok(permit) = std::sync::Arc::clone(&opening).try_acquire_owned() else {
                warn!(%peer, protocol = "/shoal/data/1", "{MAX_DATA_OPENING} data streams are still sending their requests; dropped a new one");
                continue;
            };
            let events = data_events.clone();
            tokio::spawn(async move {
                let _permit = permit;
                read_data_request(peer, stream, &events).await;
            });
        }
    });
    let event_loop = EventLoop::new(swarm, cmd_rx, ev_tx, config.peers);
    Ok((
        Client {
            commands: cmd_tx,
            local,
            control,
        },
        ev_rx,
        event_loop,
    ))
}

/// Read a data stream's request and hand the stream to the node; a request that is malformed,
/// or not there within [`DATA_REQUEST_TIMEOUT`], closes it.
async fn read_data_request(
    peer: PeerId,
    mut stream: Stream,
    events: &mpsc::UnboundedSender<Event>,
) {
    let read = codec::read_frame::<_, DataRequest>(&mut stream, MAX_DATA_REQUEST);
    let error = match tokio::time::timeout(DATA_REQUEST_TIMEOUT, read).await {
        Ok(Ok(request)) => {
            let _ = events.send(Event::Data {
                peer,
                request,
                stream,
            });
            return;
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no request within {DATA_REQUEST_TIMEOUT:?}"),
    };
    warn!(%peer, protocol = "/shoal/data/1", %error, "bad data request; stream closed");
    let mut rest = Vec::new();
    let _ = (&mut stream).take(0).read_to_end(&mut rest).await;
}
