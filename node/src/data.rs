//! Objects between nodes over `/shoal/data/1`: fetch (the holder streams `Chunk` frames, then
//! `End`) and put (the sender streams, the receiver answers `End` once the object is
//! durable). Flow control is the stream's: yamux's window stops a writer whose reader does
//! not keep up, so neither side holds more than a few chunks in memory.
//!
//! The invariant: a fetch either delivers the whole object or fails with the holder's
//! reason; a put either leaves a complete object on the receiver or nothing.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use futures::AsyncWriteExt;
use shoal_net::wire::{DataFrame, DataRequest};
use shoal_net::{codec, PeerId, Stream};
use tokio::sync::mpsc;

use crate::node::{foreign_reason, Node};

/// Bytes per `Chunk` frame.
pub const CHUNK: usize = 1 << 20;
/// Largest frame a data stream accepts (a chunk and its CBOR header).
const MAX_DATA_FRAME: usize = CHUNK + 64;
/// How long a silent data stream is waited for: a 1 MiB chunk takes milliseconds, so this
/// much silence means the peer is gone (a cut cable keeps a TCP connection open for a while).
const STALL: Duration = Duration::from_secs(10);
/// How long opening a data stream may take (a round trip on a live connection).
const OPEN: Duration = Duration::from_secs(5);

/// Why a transfer failed.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The stream could not be opened or broke.
    #[error("data stream to {peer}: {message}")]
    Stream {
        /// The other side.
        peer: PeerId,
        /// What happened.
        message: String,
    },
    /// The other side went silent: it is unreachable, and trying again would only wait again.
    #[error(
        "data stream to {peer}: no answer (silent for {STALL:?}, or not open within {OPEN:?})"
    )]
    Silent {
        /// The other side.
        peer: PeerId,
    },
    /// The other side refused or failed.
    #[error("{peer} answered: {message}")]
    Remote {
        /// The other side.
        peer: PeerId,
        /// Its reason.
        message: String,
    },
    /// A local file failed.
    #[error("{0}")]
    Local(String),
}

fn broke(peer: PeerId, e: impl std::fmt::Display) -> DataError {
    DataError::Stream {
        peer,
        message: e.to_string(),
    }
}

/// Answer an inbound data stream.
pub async fn serve(node: Arc<Node>, peer: PeerId, req: DataRequest, mut stream: Stream) {
    let (cluster_id, key) = match &req {
        DataRequest::Fetch { cluster_id, key } | DataRequest::Put { cluster_id, key } => {
            (*cluster_id, key.clone())
        }
    };
    let refuse = match node.cluster_id() {
        Some(ours) if ours == cluster_id => None,
        Some(ours) => {
            node.note_foreign(peer, cluster_id, ours);
            Some(foreign_reason(ours))
        }
        None => Some("this node has no cluster yet".into()),
    };
    if let Some(why) = refuse {
        let _ = codec::write_frame(&mut stream, &DataFrame::Error(why)).await;
        let _ = stream.close().await;
        return;
    }
    node.seen(peer);
    let result = match req {
        DataRequest::Fetch { .. } => send_object(&node, &key, &mut stream).await,
        DataRequest::Put { .. } => receive_object(&node, &key, &mut stream).await,
    };
    if let Err(e) = result {
        tracing::debug!(%peer, %key, error = %e, "data stream ended with an error");
        let _ = codec::write_frame(&mut stream, &DataFrame::Error(e)).await;
    }
    let _ = stream.close().await;
}

