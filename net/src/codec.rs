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

/// Read one frame's bytes, refusing lengths over `max` before allocating.
pub async fn read_raw_frame<R: AsyncRead + Unpin>(io: &mut R, max: usize) -> io::Result<Vec<u8>> {
    let len = read_frame_len(io, max).await?;
    let mut body = vec![0u8; len];
    io.read_exact(&mut body).await?;
    Ok(body)
}

/// Read one frame and decode it.
pub async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(
    io: &mut R,
    max: usize,
) -> io::Result<T> {
    decode(&read_raw_frame(io, max).await?)
}

/// libp2p request-response codec: one CBOR frame each way.
pub struct CborCodec<Req, Resp> {
    _types: PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> Default for CborCodec<Req, Resp> {
    fn default() -> Self {
        CborCodec {
            _types: PhantomData,
        }
    }
}

impl<Req, Resp> Clone for CborCodec<Req, Resp> {
    fn clone(&self) -> Self {
        Self::default()
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
        read_frame(io, MAX_FRAME).await.inspect_err(|e| {
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
