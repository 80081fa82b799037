//! Objects between nodes over `/shoal/data/1`, the asking side (the answering side is
//! `serve`): fetch (the holder streams `Chunk` frames, then `End`) and put (the sender streams, the receiver answers `End` once the object is
//! durable). Flow control is the stream's: yamux's window stops a writer whose reader does
//! not keep up, so neither side holds more than a few chunks in memory.
//!
//! The invariant: a fetch either delivers the whole object or fails with the holder's
//! reason; a put either leaves a complete object on the receiver or nothing.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use futures::AsyncWriteExt;
use shoal_net::wire::{DataFrame, DataRequest, Piece, MAX_BATCH_KEYS};
use shoal_net::{codec, PeerId, Stream};
use tokio::sync::mpsc;

use crate::storage::Storage;

/// Bytes per `Chunk` frame.
pub const CHUNK: usize = 1 << 20;
/// Largest frame a data stream accepts (a chunk and its CBOR header).
pub(super) const MAX_DATA_FRAME: usize = CHUNK + 64;
/// How long a silent data stream is waited for: a 1 MiB chunk takes milliseconds, so this
/// much silence means the peer is gone (a cut cable keeps a TCP connection open for a while).
pub(super) const STALL: Duration = Duration::from_secs(10);
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

/// Read `len` bytes of `file` from where it stands, in chunks of at most [`CHUNK`].
pub(super) fn read_chunks(
    file: std::fs::File,
    len: u64,
    tx: &mpsc::Sender<std::io::Result<Vec<u8>>>,
) {
    let mut file = file.take(len);
    let mut left = len;
    while left > 0 {
        // A small piece gets a buffer its size, not a zeroed 1 MiB: a reduce over thousands
        // of small map outputs would spend its time in memset.
        let cap = left.min(CHUNK as u64) as usize;
        let mut buf = vec![0u8; cap];
        let mut n = 0;
        while n < cap {
            match file.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
        if n < cap {
            let _ = tx.blocking_send(Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the object is shorter than it was",
            )));
            return;
        }
        left -= n as u64;
        if tx.blocking_send(Ok(buf)).is_err() {
            return;
        }
    }
}

async fn open(store: &Storage, peer: PeerId, req: &DataRequest) -> Result<Stream, DataError> {
    let opened = tokio::time::timeout(OPEN, async {
        let mut stream = store
            .net
            .open_data(peer)
            .await
            .map_err(|e| broke(peer, e))?;
        codec::write_frame(&mut stream, req)
            .await
            .map_err(|e| broke(peer, e))?;
        Ok(stream)
    });
    opened.await.map_err(|_| DataError::Silent { peer })?
}

/// Fetch `key` from `peer`, handing each chunk to `sink`. Returns the bytes received.
pub async fn fetch(
    store: &Storage,
    peer: PeerId,
    key: &str,
    mut sink: impl FnMut(&[u8]) -> Result<(), String>,
) -> Result<u64, DataError> {
    let req = DataRequest::Fetch {
        cluster_id: our_cluster(store)?,
        key: key.to_owned(),
    };
    let mut stream = open(store, peer, &req).await?;
    let mut total = 0u64;
    loop {
        match read_frame(&mut stream, peer).await? {
            DataFrame::Chunk(bytes) => {
                total += bytes.len() as u64;
                sink(&bytes).map_err(DataError::Local)?;
            }
            DataFrame::End => return Ok(total),
            DataFrame::Error(message) => return Err(DataError::Remote { peer, message }),
        }
    }
}

/// Fetch `piece` from `peer` into `out`, checking that exactly its length arrives; its
/// bytes and their checksum, taken as they arrived.
pub async fn fetch_range(
    store: &Storage,
    peer: PeerId,
    piece: &Piece,
    out: &mut impl Write,
) -> Result<(u64, u32), DataError> {
    let mut sums = Vec::with_capacity(1);
    match fetch_batch_once(store, peer, std::slice::from_ref(piece), out, &mut sums).await {
        (_, n, None) => Ok((n, sums.first().copied().unwrap_or_default())),
        (_, _, Some(e)) => Err(e),
    }
}

