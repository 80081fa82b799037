//! `shoal node`: start a node. Opens the data dir (identity, database), starts the network,
//! then Raft once the node has a cluster (bootstrapping or joining one if not), the
//! membership policy and the HTTP API; writes the ready file; stops on Ctrl-C or SIGTERM.
//!
//! Bad settings end the command with one line naming the problem and a non-zero exit.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use shoal_net::wire::PeerInfo;
use shoal_net::{Event, Multiaddr, PreSharedKey};
use shoal_raft::{Store, Timing};
use tracing::{info, warn};

use crate::cluster::node::{Node, Settings};
use crate::control::Control;
use crate::storage::Storage;
use crate::supervisor::Supervisor;
use crate::sync::ReadWrite;

pub use crate::flags::NodeArgs;
use crate::flags::{DEFAULT_HTTP, DEFAULT_LISTEN};

pub use crate::usage::UsageError;

/// Whether a listen multiaddr is reachable from this machine only (127.0.0.0/8, ::1,
/// `localhost`).
fn is_loopback(addr: &Multiaddr) -> bool {
    let text = addr.to_string();
    let mut parts = text.split('/').skip(1);
    match (parts.next(), parts.next()) {
        (Some("ip4" | "ip6"), Some(ip)) => ip
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        (Some("dns" | "dns4" | "dns6"), Some(name)) => name == "localhost",
        _ => false,
    }
}

/// Everything `serve` needs, checked and opened by [`run`].
struct NodeConfig {
    args: NodeArgs,
    listen: Vec<Multiaddr>,
    peers: Vec<Multiaddr>,
    http: SocketAddr,
    http_listener: std::net::TcpListener,
    keypair: shoal_net::Keypair,
    store: Store,
    psk: Option<PreSharedKey>,
    settings: Settings,
    blobs: crate::storage::blobs::Blobs,
    api_token: Option<String>,
}

fn parse_election(s: &str) -> anyhow::Result<(u64, u64)> {
    let (a, b) = s
        .split_once('-')
        .context("--election-ms takes MIN-MAX, e.g. 300-400")?;
    let (a, b): (u64, u64) = (a.trim().parse()?, b.trim().parse()?);
    if a == 0 || b <= a {
        bail!("--election-ms {s}: MIN must be positive and below MAX");
    }
    Ok((a, b))
}

fn parse_peer(s: &str) -> anyhow::Result<Multiaddr> {
    s.parse::<Multiaddr>().with_context(|| {
        format!("--peer {s:?} is not a multiaddr (expected e.g. /ip4/192.168.1.5/tcp/7071 or …/p2p/12D3Koo…)")
    })
}

/// Hold an exclusive lock on the data dir for the life of the process.
fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join("LOCK");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot write to the data dir {}", dir.display()))?;
    // A node restarted right after a crash may find the lock still held for a moment by a
    // task process the old node was forking; give that a few seconds before giving up.
    for _ in 0..30 {
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(f);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    bail!(
        "the data dir {} is in use by another shoal node",
        dir.display()
    )
}

