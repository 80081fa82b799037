//! The libp2p side: the transport chain and the swarm's behaviours.
//!
//! Transport: TCP → (pnet handshake, when a cluster key is set) → noise → yamux → timeout.
//! The timeout is not optional: with pnet, a peer holding a different key makes the other
//! side read garbage as a multistream length and wait forever without it.
//!
//! The invariant: with a key, there is no way to reach a node but through pnet — TCP is
//! never also offered bare.

use std::time::Duration;

use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{Boxed, Transport as _};
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::pnet::{PnetConfig, PreSharedKey};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    connection_limits, identify, kad, mdns, noise, ping, tcp, yamux, PeerId, StreamProtocol,
};

use crate::codec::{Budget, CborCodec, MAX_FRAME};
use crate::wire::{CtlRequest, CtlResponse, RaftRequest, RaftResponse};

/// Raft RPCs.
pub const RAFT_PROTOCOL: StreamProtocol = StreamProtocol::new("/shoal/raft/1");
/// Control messages: hello, bootstrap, join.
pub const CTL_PROTOCOL: StreamProtocol = StreamProtocol::new("/shoal/ctl/1");
/// Bulk data streams.
pub const DATA_PROTOCOL: StreamProtocol = StreamProtocol::new("/shoal/data/1");
/// Our own Kademlia protocol, so Shoal nodes never join a public DHT.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/shoal/kad/1");

/// Bytes of unfinished inbound Raft requests held at once, from all peers together: three
/// of the largest frames (a snapshot piece, a full append) may arrive side by side.
pub const RAFT_READ_BUDGET: usize = 3 * MAX_FRAME;
/// The same for control requests (proposals, pushes, heartbeats).
pub const CTL_READ_BUDGET: usize = 2 * MAX_FRAME;
/// Connections one peer may hold to this node (two dial each other at once now and then).
const MAX_CONNECTIONS_PER_PEER: u32 = 2;
/// Streams open at once on one connection. Each may hold yamux's window of bytes its reader
/// has not taken yet (256 KiB): at most 64 MiB a connection.
const MAX_STREAMS_PER_CONNECTION: usize = 256;
/// Connections still in their handshake, and established ones, that others opened to us.
const MAX_PENDING_INCOMING: u32 = 128;
const MAX_ESTABLISHED_INCOMING: u32 = 1024;

/// Handshake (pnet + noise + yamux) must finish within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Build the transport chain, with pnet when `psk` is given.
pub fn build_transport(
    key: &Keypair,
    psk: Option<PreSharedKey>,
) -> std::io::Result<Boxed<(PeerId, StreamMuxerBox)>> {
    let noise = noise::Config::new(key).map_err(std::io::Error::other)?;
    let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
    let mut yamux = yamux::Config::default();
    yamux.set_max_num_streams(MAX_STREAMS_PER_CONNECTION);
    Ok(match psk {
        Some(psk) => tcp
            .and_then(move |socket, _| PnetConfig::new(psk).handshake(socket))
            .upgrade(Version::V1)
            .authenticate(noise)
            .multiplex(yamux.clone())
            .timeout(HANDSHAKE_TIMEOUT)
            .map(|(p, m), _| (p, StreamMuxerBox::new(m)))
            .boxed(),
        None => tcp
            .upgrade(Version::V1)
            .authenticate(noise)
            .multiplex(yamux)
            .timeout(HANDSHAKE_TIMEOUT)
            .map(|(p, m), _| (p, StreamMuxerBox::new(m)))
            .boxed(),
    })
}

/// Everything a Shoal node speaks.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Refuses connections over the bounds before any of the others sees them.
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) raft: request_response::Behaviour<CborCodec<RaftRequest, RaftResponse>>,
    pub(crate) ctl: request_response::Behaviour<CborCodec<CtlRequest, CtlResponse>>,
    pub(crate) data: libp2p_stream::Behaviour,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) kad: kad::Behaviour<kad::store::MemoryStore>,
    pub(crate) mdns: Toggle<mdns::tokio::Behaviour>,
}

impl Behaviour {
    /// The behaviours for `key`; mDNS only when `mdns` is set.
    pub fn new(key: &Keypair, mdns: bool) -> std::io::Result<Self> {
        let peer_id = key.public().to_peer_id();
        let rr_config =
            request_response::Config::default().with_request_timeout(Duration::from_secs(30));
        let mut kad_config = kad::Config::new(KAD_PROTOCOL);
        kad_config.set_periodic_bootstrap_interval(Some(Duration::from_secs(60)));
        let mut kad =
            kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_config);
        // On a LAN nobody confirms our external address, so client mode would never end.
        kad.set_mode(Some(kad::Mode::Server));
        let mdns = if mdns {
            // Ask every 10 s (the default is 5 min), so peers are found again soon after
            // a cable is plugged back in.
            let config = mdns::Config {
                query_interval: Duration::from_secs(10),
                ..mdns::Config::default()
            };
            Some(mdns::tokio::Behaviour::new(config, peer_id)?)
        } else {
            None
        };
        let limits = connection_limits::ConnectionLimits::default()
            .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
            .with_max_pending_incoming(Some(MAX_PENDING_INCOMING))
            .with_max_established_incoming(Some(MAX_ESTABLISHED_INCOMING));
        Ok(Behaviour {
            limits: connection_limits::Behaviour::new(limits),
            raft: request_response::Behaviour::with_codec(
                CborCodec::new(Budget::new(RAFT_READ_BUDGET)),
                [(RAFT_PROTOCOL, ProtocolSupport::Full)],
                rr_config.clone(),
            ),
            ctl: request_response::Behaviour::with_codec(
                CborCodec::new(Budget::new(CTL_READ_BUDGET)),
                [(CTL_PROTOCOL, ProtocolSupport::Full)],
                rr_config,
            ),
            data: libp2p_stream::Behaviour::new(),
            identify: identify::Behaviour::new(identify::Config::new(
                "/shoal/id/1".into(),
                key.public(),
            )),
            ping: ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(1))),
            kad,
            mdns: mdns.into(),
        })
    }
}