/// This node's cluster id, which every data request carries.
fn our_cluster(store: &Storage) -> Result<u64, DataError> {
    store
        .book
        .cluster_id()
        .ok_or_else(|| DataError::Local("this node has no cluster yet".into()))
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

/// Fetch `key` from `peer` as a stream of chunks (for HTTP bodies); errors end the stream.
pub fn fetch_stream(
    store: Arc<Storage>,
    peer: PeerId,
    key: String,
) -> impl futures::Stream<Item = Result<Vec<u8>, DataError>> {
    let (tx, rx) = mpsc::channel::<Result<Vec<u8>, DataError>>(4);
    tokio::spawn(async move {
        let cluster_id = match our_cluster(&store) {
            Ok(c) => c,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        let req = DataRequest::Fetch { cluster_id, key };
        let mut stream = match open(&store, peer, &req).await {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        loop {
            let item = match read_frame(&mut stream, peer).await {
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
    store: &Storage,
    peer: PeerId,
    key: &str,
    path: &std::path::Path,
) -> Result<u64, DataError> {
    let items = [(key.to_owned(), path.to_owned())];
    retrying(|| push_files_once(store, peer, &items)).await
}

/// Store each local file on `peer` under its key, all in one stream (at most
/// [`MAX_BATCH_KEYS`]), retrying a broken stream: `Ok` once the peer holds every one.
pub async fn push_files(
    store: &Storage,
    peer: PeerId,
    items: &[(String, std::path::PathBuf)],
) -> Result<u64, DataError> {
    retrying(|| push_files_once(store, peer, items)).await
}

/// [`push_files`], but a node of this host takes a hard link instead of the bytes
/// ([`super::link`]): for input splits, which live as long as their job, not for part
/// files, whose copies must not share one file's fate.
pub async fn push_or_link_files(
    store: &Storage,
    peer: PeerId,
    items: &[(String, std::path::PathBuf)],
) -> Result<u64, DataError> {
    let items = offer_links(store, peer, items).await;
    if items.is_empty() {
        return Ok(0);
    }
    push_files(store, peer, &items).await
}

/// Offer `peer` each object of `items` (key, file) as a hard link ([`super::link`]); the
/// items it did not take, to be sent as bytes.
async fn offer_links(
    store: &Storage,
    peer: PeerId,
    items: &[(String, std::path::PathBuf)],
) -> Vec<(String, std::path::PathBuf)> {
    let (Some(host), Some(cluster_id)) = (store.links.id.clone(), store.book.cluster_id()) else {
        return items.to_vec();
    };
    let mut rest = Vec::new();
    for (i, (key, path)) in items.iter().enumerate() {
        if !store.links.may_offer(&peer) {
            rest.extend_from_slice(&items[i..]);
            break;
        }
        let file = path.clone();
        let measured = tokio::task::spawn_blocking(move || {
            let mut f = std::fs::File::open(&file)?;
            let len = f.metadata()?.len();
            Ok::<_, std::io::Error>((len, shoal_jobs::checksum::of_range(&mut f, 0, len)?))
        })
        .await;
        let Ok(Ok((len, checksum))) = measured else {
            rest.push((key.clone(), path.clone()));
            continue;
        };
        let req = DataRequest::Link {
            cluster_id,
            key: key.clone(),
            host: host.clone(),
            path: path.to_string_lossy().into_owned(),
            len,
            checksum,
        };
        match ask(store, peer, &req).await {
            Ok(DataFrame::End) => {
                store.links.linked(len);
            }
            // The stream failed (a peer too busy to answer in time, a connection lost) on a
            // peer that reads links: the bytes go this time, and it is offered links again.
            Err(e) if store.book.reads_links(&peer) => {
                tracing::debug!(%peer, %key, error = %e, "a link offer failed: the bytes are sent");
                rest.push((key.clone(), path.clone()));
            }
            // It refused (another host, a file it would not take), or cannot read a link:
            // bytes from now on.
            answer => {
                tracing::debug!(%peer, %key, ?answer, "a link was not taken: the bytes are sent");
                store.links.refused_by(peer);
                rest.push((key.clone(), path.clone()));
            }
        }
    }
    rest
}

/// Send `req` and read the one frame that answers it.
async fn ask(store: &Storage, peer: PeerId, req: &DataRequest) -> Result<DataFrame, DataError> {
    let mut stream = open(store, peer, req).await?;
    let answer = read_frame(&mut stream, peer).await;
    let _ = stream.close().await;
    answer
}

async fn push_files_once(
    store: &Storage,
    peer: PeerId,
    items: &[(String, std::path::PathBuf)],
) -> Result<u64, DataError> {
    let cluster_id = our_cluster(store)?;
    let req = match items {
        [(key, _)] => DataRequest::Put {
            cluster_id,
            key: key.clone(),
        },
        _ => DataRequest::PutMany {
            cluster_id,
            keys: items.iter().map(|(k, _)| k.clone()).collect(),
        },
    };
    let mut stream = open(store, peer, &req).await?;
    let mut total = 0u64;
    for (_, path) in items {
        let local =
            |e: std::io::Error| DataError::Local(format!("opening {}: {e}", path.display()));
        let file = std::fs::File::open(path).map_err(local)?;
        let len = file.metadata().map_err(local)?.len();
        let (tx, mut rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(2);
        tokio::task::spawn_blocking(move || read_chunks(file, len, &tx));
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
    }
    let answer = read_frame(&mut stream, peer).await?;
    let _ = stream.close().await;
    match answer {
        DataFrame::End => Ok(total),
        DataFrame::Error(message) => Err(DataError::Remote { peer, message }),
        DataFrame::Chunk(_) => Err(broke(peer, "unexpected data in the answer to a put")),
    }
}

/// The next frame of a data stream, or why there is none.
async fn read_frame(stream: &mut Stream, peer: PeerId) -> Result<DataFrame, DataError> {
    tokio::time::timeout(STALL, DataFrame::read(stream, MAX_DATA_FRAME))
        .await
        .map_err(|_| DataError::Silent { peer })?
        .map_err(|e| broke(peer, e))
}

/// Most bytes one batch stream carries: a batch of small objects is one stream, while large
/// objects still get a stream each (and so run in parallel).
pub const BATCH_BYTES: u64 = 64 << 20;

/// Group `(peer, item)` pairs into batches for one stream each: the items of one peer, in
/// order, at most [`MAX_BATCH_KEYS`] and [`BATCH_BYTES`] (by `size`) a batch, a larger
/// item alone.
pub fn batches<P: Ord + Copy, T>(
    items: impl IntoIterator<Item = (P, T)>,
    size: impl Fn(&T) -> u64,
) -> Vec<(P, Vec<T>)> {
    let mut by_peer: std::collections::BTreeMap<P, Vec<T>> = Default::default();
    for (p, t) in items {
        by_peer.entry(p).or_default().push(t);
    }
    let mut out = Vec::new();
    for (p, ts) in by_peer {
        let mut batch = Vec::new();
        let mut bytes = 0;
        for t in ts {
            let n = size(&t);
            if !batch.is_empty() && (batch.len() == MAX_BATCH_KEYS || bytes + n > BATCH_BYTES) {
                out.push((p, std::mem::take(&mut batch)));
                bytes = 0;
            }
            bytes += n;
            batch.push(t);
        }
        if !batch.is_empty() {
            out.push((p, batch));
        }
    }
    out
}

/// A batch fetch that stopped: how many pieces arrived whole first, and why.
#[derive(Debug)]
pub struct BatchFailed {
    /// Pieces received whole before the failure (the failing one is `pieces[done]`).
    pub done: usize,
    /// Why.
    pub error: DataError,
}

/// Fetch `pieces` from `peer` into one local file at `path`, one after another (so piece
/// `i` starts at the sum of the lengths before it), [`MAX_BATCH_KEYS`] per stream; a broken
/// stream is retried from the first piece not yet received. Returns the bytes received and
/// each piece's checksum, taken as its bytes arrived (no second read to check them).
pub async fn fetch_pieces_to_file(
    store: &Storage,
    peer: PeerId,
    pieces: &[Piece],
    path: &std::path::Path,
) -> Result<(u64, Vec<u32>), BatchFailed> {
    let local = |e: std::io::Error| BatchFailed {
        done: 0,
        error: DataError::Local(format!("writing {}: {e}", path.display())),
    };
    let file = shoal_jobs::scratch::create_new(path, 0o600).map_err(local)?;
    let mut out = std::io::BufWriter::with_capacity(CHUNK, file);
    let (mut done, mut total, mut tries) = (0, 0u64, 1);
    let mut sums = Vec::with_capacity(pieces.len());
    while done < pieces.len() {
        let batch = &pieces[done..pieces.len().min(done + MAX_BATCH_KEYS)];
        let (got, bytes, failed) = fetch_batch_once(store, peer, batch, &mut out, &mut sums).await;
        done += got;
        total += bytes;
        match failed {
            None => {}
            Some(e @ DataError::Stream { .. }) if tries < TRIES => {
                tracing::debug!(error = %e, "data stream broke; trying again");
                // Drop the broken piece's partial bytes: it is fetched again whole.
                let keep = out
                    .flush()
                    .and_then(|()| out.get_ref().set_len(total))
                    .and_then(|()| {
                        std::io::Seek::seek(out.get_mut(), std::io::SeekFrom::Start(total))
                    });
                keep.map_err(|e| BatchFailed { done, ..local(e) })?;
                tokio::time::sleep(Duration::from_millis(50 * u64::from(tries))).await;
                tries += 1;
            }
            Some(error) => return Err(BatchFailed { done, error }),
        }
    }
    out.flush().map_err(|e| BatchFailed { done, ..local(e) })?;
    Ok((total, sums))
}

/// One stream of a batch fetch: pieces received whole (into `out`), their bytes, and what
/// stopped it.
async fn fetch_batch_once(
    store: &Storage,
    peer: PeerId,
    batch: &[Piece],
    out: &mut impl Write,
    sums: &mut Vec<u32>,
) -> (usize, u64, Option<DataError>) {
    let cluster_id = match our_cluster(store) {
        Ok(c) => c,
        Err(e) => return (0, 0, Some(e)),
    };
    let req = DataRequest::FetchMany {
        cluster_id,
        pieces: batch.to_vec(),
    };
    let mut stream = match open(store, peer, &req).await {
        Ok(s) => s,
        Err(e) => return (0, 0, Some(e)),
    };
    let (mut done, mut total) = (0, 0u64);
    for piece in batch {
        match receive_piece(&mut stream, peer, piece, out).await {
            Ok((n, sum)) => {
                done += 1;
                total += n;
                sums.push(sum);
            }
            Err(e) => return (done, total, Some(e)),
        }
    }
    let _ = stream.close().await;
    (done, total, None)
}

/// Read one piece's chunks up to its `End` into `out`, checking its length; its bytes and
/// their checksum.
async fn receive_piece(
    stream: &mut Stream,
    peer: PeerId,
    piece: &Piece,
    out: &mut impl Write,
) -> Result<(u64, u32), DataError> {
    let mut total = 0u64;
    let mut sum = shoal_jobs::checksum::Running::default();
    loop {
        match read_frame(stream, peer).await? {
            DataFrame::Chunk(bytes) => {
                total += bytes.len() as u64;
                if total > piece.len {
                    return Err(DataError::Remote {
                        peer,
                        message: format!(
                            "sent more than the {} bytes asked of {}",
                            piece.len, piece.key
                        ),
                    });
                }
                sum.update(&bytes);
                out.write_all(&bytes)
                    .map_err(|e| DataError::Local(format!("writing a fetched piece: {e}")))?;
            }
            DataFrame::End if total == piece.len => return Ok((total, sum.value())),
            DataFrame::End => {
                return Err(broke(
                    peer,
                    format!("{} ended after {total} of {} bytes", piece.key, piece.len),
                ))
            }
            DataFrame::Error(message) => return Err(DataError::Remote { peer, message }),
        }
    }
}
