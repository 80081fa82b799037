//! The measurement behind `shoal bench shuffle`: the data plane's throughput between two nodes
//! in one process, over the real transport (tcp → noise → yamux on 127.0.0.1). One object is fetched over
//! `/shoal/data/1` exactly as a reducer fetches a map output (CBOR `Chunk` frames, the node's
//! own serve and fetch code); the baselines are the same bytes copied raw over a libp2p
//! stream of the same connection stack, and over a plain loopback TCP socket.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{AsyncReadExt, AsyncWriteExt};
use shoal_net::wire::DataRequest;
use shoal_net::{Event, Keypair};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::storage::{AddressBook, Storage};
use crate::sync::Locked;

const CLUSTER: u64 = 0x5ba1_0000_0000_0001;

/// The best time of each contender, seconds, for one object of `size_mb` MiB.
#[derive(Debug, Clone, Copy)]
pub struct ShuffleFigures {
    /// `/shoal/data/1`, the node's own serve and fetch.
    pub data_plane: f64,
    /// A bare libp2p stream over the same transport.
    pub bare_stream: f64,
    /// Plain loopback TCP.
    pub tcp: f64,
    /// `/shoal/data/1` into a file, as a reducer fetches a map's partition.
    pub to_file: f64,
    /// Taking the checksum of the object's bytes in memory, as a reducer's fetch does while
    /// the bytes arrive (included in `to_file`).
    pub check: f64,
}

/// Move one object of `size_mb` MiB from node A to node B `runs` times with each contender;
/// the best time of each. Every copy's length is checked.
pub fn measure(size_mb: u64, runs: usize) -> anyhow::Result<ShuffleFigures> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(bench(size_mb, runs))
}

/// The address book of the bench's two nodes: one cluster, and the other node is a member.
struct Pair {
    members: std::sync::Mutex<Vec<shoal_net::PeerId>>,
}

impl AddressBook for Pair {
    fn cluster_id(&self) -> Option<u64> {
        Some(CLUSTER)
    }
    fn refusal(&self, peer: &shoal_net::PeerId, cluster_id: u64) -> Option<String> {
        let member = self.members.locked().contains(peer);
        (cluster_id != CLUSTER || !member)
            .then(|| format!("{peer} is not one of the bench's nodes"))
    }
    fn seen(&self, _: shoal_net::PeerId) {}
    fn reads_links(&self, _: &shoal_net::PeerId) -> bool {
        false
    }
    fn peer_of(&self, _: shoal_jobs::cluster::NodeId) -> Option<shoal_net::PeerId> {
        None
    }
    fn copy_takers(&self) -> Vec<shoal_jobs::cluster::NodeId> {
        Vec::new()
    }
}

async fn start_node(
    dir: &std::path::Path,
    name: &str,
    peers: Vec<shoal_net::Multiaddr>,
    book: Arc<Pair>,
) -> anyhow::Result<(
    Arc<Storage>,
    String,
    tokio::sync::mpsc::UnboundedReceiver<Event>,
)> {
    let keypair = Keypair::generate_ed25519();
    let peer_id = keypair.public().to_peer_id();
    let (net, mut events, event_loop) = shoal_net::start(shoal_net::Config {
        keypair,
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse()?],
        peers,
        mdns: false,
        psk: None,
    })?;
    tokio::spawn(event_loop.run());
    let addr = loop {
        match events.recv().await {
            Some(Event::Listening { addr }) => break addr,
            Some(_) => continue,
            None => anyhow::bail!("the network stopped"),
        }
    };
    book.members.locked().push(peer_id);
    let blobs = crate::storage::blobs::Blobs::open(dir.join(name))?;
    let id = book.members.locked().len() as u64;
    let store = Storage::new(id, net, book, blobs, 0);
    Ok((Arc::new(store), addr.to_string(), events))
}