async fn send_object(node: &Node, key: &str, stream: &mut Stream) -> Result<(), String> {
    let (file, _) = node
        .blobs
        .open_read(key)
        .map_err(|e| format!("no object {key:?} on this node: {e}"))?;
    let (tx, mut rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(2);
    // Disk reads on a blocking thread; two chunks in flight at most.
    tokio::task::spawn_blocking(move || read_chunks(file, &tx));
    while let Some(chunk) = rx.recv().await {
        let chunk = chunk.map_err(|e| format!("reading {key:?}: {e}"))?;
        DataFrame::write_chunk(stream, &chunk)
            .await
            .map_err(|e| e.to_string())?;
    }
    codec::write_frame(stream, &DataFrame::End)
        .await
        .map_err(|e| e.to_string())
}

fn read_chunks(mut file: std::fs::File, tx: &mpsc::Sender<std::io::Result<Vec<u8>>>) {
    loop {
        let mut buf = vec![0u8; CHUNK];
        let mut n = 0;
        while n < CHUNK {
            match file.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
        if n == 0 {
            return;
        }
        buf.truncate(n);
        if tx.blocking_send(Ok(buf)).is_err() {
            return;
        }
        if n < CHUNK {
            return;
        }
    }
}

async fn receive_object(node: &Node, key: &str, stream: &mut Stream) -> Result<(), String> {
    let mut w = node
        .blobs
        .create(key)
        .map_err(|e| format!("cannot store {key:?}: {e}"))?;
    loop {
        let frame = tokio::time::timeout(STALL, DataFrame::read(stream, MAX_DATA_FRAME)).await;
        match frame {
            Ok(Ok(DataFrame::Chunk(bytes))) => {
                if let Err(e) = w.write_all(&bytes) {
                    w.abort();
                    return Err(format!("storing {key:?}: {e}"));
                }
            }
            Ok(Ok(DataFrame::End)) => break,
            Ok(Ok(DataFrame::Error(why))) => {
                w.abort();
                return Err(format!("the sender gave up: {why}"));
            }
            Ok(Err(e)) => {
                w.abort();
                return Err(format!("bad data stream: {e}"));
            }
            Err(_) => {
                w.abort();
                return Err(format!("the sender went silent for {STALL:?}"));
            }
        }
    }
    w.commit().map_err(|e| format!("{key:?}: {e}"))?;
    codec::write_frame(stream, &DataFrame::End)
        .await
        .map_err(|e| e.to_string())
}

async fn open(node: &Node, peer: PeerId, req: &DataRequest) -> Result<Stream, DataError> {
    let opened = tokio::time::timeout(OPEN, async {
        let mut stream = node.net.open_data(peer).await.map_err(|e| broke(peer, e))?;
        codec::write_frame(&mut stream, req)
            .await
            .map_err(|e| broke(peer, e))?;
        Ok(stream)
    });
    opened.await.map_err(|_| DataError::Silent { peer })?
}

/// Fetch `key` from `peer`, handing each chunk to `sink`. Returns the bytes received.
pub async fn fetch(
    node: &Node,
    peer: PeerId,
    key: &str,
    mut sink: impl FnMut(&[u8]) -> Result<(), String>,
) -> Result<u64, DataError> {
    let cluster_id = node
        .cluster_id()
        .ok_or_else(|| DataError::Local("this node has no cluster yet".into()))?;
    let req = DataRequest::Fetch {
        cluster_id,
        key: key.to_owned(),
    };
    let mut stream = open(node, peer, &req).await?;
    let mut total = 0u64;
    loop {
        let frame = tokio::time::timeout(STALL, DataFrame::read(&mut stream, MAX_DATA_FRAME))
            .await
            .map_err(|_| DataError::Silent { peer })?
            .map_err(|e| broke(peer, e))?;
        match frame {
            DataFrame::Chunk(bytes) => {
                total += bytes.len() as u64;
                sink(&bytes).map_err(DataError::Local)?;
            }
            DataFrame::End => return Ok(total),
            DataFrame::Error(message) => return Err(DataError::Remote { peer, message }),
        }
    }
}

/// Tries of a transfer whose stream broke (a connection replaced under it, say).
const TRIES: u32 = 3;

/// Run `transfer` again when the stream broke, up to [`TRIES`] times.
async fn retrying<F, Fut>(mut transfer: F) -> Result<u64, DataError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, DataError>>,
{
    let mut tries = 1;
    loop {
        match transfer().await {
            Err(e @ DataError::Stream { .. }) if tries < TRIES => {
                tracing::debug!(error = %e, "data stream broke; trying again");
                tokio::time::sleep(Duration::from_millis(50 * u64::from(tries))).await;
                tries += 1;
            }
            other => return other,
        }
    }
}

/// Fetch `key` from `peer` into a local file, retrying a broken stream. Returns the bytes
/// received.
pub async fn fetch_to_file(
    node: &Node,
    peer: PeerId,
    key: &str,
    path: &std::path::Path,
) -> Result<u64, DataError> {
    retrying(|| fetch_to_file_once(node, peer, key, path)).await
}

async fn fetch_to_file_once(
    node: &Node,
    peer: PeerId,
    key: &str,
    path: &std::path::Path,
) -> Result<u64, DataError> {
    let file = std::fs::File::create(path)
        .map_err(|e| DataError::Local(format!("creating {}: {e}", path.display())))?;
    let mut out = std::io::BufWriter::with_capacity(CHUNK, file);
    let n = fetch(node, peer, key, |b| {
        out.write_all(b)
            .map_err(|e| format!("writing {}: {e}", path.display()))
    })
    .await?;
    out.flush()
        .map_err(|e| DataError::Local(format!("writing {}: {e}", path.display())))?;
    Ok(n)
}

/// Fetch `key` from `peer` as a stream of chunks (for HTTP bodies); errors end the stream.
pub fn fetch_stream(
    node: Arc<Node>,
    peer: PeerId,
    key: String,
) -> impl futures::Stream<Item = Result<Vec<u8>, DataError>> {
    let (tx, rx) = mpsc::channel::<Result<Vec<u8>, DataError>>(4);
    tokio::spawn(async move {
        let cluster_id = match node.cluster_id() {
            Some(c) => c,
            None => {
                let _ = tx
                    .send(Err(DataError::Local("this node has no cluster yet".into())))
                    .await;
                return;
            }
        };
        let req = DataRequest::Fetch { cluster_id, key };
        let mut stream = match open(&node, peer, &req).await {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        loop {
            let frame = tokio::time::timeout(STALL, DataFrame::read(&mut stream, MAX_DATA_FRAME))
                .await
                .map_err(|_| DataError::Silent { peer })
                .and_then(|r| r.map_err(|e| broke(peer, e)));
            let item = match frame {
                Ok(DataFrame::Chunk(bytes)) => Ok(bytes),
                Ok(DataFrame::End) => return,
                Ok(DataFrame::Error(message)) => Err(DataError::Remote { peer, message }),
                Err(e) => Err(e),
            };
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                return;
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|i| (i, rx)) })
}

/// Store the local file `path` on `peer` under `key`, retrying a broken stream.
pub async fn push_file(
    node: &Node,
    peer: PeerId,
    key: &str,
    path: &std::path::Path,
) -> Result<u64, DataError> {
    retrying(|| push_file_once(node, peer, key, path)).await
}

async fn push_file_once(
    node: &Node,
    peer: PeerId,
    key: &str,
    path: &std::path::Path,
) -> Result<u64, DataError> {
    let cluster_id = node
        .cluster_id()
        .ok_or_else(|| DataError::Local("this node has no cluster yet".into()))?;
    let file = std::fs::File::open(path)
        .map_err(|e| DataError::Local(format!("opening {}: {e}", path.display())))?;
    let req = DataRequest::Put {
        cluster_id,
        key: key.to_owned(),
    };
    let mut stream = open(node, peer, &req).await?;
    let (tx, mut rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(2);
    tokio::task::spawn_blocking(move || read_chunks(file, &tx));
    let mut total = 0u64;
    while let Some(chunk) = rx.recv().await {
        let chunk =
            chunk.map_err(|e| DataError::Local(format!("reading {}: {e}", path.display())))?;
        total += chunk.len() as u64;
        tokio::time::timeout(STALL, DataFrame::write_chunk(&mut stream, &chunk))
            .await
            .map_err(|_| DataError::Silent { peer })?
            .map_err(|e| broke(peer, e))?;
    }
    codec::write_frame(&mut stream, &DataFrame::End)
        .await
        .map_err(|e| broke(peer, e))?;
    let answer = tokio::time::timeout(STALL, DataFrame::read(&mut stream, MAX_DATA_FRAME))
        .await
        .map_err(|_| DataError::Silent { peer })?
        .map_err(|e| broke(peer, e))?;
    let _ = stream.close().await;
    match answer {
        DataFrame::End => Ok(total),
        DataFrame::Error(message) => Err(DataError::Remote { peer, message }),
        DataFrame::Chunk(_) => Err(broke(peer, "unexpected data in the answer to a put")),
    }
}
