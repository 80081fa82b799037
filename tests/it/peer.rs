//! A crafted peer: it speaks Shoal's wire protocols under a key of the test's choosing (a new
//! one, or a member's identity key read from its data dir) and says whatever the test wants —
//! what a peer that holds the cluster key but lies would send.

use std::path::Path;
use std::time::Duration;

use futures::{AsyncWriteExt, StreamExt};
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use shoal_net::wire::{CtlRequest, CtlResponse, Heartbeat};
use shoal_net::{codec, Keypair, PreSharedKey};

/// A connection to one node, as `key`.
pub struct TestPeer {
    control: libp2p_stream::Control,
    /// The node it is connected to.
    pub target: PeerId,
}

/// The identity key of the node whose data dir is `data`.
pub fn identity_of(data: &Path) -> Keypair {
    Keypair::from_protobuf_encoding(&std::fs::read(data.join("identity.key")).unwrap()).unwrap()
}

/// The cluster key in `file` (as `shoal keygen` writes it).
pub fn psk(file: &Path) -> PreSharedKey {
    std::fs::read_to_string(file).unwrap().parse().unwrap()
}

impl TestPeer {
    /// Connect to `target` at `addr` as `key`, holding `psk`; panics when the handshake fails.
    /// Call inside a tokio runtime: the swarm runs on a task of it.
    pub async fn connect(
        key: Keypair,
        psk: Option<PreSharedKey>,
        target: PeerId,
        addr: Multiaddr,
    ) -> TestPeer {
        let transport = shoal_net::behaviour::build_transport(&key, psk).unwrap();
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_other_transport(|_| transport)
            .unwrap()
            .with_behaviour(|_| libp2p_stream::Behaviour::new())
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        swarm
            .dial(addr.with(libp2p::multiaddr::Protocol::P2p(target)))
            .expect("dialling starts");
        let control = swarm.behaviour().new_control();
        let (connected_tx, connected_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut connected_tx = Some(connected_tx);
            loop {
                match swarm.select_next_some().await {
                    libp2p::swarm::SwarmEvent::ConnectionEstablished { .. } => {
                        if let Some(tx) = connected_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    libp2p::swarm::SwarmEvent::OutgoingConnectionError { error, .. } => {
                        panic!("the test peer, holding the key, could not connect: {error}")
                    }
                    _ => {}
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), connected_rx)
            .await
            .expect("connected in time")
            .unwrap();
        TestPeer { control, target }
    }

    /// Open a stream of `protocol` to the target.
    pub async fn open(&self, protocol: &'static str) -> libp2p::Stream {
        self.try_open(protocol)
            .await
            .unwrap_or_else(|e| panic!("{protocol}: the node accepts an authenticated stream: {e}"))
    }

    /// Open a stream of `protocol` to the target, within 10 s.
    pub async fn try_open(&self, protocol: &'static str) -> Result<libp2p::Stream, String> {
        let mut c = self.control.clone();
        tokio::time::timeout(
            Duration::from_secs(10),
            c.open_stream(self.target, StreamProtocol::new(protocol)),
        )
        .await
        .map_err(|_| "not open within 10 s".to_string())?
        .map_err(|e| e.to_string())
    }

    /// Send one control request and read the answer.
    pub async fn ctl(&self, req: &CtlRequest) -> CtlResponse {
        let mut stream = self.open("/shoal/ctl/1").await;
        codec::write_frame(&mut stream, req).await.unwrap();
        let _ = stream.close().await;
        tokio::time::timeout(
            Duration::from_secs(30),
            codec::read_frame(&mut stream, 64 << 20),
        )
        .await
        .expect("an answer in time")
        .expect("a well-formed answer")
    }
}

/// A heartbeat as member `node_id` of cluster `cluster_id` would send it.
pub fn heartbeat(cluster_id: u64, node_id: u64) -> CtlRequest {
    CtlRequest::Heartbeat(Heartbeat {
        cluster_id,
        node_id,
        slots: 64,
        busy: 0,
        running: vec![],
        disk_bytes: 0,
        disk_low: false,
        build: shoal_net::wire::Build::this(shoal_net::wire::PROTOCOL),
    })
}
