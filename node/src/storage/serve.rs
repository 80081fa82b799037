//! The serving side of `/shoal/data/1`: answer a peer's fetch (stream an object's bytes, or
//! pieces of several) or put (store the objects it sends, durable before `End`). A request
//! from another cluster, or over the batch bound, is refused with its reason.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use futures::AsyncWriteExt;
use shoal_net::wire::{DataFrame, DataRequest, MAX_BATCH_KEYS};
use shoal_net::{codec, PeerId, Stream};
use tokio::sync::mpsc;

use crate::storage::data::{read_chunks, MAX_DATA_FRAME, STALL};
use crate::storage::{Storage, MAX_SERVING};

/// Why this node could not answer a data request; sent to the peer as `DataFrame::Error`.
#[derive(Debug, thiserror::Error)]
enum ServeError {
    /// The object is not stored here.
    #[error("no object {key:?} on this node: {source}")]
    NoObject { key: String, source: std::io::Error },
    /// A range outside the object.
    #[error("{key:?} holds {size} bytes, not {offset}+{len}")]
    OutOfRange {
        key: String,
        size: u64,
        offset: u64,
        len: u64,
    },
    /// Reading the object failed.
    #[error("reading {key:?}: {source}")]
    Read { key: String, source: std::io::Error },
    /// An object is already stored under this key, with other bytes.
    #[error("{0:?} is already stored here with other bytes; a stored object is never overwritten")]
    Exists(String),
    /// This node's disk is under its reserve.
    #[error("{0}")]
    DiskFull(String),
    /// Storing an incoming object failed.
    #[error("storing {what}: {source}")]
    Store {
        what: String,
        source: std::io::Error,
    },
    /// The sender sent an error instead of the rest of the object.
    #[error("the sender gave up: {0}")]
    SenderGaveUp(String),
    /// A frame that is not the next part of an object.
    #[error("bad data stream: {0}")]
    BadStream(String),
    /// The sender stopped sending.
    #[error("the sender went silent for {0:?}")]
    Silent(Duration),
    /// Writing to the stream failed.
    #[error("the stream broke: {0}")]
    Stream(String),
}