/// Run a node until Ctrl-C or SIGTERM.
pub fn run(mut args: NodeArgs) -> anyhow::Result<()> {
    let timing = raft_timing(&args)?;
    let Endpoints {
        listen,
        exposed,
        peers,
        http,
        http_listener,
        api_token,
    } = endpoints(&args)?;
    // Everything the node creates is its own alone (0600 files, 0700 directories), from the
    // moment it exists: keys, the database, stored data.
    // SAFETY: umask only sets this process's file mode mask.
    unsafe {
        libc::umask(0o077);
    }
    crate::sandbox::create_data_dir(&args.data)?;
    // Every path derived from the data dir crosses a `chdir` (a task's working directory is
    // its attempt directory) or a process boundary: make it absolute once, here.
    args.data = std::fs::canonicalize(&args.data)
        .with_context(|| format!("cannot resolve the data dir {}", args.data.display()))?;
    let _lock = lock_data_dir(&args.data)?;
    let keypair = crate::cluster::identity::load_or_create(&args.data)?;
    let store = Store::open(&args.data.join("node.redb"))?;
    for (file, what) in [
        (&args.cluster_key, "the cluster key"),
        (&args.api_token, "the API token"),
    ] {
        if let Some(f) = file {
            crate::sandbox::warn_if_readable(f, what);
        }
    }
    let psk = cluster_key(&args, exposed)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("shoal-node")
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let mut blobs = crate::storage::blobs::Blobs::open(args.data.join("blobs"))
        .with_context(|| format!("cannot create the object store in {}", args.data.display()))?;
    let sandbox = crate::sandbox::setup(
        &crate::sandbox::TaskFlags {
            user: args.task_user.as_deref(),
            uids: args.task_uids,
            limits: shoal_jobs::sandbox::Limits {
                memory_mb: args.task_memory,
                pids: args.task_pids,
                cpu_weight: args.task_cpu_weight,
                all_tasks_mb: None,
            },
            reserve_mb: args.node_reserve_mb,
            data: &args.data,
            secrets: [&args.cluster_key, &args.api_token]
                .into_iter()
                .flatten()
                .map(PathBuf::as_path)
                .collect(),
        },
        &mut blobs,
    )?;
    let input_root = match &args.input_root {
        None => None,
        Some(dir) if dir.is_dir() => Some(
            std::fs::canonicalize(dir)
                .with_context(|| format!("--input-root {}", dir.display()))?,
        ),
        Some(dir) => anyhow::bail!("--input-root {}: not a directory", dir.display()),
    };
    if let Some(root) = &input_root {
        info!(root = %root.display(), "node: and shared: inputs are read under this directory");
    }
    let settings = settings_of(&args, timing, sandbox, input_root);
    let swept = blobs.sweep();
    if swept > 0 {
        tracing::info!(
            bytes = swept,
            "removed what the previous process left half-done"
        );
    }
    for &fault in &args.plant {
        warn!(
            ?fault,
            "a fault is planted in this node on purpose (--plant)"
        );
        crate::planted::plant(fault);
    }
    let config = NodeConfig {
        args,
        listen,
        peers,
        http,
        http_listener,
        keypair,
        store,
        psk,
        settings,
        blobs,
        api_token,
    };
    let result = runtime.block_on(serve(config));
    // Blocking work still running (an fsync, a directory removal) gets a moment, not forever.
    runtime.shutdown_timeout(Duration::from_secs(5));
    result
}

/// Where a node listens and is reached, from its flags.
struct Endpoints {
    /// `--listen`.
    listen: Vec<Multiaddr>,
    /// Whether it listens beyond loopback.
    exposed: bool,
    /// `--peer`.
    peers: Vec<Multiaddr>,
    /// `--http`, or where `--local` put the API.
    http: SocketAddr,
    /// The API's listener on `http`, bound.
    http_listener: std::net::TcpListener,
    /// The token of `--api-token`.
    api_token: Option<String>,
}

