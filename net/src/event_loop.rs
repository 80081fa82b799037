//! The event loop: the only owner of the swarm. The rest of the node talks to it through a
//! [`Client`](crate::Client) (commands over a channel, answers over oneshots) and hears from
//! it through [`Event`]s.
//!
//! The invariant: nothing in this loop waits on the node — inbound requests are handed out
//! with a oneshot for the answer, and the answers are polled here like any other event.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::{DialError, SwarmEvent};
use libp2p::{identify, kad, mdns, ping, Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::behaviour::{Behaviour, BehaviourEvent};
use crate::wire::{CtlRequest, CtlResponse, RaftRequest, RaftResponse};
use crate::{Event, NetError};

/// Failed connections remembered so that each is logged once; past this many, forgotten.
const MAX_LOGGED_FAILURES: usize = 4096;

/// The kinds of `io::Error` that say nothing answered: the peer is down or away.
const UNREACHABLE_KINDS: [std::io::ErrorKind; 8] = [
    std::io::ErrorKind::ConnectionRefused,
    std::io::ErrorKind::ConnectionReset,
    std::io::ErrorKind::ConnectionAborted,
    std::io::ErrorKind::TimedOut,
    std::io::ErrorKind::HostUnreachable,
    std::io::ErrorKind::NetworkUnreachable,
    std::io::ErrorKind::AddrNotAvailable,
    std::io::ErrorKind::NotConnected,
];

/// A failed connection, told apart for the log.
struct Failure {
    /// Nothing answered (refused, reset, timed out, no route): the peer is down or away.
    unreachable: bool,
    /// The error and every error under it, `: `-joined.
    text: String,
}

impl Failure {
    /// `error` and its causes (libp2p nests them in `io::Error`s whose own text may be
    /// empty), and whether any of them says nothing answered.
    fn of(error: &std::io::Error) -> Failure {
        let mut parts: Vec<String> = Vec::new();
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(error);
        for _ in 0..16 {
            let Some(e) = cur else { break };
            let text = e.to_string();
            if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
                parts.push(text);
            }
            cur = match e.downcast_ref::<std::io::Error>() {
                Some(io) => match io.get_ref() {
                    Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
                    None => std::error::Error::source(io),
                },
                None => e.source(),
            };
        }
        // Whether nothing answered, by the kind of any `io::Error` in the chain. Some
        // wrappers (`Either`) hide the error they wrap from `source`, so the kinds are read
        // from the debug text, which names every one (`kind: K`, or `Kind(K)` for a bare one).
        let shown = format!("{error:?}");
        let unreachable = UNREACHABLE_KINDS.iter().any(|kind| {
            shown.contains(&format!("kind: {kind:?}")) || shown.contains(&format!("Kind({kind:?})"))
        });
        if parts.is_empty() {
            parts.push(format!("{:?}", error.kind()));
        }
        Failure {
            unreachable,
            text: parts.join(": "),
        }
    }
}

/// What the rest of the node asks of the event loop.
pub(crate) enum Command {
    Raft {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        req: RaftRequest,
        reply: oneshot::Sender<Result<RaftResponse, NetError>>,
    },
    Ctl {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        req: CtlRequest,
        reply: oneshot::Sender<Result<CtlResponse, NetError>>,
    },
    Connected {
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    ListenAddrs {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
}

/// An answer to send, and the peer whose request it answers (`None`: refused at once, never
/// counted in flight).
struct Answer {
    peer: Option<PeerId>,
    reply: Reply,
}

enum Reply {
    Raft(ResponseChannel<RaftResponse>, RaftResponse),
    Ctl(ResponseChannel<CtlResponse>, CtlResponse),
}

/// Inbound requests handed to the node and not yet answered, per peer and in all: over
/// either bound a request is refused at once, so a flood of requests queues nothing.
#[derive(Default)]
struct InFlight {
    per_peer: HashMap<PeerId, usize>,
    all: usize,
}

/// Requests one peer may have in flight; an honest one has a few (Raft's appends and
/// heartbeats, a push, a proposal).
pub const MAX_IN_FLIGHT_PER_PEER: usize = 64;
/// Requests in flight from all peers together.
pub const MAX_IN_FLIGHT: usize = 1024;

impl InFlight {
    /// Count one more from `peer`, unless it or the node is at its bound.
    fn admit(&mut self, peer: PeerId) -> bool {
        let mine = self.per_peer.entry(peer).or_default();
        if *mine >= MAX_IN_FLIGHT_PER_PEER || self.all >= MAX_IN_FLIGHT {
            return false;
        }
        *mine += 1;
        self.all += 1;
        true
    }

    fn done(&mut self, peer: PeerId) {
        if let Some(n) = self.per_peer.get_mut(&peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_peer.remove(&peer);
            }
            self.all = self.all.saturating_sub(1);
        }
    }
}

/// A configured `--peer`: its address, and its PeerId when the address named one.
struct Bootstrap {
    addr: Multiaddr,
    peer: Option<PeerId>,
}

/// Drives the swarm; see the module docs.
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
    pending_raft: HashMap<OutboundRequestId, oneshot::Sender<Result<RaftResponse, NetError>>>,
    pending_ctl: HashMap<OutboundRequestId, oneshot::Sender<Result<CtlResponse, NetError>>>,
    answers: FuturesUnordered<BoxFuture<'static, Answer>>,
    in_flight: InFlight,
    bootstrap: Vec<Bootstrap>,
    /// Peers whose failed handshakes were already logged (logged once each).
    logged_failures: HashSet<String>,
    /// When Kademlia last bootstrapped (after new connections, at most every few seconds).
    last_kad_bootstrap: Option<tokio::time::Instant>,
}