/// Answer an inbound data stream.
#[tracing::instrument(name = "data_stream", skip_all, fields(%peer, objects = req.count()))]
pub async fn serve(store: Arc<Storage>, peer: PeerId, req: DataRequest, mut stream: Stream) {
    let cluster_id = req.cluster_id();
    let refuse = store.book.refusal(&peer, cluster_id).or_else(|| {
        (req.count() > MAX_BATCH_KEYS).then(|| {
            format!(
                "{} objects in one request; at most {MAX_BATCH_KEYS}",
                req.count()
            )
        })
    });
    let turn = match refuse {
        Some(why) => Err(why),
        None => tokio::time::timeout(STALL, Arc::clone(&store.serving).acquire_owned())
            .await
            .map_err(|_| format!("busy: {MAX_SERVING} data streams are being answered; try again"))
            .and_then(|p| p.map_err(|_| "the node is stopping".to_string())),
    };
    let _turn = match turn {
        Ok(turn) => turn,
        Err(why) => {
            let _ = codec::write_frame(&mut stream, &DataFrame::Error(why)).await;
            let _ = stream.close().await;
            return;
        }
    };
    store.book.seen(peer);
    let result = match &req {
        DataRequest::Fetch { key, .. } => send_piece(&store, key, 0, None, &mut stream).await,
        DataRequest::FetchMany { pieces, .. } => {
            let mut sent = Ok(());
            for p in pieces {
                sent = send_piece(&store, &p.key, p.offset, Some(p.len), &mut stream).await;
                if sent.is_err() {
                    break;
                }
            }
            sent
        }
        DataRequest::Put { key, .. } => {
            receive_objects(&store, std::slice::from_ref(key), &mut stream).await
        }
        DataRequest::PutMany { keys, .. } => receive_objects(&store, keys, &mut stream).await,
        DataRequest::Link {
            key,
            host,
            path,
            len,
            checksum,
            ..
        } => {
            let (s, key, host, path) =
                (Arc::clone(&store), key.clone(), host.clone(), path.clone());
            let (len, checksum) = (*len, *checksum);
            let what = format!("a link to {key:?}");
            match tokio::task::spawn_blocking(move || {
                crate::storage::link::take(&s.links, &s.blobs, &key, &host, &path, len, checksum)
            })
            .await
            {
                Ok(Ok(())) => codec::write_frame(&mut stream, &DataFrame::End)
                    .await
                    .map_err(|e| ServeError::Stream(e.to_string())),
                Ok(Err(source)) => Err(ServeError::Store { what, source }),
                Err(e) => Err(ServeError::Store {
                    what,
                    source: std::io::Error::other(e.to_string()),
                }),
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, objects = req.count(), error = %e, "data stream ended with an error");
        let _ = codec::write_frame(&mut stream, &DataFrame::Error(e.to_string())).await;
    }
    let _ = stream.close().await;
}

/// Stream bytes `offset..offset + len` of `key` (to its end when `len` is `None`): its
/// chunks, then `End`.
async fn send_piece(
    store: &Storage,
    key: &str,
    offset: u64,
    len: Option<u64>,
    stream: &mut Stream,
) -> Result<(), ServeError> {
    let (mut file, size) = store
        .blobs
        .open_read(key)
        .map_err(|source| ServeError::NoObject {
            key: key.into(),
            source,
        })?;
    let len = len.unwrap_or(size.saturating_sub(offset));
    if offset.checked_add(len).is_none_or(|end| end > size) {
        return Err(ServeError::OutOfRange {
            key: key.into(),
            size,
            offset,
            len,
        });
    }
    let read = |source| ServeError::Read {
        key: key.into(),
        source,
    };
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(offset)).map_err(read)?;
    let (tx, mut rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(2);
    // Disk reads on a blocking thread; two chunks in flight at most.
    tokio::task::spawn_blocking(move || read_chunks(file, len, &tx));
    while let Some(chunk) = rx.recv().await {
        let chunk = chunk.map_err(read)?;
        DataFrame::write_chunk(stream, &chunk)
            .await
            .map_err(|e| ServeError::Stream(e.to_string()))?;
    }
    codec::write_frame(stream, &DataFrame::End)
        .await
        .map_err(|e| ServeError::Stream(e.to_string()))
}

/// Bytes received between two looks at the disk reserve (`--min-free-mb`).
const RESERVE_CHECK_BYTES: usize = 16 << 20;

/// Store each object of `keys` as it arrives (chunks, then `End`, one after another); answer
/// `End` once every one is durable. An object that does not arrive whole is not stored.
async fn receive_objects(
    store: &Storage,
    keys: &[String],
    stream: &mut Stream,
) -> Result<(), ServeError> {
    store
        .disk_ok()
        .map_err(|e| ServeError::DiskFull(format!("node {:016x}: {e}", store.id)))?;
    let mut received = Vec::with_capacity(keys.len());
    for key in keys {
        received.push(receive_object(store, key, stream).await?);
    }
    // Durable and visible together, off the runtime. A committed object is never
    // overwritten: the same bytes again (a retry whose answer was lost) are taken as stored,
    // other bytes refused.
    let blobs = store.blobs.clone();
    let what = format!("{} object(s)", keys.len());
    let keys = keys.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut fresh = Vec::with_capacity(received.len());
        for (key, object) in keys.into_iter().zip(received) {
            let store = |source| ServeError::Store {
                what: format!("{key:?}"),
                source,
            };
            match object.unless_stored() {
                Ok(Some(object)) => fresh.push(object),
                Ok(None) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(ServeError::Exists(key))
                }
                Err(e) => return Err(store(e)),
            }
        }
        blobs
            .commit_all(fresh)
            .map_err(|source| ServeError::Store { what, source })
    })
    .await
    .map_err(|e| ServeError::Store {
        what: "the objects".into(),
        source: std::io::Error::other(e.to_string()),
    })??;
    codec::write_frame(stream, &DataFrame::End)
        .await
        .map_err(|e| ServeError::Stream(e.to_string()))
}

/// Read one object's chunks up to its `End` into the store, written but not yet committed.
async fn receive_object(
    store: &Storage,
    key: &str,
    stream: &mut Stream,
) -> Result<crate::storage::blobs::Unsynced, ServeError> {
    let failed = |source| ServeError::Store {
        what: format!("{key:?}"),
        source,
    };
    let mut w = store.blobs.create(key).map_err(failed)?;
    let mut unchecked = 0usize;
    loop {
        let frame = tokio::time::timeout(STALL, DataFrame::read(stream, MAX_DATA_FRAME)).await;
        let failed = match frame {
            Ok(Ok(DataFrame::Chunk(bytes))) => {
                // The reserve holds as bytes arrive, not only when the batch began.
                unchecked = unchecked.saturating_add(bytes.len());
                let full = if unchecked >= RESERVE_CHECK_BYTES {
                    unchecked = 0;
                    store.disk_ok().err()
                } else {
                    None
                };
                match (full, w.write_all(&bytes)) {
                    (None, Ok(())) => continue,
                    (Some(e), _) => ServeError::DiskFull(format!("node {:016x}: {e}", store.id)),
                    (None, Err(e)) => failed(e),
                }
            }
            Ok(Ok(DataFrame::End)) => break,
            Ok(Ok(DataFrame::Error(why))) => ServeError::SenderGaveUp(why),
            Ok(Err(e)) => ServeError::BadStream(e.to_string()),
            Err(_) => ServeError::Silent(STALL),
        };
        w.abort();
        return Err(failed);
    }
    w.finish_unsynced().map_err(failed)
}