/// The node's endpoints from its flags: refused beyond loopback without a cluster key (the
/// p2p port) or a token (the HTTP API). The API's port is bound here, so a taken one is
/// named before anything starts.
fn endpoints(args: &NodeArgs) -> anyhow::Result<Endpoints> {
    let peers = args
        .peer
        .iter()
        .map(|p| parse_peer(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let api_token = args
        .api_token
        .as_deref()
        .map(crate::http::token::read)
        .transpose()?;
    if args.local {
        return local_endpoints(args, peers, api_token);
    }
    let listen = args
        .listen
        .iter()
        .map(|l| {
            l.parse::<Multiaddr>()
                .with_context(|| format!("--listen {l:?} is not a multiaddr"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let exposed = listen.iter().find(|a| !is_loopback(a));
    if let Some(exposed) = exposed {
        if args.cluster_key.is_none() && !args.insecure {
            return Err(UsageError(format!(
                "refusing to listen on {exposed} without a cluster key: any host that can reach this port could join the cluster and run code on this machine. Make a key once with `shoal keygen cluster.key`, copy the file to every machine, and start every node with `--cluster-key cluster.key` (one machine only: `--listen /ip4/127.0.0.1/tcp/7071`; a trusted, isolated network: `--insecure`)"
            ))
            .into());
        }
    }
    let http: SocketAddr = args.http.parse().with_context(|| {
        format!(
            "--http {:?} is not an address like 127.0.0.1:7070",
            args.http
        )
    })?;
    if api_token.is_none() && !http.ip().is_loopback() {
        bail!(
            "refusing to serve the HTTP API on {http} without --api-token FILE: submitting a job runs code on every node, so an API beyond loopback must need a token"
        );
    }
    let exposed = exposed.is_some();
    let http_listener = std::net::TcpListener::bind(http).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            ": another node on this machine? Give this one other ports (--http 127.0.0.1:7072 --listen /ip4/127.0.0.1/tcp/7073), or start each node of a one-machine cluster with `shoal node --local`, which finds free ports itself"
        } else {
            ""
        };
        anyhow::anyhow!("cannot listen on --http {http}: {e}{hint}")
    })?;
    Ok(Endpoints {
        listen,
        exposed,
        peers,
        http,
        http_listener,
        api_token,
    })
}

/// `--local`'s endpoints: the first free pair of loopback ports, the other pairs as peers
/// besides `peers` (`--peer`), and the API's token.
fn local_endpoints(
    args: &NodeArgs,
    mut peers: Vec<Multiaddr>,
    api_token: Option<String>,
) -> anyhow::Result<Endpoints> {
    use crate::ports::{pick_local, LOCAL_NODES};
    let base = args.local_base;
    if args.listen != [DEFAULT_LISTEN] || args.http != DEFAULT_HTTP {
        return Err(UsageError(
            "--local picks its own loopback ports: give it neither --listen nor --http".into(),
        )
        .into());
    }
    let local = pick_local(base).ok_or_else(|| {
        UsageError(format!(
            "--local: the {LOCAL_NODES} pairs of ports from {base} up are all taken; stop a node, or give this one --http and --listen without --local"
        ))
    })?;
    let http = local.http.local_addr()?;
    if let Some(first) = local.skipped.first() {
        info!(
            "port {first} is taken (another node on this machine?): this node's API is at http://{http}, its p2p port {}",
            local.p2p
        );
    }
    let tcp = |port: u16| -> anyhow::Result<Multiaddr> {
        Ok(format!("/ip4/127.0.0.1/tcp/{port}").parse()?)
    };
    for &p in &local.peers {
        peers.push(tcp(p)?);
    }
    Ok(Endpoints {
        listen: vec![tcp(local.p2p)?],
        exposed: false,
        peers,
        http,
        http_listener: local.http,
        api_token,
    })
}

/// Raft's timing from the flags: the heartbeat below the election timeout.
fn raft_timing(args: &NodeArgs) -> anyhow::Result<Timing> {
    let (emin, emax) = parse_election(&args.election_ms)?;
    let mut timing = Timing {
        heartbeat_ms: args.heartbeat_ms,
        election_min_ms: emin,
        election_max_ms: emax,
        ..Timing::default()
    };
    if let Some(n) = args.snapshot_every {
        timing.snapshot_every = n.max(2);
        timing.keep_behind_snapshot = n.max(2) / 2;
    }
    if args.heartbeat_ms == 0 || args.heartbeat_ms >= emin {
        bail!(
            "--heartbeat-ms {} must be positive and below the election timeout ({emin} ms)",
            args.heartbeat_ms
        );
    }
    Ok(timing)
}

/// The cluster key of `--cluster-key`, if given; without one, a word on what that means
/// (`exposed`: the node listens beyond loopback).
fn cluster_key(args: &NodeArgs, exposed: bool) -> anyhow::Result<Option<PreSharedKey>> {
    let psk = match &args.cluster_key {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the cluster key {}", path.display()))?;
            let psk: PreSharedKey = text.parse().map_err(|e| {
                anyhow::anyhow!(
                    "{} is not a cluster key ({e:?}); make one with `shoal keygen FILE`",
                    path.display()
                )
            })?;
            info!(fingerprint = %psk.fingerprint(), "cluster key loaded: only nodes with this key can connect");
            Some(psk)
        }
        None if exposed => {
            warn!("--insecure and no --cluster-key: ANY host that can reach this node's port may join the cluster and run code on it; use `shoal keygen` and --cluster-key on a shared network");
            None
        }
        None => {
            info!("listening on loopback only: no cluster key needed");
            None
        }
    };
    Ok(psk)
}

/// The node's settings from its flags and what setting it up made.
fn settings_of(
    args: &NodeArgs,
    timing: Timing,
    sandbox: shoal_jobs::sandbox::Sandbox,
    input_root: Option<PathBuf>,
) -> Settings {
    Settings {
        expect: args.expect,
        timing,
        voter_cap: args.voters.max(1),
        learner_cap: args.learners,
        slots: args
            .slots
            .unwrap_or(shoal_jobs::pool::default_slots() as u32)
            .max(1),
        replication: shoal_jobs::spec::DEFAULT_REPLICATION,
        node_timeout: Duration::from_secs_f64(args.node_timeout.clamp(0.5, 3600.0)),
        voter_grace: Duration::from_secs_f64(args.voter_grace.clamp(1.0, 86_400.0)),
        retain_jobs: args.retain_jobs.max(1),
        sandbox: Arc::new(sandbox),
        min_free_mb: args.min_free_mb,
        input_root,
        build: shoal_net::wire::Build::this(
            args.test_protocol.unwrap_or(shoal_net::wire::PROTOCOL),
        ),
    }
}

async fn serve(c: NodeConfig) -> anyhow::Result<()> {
    let peer_id = c.keypair.public().to_peer_id();
    let id = crate::cluster::identity::node_id(&peer_id);
    let n_listen = c.listen.len();
    let (net, mut events, event_loop) = shoal_net::start(shoal_net::Config {
        keypair: c.keypair,
        listen: c.listen,
        peers: c.peers,
        mdns: !c.args.no_mdns && !c.args.local,
        psk: c.psk,
    })?;
    let mut loops = Supervisor::default();
    // The network stops last: the other loops may need it to finish their step.
    loops.last("network", event_loop.run());
    c.http_listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(c.http_listener)?;
    let http_addr = listener.local_addr()?.to_string();

    // Learn the listen addresses (port 0 becomes a real port) before telling anyone.
    let (addrs, early) = listen_addresses(&mut events, n_listen).await?;
    refuse_a_shared_port(&addrs)?;
    let info = PeerInfo {
        peer_id: peer_id.to_string(),
        addrs: addrs.clone(),
        http: http_addr.clone(),
        slots: c.settings.slots,
        // Given no `--slots`, it takes its share of its host's cores with the other nodes
        // there that do the same.
        host: c
            .args
            .slots
            .is_none()
            .then(crate::storage::link::host_id)
            .flatten(),
    };
    // The three services, in the order they depend on each other.
    let (slots, min_free_mb) = (c.settings.slots, c.settings.min_free_mb);
    let node = Arc::new(Node::new(
        id,
        peer_id,
        info,
        c.store,
        net.clone(),
        c.settings,
    )?);
    let book = Arc::new(crate::wiring::Book(Arc::clone(&node)));
    let store = Arc::new(Storage::new(id, net, book, c.blobs, min_free_mb));
    let ctl = Arc::new(Control::new(Arc::clone(&node), Arc::clone(&store), slots));
    if node.cluster_id().is_some() {
        node.start_raft().await?;
    }
    info!(node = %crate::cluster::identity::hex(id), %peer_id, ?addrs, http = %http_addr, "node started");
    let sandbox = &node.settings.sandbox;
    let scratch = store.blobs.scratch().root().display().to_string();
    if sandbox.other_user() || !sandbox.confine.is_empty() {
        info!(%scratch, "tasks run {}", sandbox.describe());
    } else {
        warn!(%scratch, "tasks run {}; they can read this node's keys: run the node as a user of its own, or as root (docs/security.md)", sandbox.describe());
    }

    start_loops(&mut loops, &node, &store, &ctl, (events, early));

    if let Some(path) = &c.args.ready_file {
        write_ready(path, &peer_id, &addrs, &http_addr, id)?;
    }
    let app = http_app(&ctl, c.api_token, c.http, &c.args.http_host);
    let grace = Duration::from_secs_f64(c.args.drain_secs.clamp(0.0, 86_400.0));
    let listener = crate::http::limits::Capped::new(listener, crate::http::limits::MAX_CONNECTIONS);
    let server = axum::serve(listener, app).with_graceful_shutdown(
        crate::control::drain::until_stopped(Arc::clone(&ctl), grace),
    );
    let result = tokio::select! {
        r = server.into_future() => {
            info!("shutting down");
            r.context("HTTP server")
        }
        stopped = loops.stopped() => {
            tracing::error!(error = %stopped, "a loop of the node stopped");
            Err(stopped.into())
        }
    };
    // Every loop finishes its step and stops; then Raft.
    loops.shutdown(Duration::from_secs(10)).await;
    if let Some(h) = node.raft.get() {
        let _ = tokio::time::timeout(Duration::from_secs(5), h.raft.shutdown()).await;
    }
    result
}

/// Wait until the network listens on all `n` addresses (port 0 becomes a real port): the
/// addresses, and the events that came meanwhile.
async fn listen_addresses(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
    n: usize,
) -> anyhow::Result<(Vec<String>, Vec<Event>)> {
    let mut early = Vec::new();
    let mut addrs = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while addrs.len() < n {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(Event::Listening { addr })) => addrs.push(addr.to_string()),
            Ok(Some(other)) => early.push(other),
            Ok(None) => bail!("the network stopped while starting"),
            Err(_) => bail!("the node did not start listening within 10 s"),
        }
    }
    Ok((addrs, early))
}

