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
use libp2p::{identify, kad, mdns, noise, ping, tcp, yamux, PeerId, StreamProtocol};

use crate::codec::CborCodec;
use crate::wire::{CtlRequest, CtlResponse, RaftRequest, RaftResponse};

/// Raft RPCs.
pub const RAFT_PROTOCOL: StreamProtocol = StreamProtocol::new("/shoal/raft/1");
/// Control messages: hello, bootstrap, join.
pub const CTL_PROTOCOL: StreamProtocol = StreamProtocol::new("/shoal/ctl/1");
/// Bulk data streams.
pub const DATA_PROTOCOL: StreamProtocol = StreamProtocol::new("/shoal/data/1");
/// Our own Kademlia protocol, so Shoal nodes never join a public DHT.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/shoal/kad/1");

/// Handshake (pnet + noise + yamux) must finish within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Build the transport chain, with pnet when `psk` is given.
pub fn build_transport(
    key: &Keypair,
    psk: Option<PreSharedKey>,
) -> std::io::Result<Boxed<(PeerId, StreamMuxerBox)>> {
    let noise = noise::Config::new(key).map_err(std::io::Error::other)?;
    let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
    Ok(match psk {
        Some(psk) => tcp
            .and_then(move |socket, _| PnetConfig::new(psk).handshake(socket))
            .upgrade(Version::V1)
            .authenticate(noise)
            .multiplex(yamux::Config::default())
            .timeout(HANDSHAKE_TIMEOUT)
            .map(|(p, m), _| (p, StreamMuxerBox::new(m)))
            .boxed(),
        None => tcp
            .upgrade(Version::V1)
            .authenticate(noise)
            .multiplex(yamux::Config::default())
            .timeout(HANDSHAKE_TIMEOUT)
            .map(|(p, m), _| (p, StreamMuxerBox::new(m)))
            .boxed(),
    })
}

/// Everything a Shoal node speaks.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
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
        Ok(Behaviour {
            raft: request_response::Behaviour::with_codec(
                CborCodec::default(),
                [(RAFT_PROTOCOL, ProtocolSupport::Full)],
                rr_config.clone(),
            ),
            ctl: request_response::Behaviour::with_codec(
                CborCodec::default(),
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
