//! Frames on the wire: a big-endian `u32` length, then that many bytes of CBOR (ciborium).
//! Used by every Shoal protocol, including libp2p request-response through [`CborCodec`].
//!
//! The invariant: a length above the frame limit is refused before anything is allocated,
//! and bytes that do not decode are an `io::Error` on that stream — never a panic.

use std::io;
use std::marker::PhantomData;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Largest frame accepted (a Raft snapshot of the job table is the biggest message).
pub const MAX_FRAME: usize = 64 << 20;

/// The largest command the replicated log takes, wherever it enters (an HTTP submission, a
/// member's forwarded proposal, the leader's own): half a frame, so that an append carrying
/// it, or a push or proposal carrying it, always fits in one frame with room to spare.
pub const MAX_COMMAND_BYTES: usize = MAX_FRAME / 2;

/// Encode a value as CBOR into a new buffer.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut buf = Vec::new();
    ciborium::into_writer(value, &mut buf).expect("CBOR encoding into a Vec cannot fail");
    buf
}

/// Decode CBOR bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    ciborium::from_reader(bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad CBOR frame: {e}")))
}

/// Write one frame holding `value`.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    io: &mut W,
    value: &T,
) -> io::Result<()> {
    let body = encode(value);
    write_raw_frame(io, &body).await
}

/// Write one frame holding `body` as is.
pub async fn write_raw_frame<W: AsyncWrite + Unpin>(io: &mut W, body: &[u8]) -> io::Result<()> {
    if body.len() > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "frame of {} bytes is over the {MAX_FRAME}-byte limit",
                body.len()
            ),
        ));
    }
    io.write_all(&(body.len() as u32).to_be_bytes()).await?;
    io.write_all(body).await?;
    io.flush().await
}

/// Read a frame's length prefix, refusing lengths over `max`.
pub async fn read_frame_len<R: AsyncRead + Unpin>(io: &mut R, max: usize) -> io::Result<usize> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame length {len} is over the {max}-byte limit"),
        ));
    }
    Ok(len)
}

/// Bytes read from a stream at a time: a frame's buffer grows by what arrives, never by
/// what its length prefix promises.
const READ_STEP: usize = 16 << 10;

/// Read one frame's bytes, refusing lengths over `max` before allocating; the buffer grows
/// as the bytes arrive, not as the prefix says.
pub async fn read_raw_frame<R: AsyncRead + Unpin>(io: &mut R, max: usize) -> io::Result<Vec<u8>> {
    let len = read_frame_len(io, max).await?;
    read_body(io, len, None).await.map(|(body, _)| body)
}

/// Read the `len` bytes of a frame's body as they arrive; with a `budget`, the bytes that
/// arrived are taken from its pool for frames of that size before they are kept (waiting
/// while it is spent), and handed back when the returned [`Held`] is dropped.
async fn read_body<R: AsyncRead + Unpin>(
    io: &mut R,
    len: usize,
    budget: Option<&Budget>,
) -> io::Result<(Vec<u8>, Held)> {
    let mut body = Vec::new();
    let mut held = Held(None);
    let mut step = [0u8; READ_STEP];
    let pool = budget.map(|b| b.pool(len));
    while body.len() < len {
        let want = (len - body.len()).min(READ_STEP);
        let n = match pool {
            None => io.read(&mut step[..want]).await?,
            Some(pool) => {
                pool.bytes(io.read(&mut step[..want]), held.0.is_some())
                    .await?
            }
        };
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if let Some(pool) = pool {
            idle(
                pool.take(&mut held, body.len() + n),
                "busy: the node's read budget stayed spent",
            )
            .await?;
        }
        body.extend_from_slice(&step[..n]);
    }
    Ok((body, held))
}

/// How long a budgeted read may wait for its peer's next bytes, or for its share of the
/// budget, before it ends: a sender that stalls, or one behind others that fill the budget,
/// holds nothing for longer.
pub const READ_IDLE: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a read that holds part of the budget may wait for its peer's next bytes while
/// other reads wait for the budget: a stalled sender gives way to them.
pub const PRESSED_IDLE: std::time::Duration = std::time::Duration::from_secs(1);

/// `step`, unless it takes longer than [`READ_IDLE`]: then a timed-out error saying `what`.
async fn idle<T>(
    step: impl std::future::Future<Output = io::Result<T>>,
    what: &str,
) -> io::Result<T> {
    tokio::time::timeout(READ_IDLE, step)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("{what} for {READ_IDLE:?}")))?
}

/// Bytes of frames being read, shared by every stream of one protocol: whatever peers send,
/// at most this many bytes of their unfinished requests are held at once. A length prefix
/// takes nothing; bytes take their share as they arrive, so a peer that announces a large
/// frame and goes silent holds nothing, and one that sends most of it and stalls holds what
/// it sent for at most [`READ_IDLE`] — [`PRESSED_IDLE`] while other reads wait for it.
///
/// Frames of at most [`SMALL_FRAME`] bytes (heartbeats, votes, most appends and reports)
/// are held in a pool of their own, [`SMALL_POOL`] bytes: large frames that fill the budget
/// never make a small one wait behind them.
#[derive(Clone, Debug)]
pub struct Budget {
    large: Pool,
    small: Pool,
}

/// The largest frame held in a [`Budget`]'s pool for small frames.
pub const SMALL_FRAME: usize = 64 << 10;
/// The bytes of that pool: 128 small frames at once.
pub const SMALL_POOL: usize = 128 * SMALL_FRAME;