/// Refuse to run beside another process listening on one of this node's p2p addresses:
/// libp2p listens with `SO_REUSEPORT`, so both would start and share the connections.
fn refuse_a_shared_port(addrs: &[String]) -> anyhow::Result<()> {
    for addr in addrs {
        let mut parts = addr.split('/').skip(1);
        let (Some("ip4" | "ip6"), Some(ip), Some("tcp"), Some(port)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (Ok(ip), Ok(port)) = (ip.parse::<std::net::IpAddr>(), port.parse::<u16>()) else {
            continue;
        };
        if crate::ports::shared_with_another(SocketAddr::new(ip, port)) {
            return Err(UsageError(format!(
                "the p2p port {port} is taken: another process listens on it (another node on this machine?). Give this node another port (--listen /ip4/127.0.0.1/tcp/7073), or start each node of a one-machine cluster with `shoal node --local`, which finds free ports itself"
            ))
            .into());
        }
    }
    Ok(())
}

/// Start the node's loops under `loops`: the network's events (those that came `early`
/// first), then the membership's and control's loops.
fn start_loops(
    loops: &mut Supervisor,
    node: &Arc<Node>,
    store: &Arc<Storage>,
    ctl: &Arc<Control>,
    (mut events, early): (tokio::sync::mpsc::UnboundedReceiver<Event>, Vec<Event>),
) {
    let (dispatcher, data, mut stop) = (Arc::clone(node), Arc::clone(store), loops.stop());
    loops.forever("event dispatch", async move {
        for e in early {
            dispatch(&dispatcher, &data, e);
        }
        while let Some(Some(e)) = stop.or(events.recv()).await {
            dispatch(&dispatcher, &data, e);
        }
    });
    loops.until_done(
        "bootstrap",
        crate::cluster::bootstrap::run(Arc::clone(node), loops.stop()),
    );
    loops.forever(
        "membership",
        crate::cluster::membership::run(Arc::clone(node), loops.stop()),
    );
    loops.forever(
        "manager",
        crate::control::manager::run(Arc::clone(ctl), loops.stop()),
    );
    loops.forever(
        "pushes",
        crate::cluster::workers::run(Arc::clone(node), loops.stop()),
    );
    loops.forever(
        "worker",
        crate::control::worker::run(Arc::clone(ctl), loops.stop()),
    );
    loops.forever(
        "copy away",
        crate::control::drain::copy_away(Arc::clone(ctl), loops.stop()),
    );
    loops.until_done(
        "leave",
        crate::control::drain::leave_when_removed(Arc::clone(ctl), loops.stop()),
    );
    loops.forever(
        "undrain",
        crate::control::drain::undrain_after_restart(Arc::clone(ctl), loops.stop()),
    );
    loops.forever(
        "raft health",
        crate::cluster::health::until_raft_fails(Arc::clone(node), loops.stop()),
    );
    loops.forever(
        "leader-change count",
        crate::http::metrics::count_leader_changes(Arc::clone(ctl), loops.stop()),
    );
}

/// Say where this node is reached, in `path` (`--ready-file`), once it is.
fn write_ready(
    path: &std::path::Path,
    peer_id: &shoal_net::PeerId,
    addrs: &[String],
    http_addr: &str,
    id: u64,
) -> anyhow::Result<()> {
    let ready = serde_json::json!({
        "peer_id": peer_id.to_string(), "addrs": addrs, "http": http_addr, "node_id": crate::cluster::identity::hex(id),
    });
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, ready.to_string())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// The HTTP API, behind its token when there is one, and the guard of its host names.
fn http_app(
    ctl: &Arc<Control>,
    api_token: Option<String>,
    http: SocketAddr,
    http_host: &[String],
) -> axum::Router {
    let mut app = crate::http::api::router(Arc::clone(ctl));
    if let Some(token) = api_token {
        info!("the HTTP API needs its token (--api-token)");
        let token: Arc<str> = token.into();
        app = app.layer(axum::middleware::from_fn(move |req, next| {
            crate::http::token::require(Arc::clone(&token), req, next)
        }));
    }
    let guard = Arc::new(crate::http::guard::HostGuard::new(http, http_host));
    app.layer(axum::middleware::from_fn(move |req, next| {
        crate::http::guard::check(Arc::clone(&guard), req, next)
    }))
}

fn dispatch(node: &Arc<Node>, store: &Arc<Storage>, e: Event) {
    match e {
        Event::Listening { addr } => {
            let mut info = node.info.write_now();
            let a = addr.to_string();
            if !info.addrs.contains(&a) {
                info.addrs.push(a);
            }
        }
        Event::Connected { peer, .. } => {
            node.peers.set_connected(peer, true);
            let node = Arc::clone(node);
            tokio::spawn(async move { node.greet(peer).await });
        }
        Event::Disconnected { peer } => node.peers.set_connected(peer, false),
        Event::Seen { peer } => node.peers.seen(peer),
        Event::Raft {
            peer,
            request,
            reply,
        } => {
            let node = Arc::clone(node);
            tokio::spawn(async move {
                let _ = reply.send(node.on_raft(peer, request).await);
            });
        }
        Event::Ctl {
            peer,
            request,
            reply,
        } => {
            let node = Arc::clone(node);
            tokio::spawn(async move {
                let _ = reply.send(node.on_ctl(peer, request).await);
            });
        }
        Event::Data {
            peer,
            request,
            stream,
        } => {
            let store = Arc::clone(store);
            tokio::spawn(crate::storage::serve::serve(store, peer, request, stream));
        }
    }
}