/// Serve on A: the node's data plane, or for the key `raw` a bare copy of the file at
/// `raw_path` (the baseline).
async fn serve_a(
    server: Arc<Storage>,
    mut a_events: tokio::sync::mpsc::UnboundedReceiver<Event>,
    raw_path: std::path::PathBuf,
) {
    while let Some(e) = a_events.recv().await {
        if let Event::Data {
            peer,
            request,
            mut stream,
        } = e
        {
            match &request {
                DataRequest::Fetch { key, .. } if key == "raw" => {
                    let path = raw_path.clone();
                    tokio::spawn(async move {
                        let mut f = match tokio::fs::File::open(&path).await {
                            Ok(f) => f,
                            Err(_) => return,
                        };
                        let mut buf = vec![0u8; 1 << 20];
                        while let Ok(n) = f.read(&mut buf).await {
                            if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = stream.close().await;
                    });
                }
                _ => {
                    tokio::spawn(crate::storage::serve::serve(
                        Arc::clone(&server),
                        peer,
                        request,
                        stream,
                    ));
                }
            }
        }
    }
}

/// Seconds to read `size` bytes from `a_peer` over a bare libp2p stream (the key `raw`).
async fn bare_stream(b: &Storage, a_peer: shoal_net::PeerId, size: u64) -> anyhow::Result<f64> {
    let t = Instant::now();
    let mut s = b.net.open_data(a_peer).await?;
    shoal_net::codec::write_frame(
        &mut s,
        &DataRequest::Fetch {
            cluster_id: CLUSTER,
            key: "raw".into(),
        },
    )
    .await?;
    let mut buf = vec![0u8; 1 << 20];
    let mut raw = 0u64;
    loop {
        let k = s.read(&mut buf).await?;
        if k == 0 {
            break;
        }
        raw += k as u64;
    }
    anyhow::ensure!(raw == size, "raw stream copied {raw} of {size} bytes");

    Ok(t.elapsed().as_secs_f64())
}

/// Seconds to copy the file at `path` (`size` bytes) over plain loopback TCP.
async fn tcp_copy(path: &std::path::Path, size: u64) -> anyhow::Result<f64> {
    let mut buf = vec![0u8; 1 << 20];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let at = listener.local_addr()?;
    let p = path.to_path_buf();
    let send = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await?;
        let mut f = tokio::fs::File::open(&p).await?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            sock.write_all(&buf[..n]).await?;
        }
        sock.shutdown().await?;
        Ok::<_, std::io::Error>(())
    });
    let t = Instant::now();
    let mut sock = tokio::net::TcpStream::connect(at).await?;
    let mut tcp = 0u64;
    loop {
        let k = sock.read(&mut buf).await?;
        if k == 0 {
            break;
        }
        tcp += k as u64;
    }
    send.await??;
    anyhow::ensure!(tcp == size, "TCP copied {tcp} of {size} bytes");

    Ok(t.elapsed().as_secs_f64())
}

async fn bench(size_mb: u64, runs: usize) -> anyhow::Result<ShuffleFigures> {
    let dir = tempfile::tempdir()?;
    let size = size_mb << 20;
    // The data plane serves members only: each node's book names the other.
    let book = Arc::new(Pair {
        members: Default::default(),
    });
    let (a, a_addr, a_events) = start_node(dir.path(), "a", vec![], Arc::clone(&book)).await?;
    let (b, _, mut b_events) =
        start_node(dir.path(), "b", vec![a_addr.parse()?], Arc::clone(&book)).await?;

    // The object, in A's store (and the page cache, as a fresh map output is).
    let key = "j-bench/m-00000.a1/m-00000.p-00000";
    let mut w = a.blobs.create(key)?;
    let mut block = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in block.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let mut sum = shoal_jobs::checksum::Running::default();
    for _ in 0..size_mb {
        w.write_all(&block)?;
        sum.update(&block);
    }
    w.commit()?;
    let want = sum.value();
    let path = a
        .blobs
        .path(key)
        .ok_or_else(|| anyhow::anyhow!("bad key"))?;

    // A serves: the node's data plane, or a raw copy for the baseline.
    tokio::spawn(serve_a(Arc::clone(&a), a_events, path.clone()));
    let a_peer = book.members.locked()[0];
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(e) = b_events.recv().await {
            if matches!(e, Event::Connected { peer, .. } if peer == a_peer) {
                return;
            }
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("the two nodes did not connect within 10 s"))?;
    tokio::spawn(async move { while b_events.recv().await.is_some() {} });

    let mut best = [f64::MAX; 5];
    let fetched = dir.path().join("fetched");
    let pieces = [shoal_net::wire::Piece {
        key: key.into(),
        offset: 0,
        len: size,
    }];
    for _ in 0..runs {
        // /shoal/data/1, the node's own fetch.
        let t = Instant::now();
        let mut got = 0u64;
        let n = crate::storage::data::fetch(&b, a_peer, key, |c| {
            got += c.len() as u64;
            Ok(())
        })
        .await?;
        anyhow::ensure!(n == size && got == size, "fetched {n} of {size} bytes");
        best[0] = best[0].min(t.elapsed().as_secs_f64());

        // A bare libp2p stream over the same transport.
        best[1] = best[1].min(bare_stream(&b, a_peer, size).await?);

        // Plain loopback TCP.
        best[2] = best[2].min(tcp_copy(&path, size).await?);

        // Into a file, as a reducer fetches (its checksum taken as the bytes arrive); and
        // the checksum alone, over the same bytes in memory.
        let t = Instant::now();
        let (n, sums) = crate::storage::data::fetch_pieces_to_file(&b, a_peer, &pieces, &fetched)
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.error))?;
        anyhow::ensure!(n == size, "fetched {n} of {size} bytes into a file");
        anyhow::ensure!(sums == [want], "the fetched copy's checksum differs");
        best[3] = best[3].min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let mut sum = shoal_jobs::checksum::Running::default();
        for _ in 0..size_mb {
            sum.update(std::hint::black_box(&block));
        }
        anyhow::ensure!(sum.value() == want, "the checksum differs in memory");
        best[4] = best[4].min(t.elapsed().as_secs_f64());
        std::fs::remove_file(&fetched)?;
    }
    Ok(ShuffleFigures {
        data_plane: best[0],
        bare_stream: best[1],
        tcp: best[2],
        to_file: best[3],
        check: best[4],
    })
}