impl EventLoop {
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        commands: mpsc::UnboundedReceiver<Command>,
        events: mpsc::UnboundedSender<Event>,
        peers: Vec<Multiaddr>,
    ) -> Self {
        let bootstrap = peers
            .into_iter()
            .map(|addr| {
                let peer = addr.iter().find_map(|p| match p {
                    Protocol::P2p(id) => Some(id),
                    _ => None,
                });
                Bootstrap { addr, peer }
            })
            .collect();
        EventLoop {
            swarm,
            commands,
            events,
            pending_raft: HashMap::new(),
            pending_ctl: HashMap::new(),
            answers: FuturesUnordered::new(),
            in_flight: InFlight::default(),
            bootstrap,
            logged_failures: HashSet::new(),
            last_kad_bootstrap: None,
        }
    }

    /// Run until every [`Client`](crate::Client) is dropped.
    pub async fn run(mut self) {
        for b in &self.bootstrap {
            if let Some(peer) = b.peer {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer, b.addr.clone());
            }
        }
        // Keep dialling configured peers that are not connected, backing off to 10 s.
        let mut redial_every = Duration::from_millis(250);
        let mut redial = tokio::time::interval(redial_every);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(c) => self.on_command(c),
                    None => return,
                },
                Some(answer) = self.answers.next(), if !self.answers.is_empty() => self.on_answer(answer),
                _ = redial.tick() => {
                    if self.redial_bootstrap() {
                        redial_every = (redial_every * 2).min(Duration::from_secs(10));
                        redial = tokio::time::interval(redial_every);
                        redial.tick().await;
                    }
                }
            }
        }
    }

    /// Dial every bootstrap peer that is not connected; true if any was dialled.
    fn redial_bootstrap(&mut self) -> bool {
        let mut dialled = false;
        for i in 0..self.bootstrap.len() {
            let connected = self.bootstrap[i]
                .peer
                .is_some_and(|p| self.swarm.is_connected(&p));
            if !connected {
                let addr = self.bootstrap[i].addr.clone();
                if let Err(e) = self.swarm.dial(addr.clone()) {
                    debug!(%addr, error = %e, "dial failed");
                }
                dialled = true;
            }
        }
        dialled
    }

    fn add_addrs(&mut self, peer: &PeerId, addrs: &[Multiaddr]) {
        for a in addrs {
            self.swarm.add_peer_address(*peer, a.clone());
        }
    }

    fn on_command(&mut self, c: Command) {
        match c {
            Command::Raft {
                peer,
                addrs,
                req,
                reply,
            } => {
                self.add_addrs(&peer, &addrs);
                let id = self.swarm.behaviour_mut().raft.send_request(&peer, req);
                self.pending_raft.insert(id, reply);
            }
            Command::Ctl {
                peer,
                addrs,
                req,
                reply,
            } => {
                self.add_addrs(&peer, &addrs);
                let id = self.swarm.behaviour_mut().ctl.send_request(&peer, req);
                self.pending_ctl.insert(id, reply);
            }
            Command::Connected { reply } => {
                let _ = reply.send(self.swarm.connected_peers().copied().collect());
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
        }
    }

    fn on_answer(&mut self, answer: Answer) {
        if let Some(peer) = answer.peer {
            self.in_flight.done(peer);
        }
        // A failed send means the requester gave up (stream closed); nothing to do.
        match answer.reply {
            Reply::Raft(ch, resp) => {
                let _ = self.swarm.behaviour_mut().raft.send_response(ch, resp);
            }
            Reply::Ctl(ch, resp) => {
                let _ = self.swarm.behaviour_mut().ctl.send_response(ch, resp);
            }
        }
    }

    fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                self.emit(Event::Listening { addr: address });
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                let addr = endpoint.get_remote_address().clone();
                debug!(peer = %peer_id, %addr, "connected");
                // Reached again: its next failure is told again.
                let reached = peer_id.to_string();
                self.logged_failures.retain(|k| !k.starts_with(&reached));
                for b in self
                    .bootstrap
                    .iter_mut()
                    .filter(|b| b.addr == addr && b.peer.is_none())
                {
                    b.peer = Some(peer_id);
                }
                self.emit(Event::Connected {
                    peer: peer_id,
                    addr,
                });
                // A new neighbour may know peers we do not: look them up (rate-limited).
                if self
                    .last_kad_bootstrap
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(3))
                {
                    self.last_kad_bootstrap = Some(tokio::time::Instant::now());
                    let _ = self.swarm.behaviour_mut().kad.bootstrap();
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                debug!(peer = %peer_id, "disconnected");
                self.emit(Event::Disconnected { peer: peer_id });
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                if let DialError::Transport(errs) = &error {
                    for (addr, e) in errs {
                        let failure = match e {
                            libp2p::TransportError::Other(io) => Failure::of(io),
                            other => Failure {
                                unreachable: false,
                                text: other.to_string(),
                            },
                        };
                        self.log_failure_once(peer_id, addr, failure);
                    }
                } else {
                    debug!(peer = ?peer_id, error = %error, "dial failed");
                }
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                let failure = match &error {
                    libp2p::swarm::ListenError::Transport(libp2p::TransportError::Other(io)) => {
                        Failure::of(io)
                    }
                    other => Failure {
                        unreachable: false,
                        text: other.to_string(),
                    },
                };
                self.log_failure_once(None, &send_back_addr, failure);
            }
            SwarmEvent::Behaviour(b) => self.on_behaviour_event(b),
            _ => {}
        }
    }

    /// A failed connection is logged once per peer (or, its id unknown, per host) and kind,
    /// until that peer is reached again: a peer that does not answer as unreachable, one that
    /// answers but fails the handshake as a possible stranger.
    fn log_failure_once(&mut self, peer: Option<PeerId>, addr: &Multiaddr, failure: Failure) {
        let at = addr.to_string();
        let who = match peer {
            Some(p) => p.to_string(),
            None => at.split("/tcp/").next().unwrap_or(&at).to_owned(),
        };
        let key = format!("{who}|{}", failure.unreachable);
        if self.logged_failures.len() >= MAX_LOGGED_FAILURES {
            self.logged_failures.clear();
        }
        if !self.logged_failures.insert(key) {
            return;
        }
        let error = &failure.text;
        match (failure.unreachable, peer) {
            (true, Some(peer)) => {
                warn!(%peer, addr = %at, %error, "a peer is unreachable (stopped, or no route to it); said once until it answers again")
            }
            (true, None) => {
                info!(addr = %at, %error, "nothing answers at a peer address yet; dialling on")
            }
            (false, _) => {
                warn!(peer = ?peer, addr = %at, %error, "a connection failed in its handshake (a peer without our cluster key, or not a Shoal node?); said once per peer")
            }
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Raft(e) => self.on_raft(e),
            BehaviourEvent::Ctl(e) => self.on_ctl(e),
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                for addr in info.listen_addrs {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
            }
            BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(_),
                ..
            }) => self.emit(Event::Seen { peer }),
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    if !self.swarm.is_connected(&peer) {
                        debug!(%peer, %addr, "discovered by mDNS");
                        self.swarm.add_peer_address(peer, addr.clone());
                        self.swarm.behaviour_mut().kad.add_address(&peer, addr);
                        let _ = self.swarm.dial(peer);
                    }
                }
            }
            BehaviourEvent::Kad(kad::Event::RoutingUpdated { peer, .. })
                if !self.swarm.is_connected(&peer) =>
            {
                let _ = self.swarm.dial(peer);
            }
            _ => {}
        }
    }

    fn on_raft(&mut self, e: request_response::Event<RaftRequest, RaftResponse>) {
        let inbound = |peer, request, reply| Event::Raft {
            peer,
            request,
            reply,
        };
        let kinds = RrKinds {
            protocol: "/shoal/raft/1",
            inbound,
            answer: Reply::Raft,
            refusal: RaftResponse::Refused,
        };
        let ours = Ours {
            pending: &mut self.pending_raft,
            events: &self.events,
            answers: &self.answers,
            in_flight: &mut self.in_flight,
        };
        on_request_response(e, kinds, ours);
    }

    fn on_ctl(&mut self, e: request_response::Event<CtlRequest, CtlResponse>) {
        let inbound = |peer, request, reply| Event::Ctl {
            peer,
            request,
            reply,
        };
        let kinds = RrKinds {
            protocol: "/shoal/ctl/1",
            inbound,
            answer: Reply::Ctl,
            refusal: CtlResponse::Refused,
        };
        let ours = Ours {
            pending: &mut self.pending_ctl,
            events: &self.events,
            answers: &self.answers,
            in_flight: &mut self.in_flight,
        };
        on_request_response(e, kinds, ours);
    }
}

