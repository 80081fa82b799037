//! What a crowd of HTTP clients may hold: connections, and request bodies that stall. The
//! listener accepts a connection only while fewer than its bound are open (the next waits in
//! the kernel's backlog), and a body that sends no byte for [`BODY_IDLE`] ends in an error,
//! which frees the turn the request took in the API's guard.
//!
//! The invariant: open connections never exceed the bound, and no request holds a turn
//! while its client sends nothing.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Connections the API keeps open at once (well under the 1,024 files a process may have
/// open by default, beside the network's and the store's).
pub const MAX_CONNECTIONS: usize = 512;
/// The longest a request's body may send nothing before the request ends in an error.
pub const BODY_IDLE: Duration = Duration::from_secs(20);

/// A listener that holds at most a bound of connections open.
#[derive(Debug)]
pub struct Capped {
    inner: TcpListener,
    open: Arc<Semaphore>,
}

impl Capped {
    /// `inner`, holding at most `max` connections open.
    pub fn new(inner: TcpListener, max: usize) -> Self {
        Capped {
            inner,
            open: Arc::new(Semaphore::new(max)),
        }
    }
}

impl axum::serve::Listener for Capped {
    type Io = Held;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Held, SocketAddr) {
        // The semaphore is never closed: a permit always comes, when a connection ends.
        let permit = Arc::clone(&self.open).acquire_owned().await.ok();
        let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        (
            Held {
                io,
                _permit: permit,
            },
            addr,
        )
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// An accepted connection, holding its place under the bound until it is dropped.
#[derive(Debug)]
pub struct Held {
    io: TcpStream,
    _permit: Option<OwnedSemaphorePermit>,
}

impl AsyncRead for Held {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Held {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// `body`, ending in an error when no byte of it comes for `idle`.
pub fn idle_bounded(body: Body, idle: Duration) -> Body {
    let frames = futures::stream::unfold(Some(body.into_data_stream()), move |state| async move {
        let mut frames = state?;
        match tokio::time::timeout(idle, frames.next()).await {
            Ok(Some(Ok(bytes))) => Some((Ok(bytes), Some(frames))),
            Ok(Some(Err(e))) => Some((Err(io::Error::other(e)), None)),
            Ok(None) => None,
            Err(_) => Some((
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no byte of the request's body came for {} s",
                        idle.as_secs()
                    ),
                )),
                None,
            )),
        }
    });
    Body::from_stream(frames)
}