/// KiB to hand out, and how many in all.
#[derive(Clone, Debug)]
struct Pool {
    kib: std::sync::Arc<tokio::sync::Semaphore>,
    total: u32,
    /// Reads waiting for their share now.
    waiting: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// Part of a [`Budget`] (whole KiB), handed back when dropped.
pub struct Held(Option<tokio::sync::OwnedSemaphorePermit>);

impl Budget {
    /// A budget of `bytes` (whole KiB) for large frames, beside the pool for small ones.
    pub fn new(bytes: usize) -> Self {
        Budget {
            large: Pool::new(bytes),
            small: Pool::new(SMALL_POOL),
        }
    }

    /// Bytes of it not held by any read of a large frame now.
    pub fn available(&self) -> usize {
        self.large.kib.available_permits() << 10
    }

    /// The pool that holds a frame of `len` bytes.
    fn pool(&self, len: usize) -> &Pool {
        if len <= SMALL_FRAME {
            &self.small
        } else {
            &self.large
        }
    }
}

impl Pool {
    fn new(bytes: usize) -> Pool {
        let total = u32::try_from(bytes >> 10).unwrap_or(u32::MAX);
        Pool {
            kib: std::sync::Arc::new(tokio::sync::Semaphore::new(total as usize)),
            total,
            waiting: Default::default(),
        }
    }

    /// Grow `held` to cover `bytes`, waiting while the pool is spent.
    async fn take(&self, held: &mut Held, bytes: usize) -> io::Result<()> {
        let have = held.0.as_ref().map_or(0, |p| p.num_permits());
        let need = bytes.div_ceil(1024).min(self.total as usize);
        if need <= have {
            return Ok(());
        }
        let more = u32::try_from(need - have).unwrap_or(u32::MAX);
        let _waiting = Waiting::new(&self.waiting);
        let permit = std::sync::Arc::clone(&self.kib)
            .acquire_many_owned(more)
            .await
            .map_err(|_| io::Error::other("the read budget is closed"))?;
        match &mut held.0 {
            Some(p) => p.merge(permit),
            None => held.0 = Some(permit),
        }
        Ok(())
    }

    /// A read's next bytes (`read`), unless none come for [`READ_IDLE`] — or, when the read
    /// is `holding` part of the budget, for [`PRESSED_IDLE`] while other reads wait for it.
    async fn bytes<T>(
        &self,
        read: impl std::future::Future<Output = io::Result<T>>,
        holding: bool,
    ) -> io::Result<T> {
        let started = tokio::time::Instant::now();
        let mut read = std::pin::pin!(read);
        loop {
            match tokio::time::timeout(PRESSED_IDLE, &mut read).await {
                Ok(r) => return r,
                Err(_) if holding && self.waiting.load(std::sync::atomic::Ordering::Relaxed) > 0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no bytes of the request came for {PRESSED_IDLE:?} while other requests waited for the read budget"),
                    ))
                }
                Err(_) if started.elapsed() >= READ_IDLE => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no bytes of the request came for {READ_IDLE:?}"),
                    ))
                }
                Err(_) => {}
            }
        }
    }
}

/// One read counted as waiting for the budget while this lives.
struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a std::sync::atomic::AtomicUsize) -> Self {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Read one frame and decode it, its bytes held in `budget` until decoded.
pub async fn read_frame_in<R: AsyncRead + Unpin, T: DeserializeOwned>(
    io: &mut R,
    max: usize,
    budget: &Budget,
) -> io::Result<T> {
    let len = read_frame_len(io, max).await?;
    let (body, _held) = read_body(io, len, Some(budget)).await?;
    decode(&body)
}

/// Read one frame and decode it.
pub async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(
    io: &mut R,
    max: usize,
) -> io::Result<T> {
    decode(&read_raw_frame(io, max).await?)
}

/// libp2p request-response codec: one CBOR frame each way. Inbound requests of one protocol
/// share one [`Budget`].
pub struct CborCodec<Req, Resp> {
    budget: Budget,
    _types: PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> CborCodec<Req, Resp> {
    /// A codec whose inbound requests hold at most `budget` bytes at once, all streams together.
    pub fn new(budget: Budget) -> Self {
        CborCodec {
            budget,
            _types: PhantomData,
        }
    }
}

impl<Req, Resp> Clone for CborCodec<Req, Resp> {
    fn clone(&self) -> Self {
        Self::new(self.budget.clone())
    }
}

impl<Req, Resp> libp2p::request_response::Codec for CborCodec<Req, Resp>
where
    Req: Serialize + DeserializeOwned + Send + 'static,
    Resp: Serialize + DeserializeOwned + Send + 'static,
{
    type Protocol = libp2p::StreamProtocol;
    type Request = Req;
    type Response = Resp;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        protocol: &Self::Protocol,
        io: &mut T,
    ) -> io::Result<Req> {
        // libp2p's request-response drops a request that fails to decode without an event,
        // so this is the one place that can say so.
        read_frame_in(io, MAX_FRAME, &self.budget).await.inspect_err(|e| {
            tracing::warn!(protocol = protocol.as_ref(), error = %e, "bad inbound request; stream closed");
        })
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
    ) -> io::Result<Resp> {
        read_frame(io, MAX_FRAME).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
        req: Req,
    ) -> io::Result<()> {
        // Encoded before the first await, so `Req` need not be `Sync`.
        let body = encode(&req);
        write_raw_frame(io, &body).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
        res: Resp,
    ) -> io::Result<()> {
        let body = encode(&res);
        write_raw_frame(io, &body).await
    }
}