/// How one request-response protocol maps onto the node's events and answers.
struct RrKinds<Resp, F> {
    protocol: &'static str,
    inbound: F,
    answer: fn(ResponseChannel<Resp>, Resp) -> Reply,
    refusal: fn(String) -> Resp,
}

/// The loop's state one request-response event touches.
struct Ours<'a, Resp> {
    pending: &'a mut HashMap<OutboundRequestId, oneshot::Sender<Result<Resp, NetError>>>,
    events: &'a mpsc::UnboundedSender<Event>,
    answers: &'a FuturesUnordered<BoxFuture<'static, Answer>>,
    in_flight: &'a mut InFlight,
}

/// One request-response event of either protocol: an inbound request goes to the node with a
/// oneshot for the answer (polled with the loop's other futures); a response or failure goes
/// to the local requester waiting on it.
fn on_request_response<Req, Resp, F>(
    e: request_response::Event<Req, Resp>,
    kinds: RrKinds<Resp, F>,
    ours: Ours<'_, Resp>,
) where
    Resp: Send + 'static,
    F: FnOnce(PeerId, Req, oneshot::Sender<Resp>) -> Event,
{
    use request_response::{Event as E, Message as M};
    match e {
        E::Message {
            peer,
            message: M::Request {
                request, channel, ..
            },
            ..
        } => {
            let (answer, refusal) = (kinds.answer, kinds.refusal);
            if !ours.in_flight.admit(peer) {
                debug!(%peer, protocol = kinds.protocol, "a request over the in-flight bound; refused");
                let busy = refusal(format!(
                    "busy: {MAX_IN_FLIGHT_PER_PEER} requests of yours, or {MAX_IN_FLIGHT} in all, are unanswered; try again"
                ));
                ours.answers.push(
                    futures::future::ready(Answer {
                        peer: None,
                        reply: answer(channel, busy),
                    })
                    .boxed(),
                );
                return;
            }
            let (tx, rx) = oneshot::channel();
            let _ = ours.events.send((kinds.inbound)(peer, request, tx));
            ours.answers.push(
                async move {
                    let resp = rx
                        .await
                        .unwrap_or_else(|_| refusal("node shutting down".into()));
                    Answer {
                        peer: Some(peer),
                        reply: answer(channel, resp),
                    }
                }
                .boxed(),
            );
        }
        E::Message {
            message:
                M::Response {
                    request_id,
                    response,
                },
            ..
        } => {
            if let Some(tx) = ours.pending.remove(&request_id) {
                let _ = tx.send(Ok(response));
            }
        }
        E::OutboundFailure {
            request_id,
            error,
            peer,
            ..
        } => {
            if let Some(tx) = ours.pending.remove(&request_id) {
                let _ = tx.send(Err(NetError::Request(format!(
                    "{} request to {peer}: {error}",
                    kinds.protocol
                ))));
            }
        }
        E::InboundFailure { peer, error, .. } => {
            warn!(%peer, protocol = kinds.protocol, %error, "bad inbound request; stream closed");
        }
        E::ResponseSent { .. } => {}
    }
}
