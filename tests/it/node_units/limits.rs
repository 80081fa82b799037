//! The API's listener holds at most its bound of connections; a request body that stalls
//! ends in an error, one that trickles does not.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::serve::Listener;
use futures::SinkExt;
use shoal_node::http::limits::{idle_bounded, Capped, BODY_IDLE};
use tokio::time::Instant;

#[tokio::test]
async fn the_listener_accepts_no_connection_over_its_bound_until_one_ends() {
    let inner = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = inner.local_addr().unwrap();
    let mut capped = Capped::new(inner, 2);
    let _clients: Vec<_> =
        futures::future::join_all((0..3).map(|_| tokio::net::TcpStream::connect(addr))).await;
    let (first, _) = capped.accept().await;
    let (_second, _) = capped.accept().await;
    // The third connection waits in the backlog while two are held.
    let third = tokio::time::timeout(Duration::from_millis(300), capped.accept()).await;
    assert!(
        third.is_err(),
        "a third connection was accepted over the bound of 2"
    );
    drop(first);
    let third = tokio::time::timeout(Duration::from_secs(10), capped.accept()).await;
    assert!(
        third.is_ok(),
        "the third connection was not accepted once one ended"
    );
}

#[tokio::test(start_paused = true)]
async fn a_body_that_stalls_ends_in_an_error_and_one_that_trickles_is_read_whole() {
    // Stalls after its first bytes, its sender held open.
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tx.send(Ok(Bytes::from_static(b"first"))).await.unwrap();
    let started = Instant::now();
    let read = axum::body::to_bytes(idle_bounded(Body::from_stream(rx), BODY_IDLE), 1 << 20).await;
    let err = read.expect_err("a stalled body was read to its end");
    assert!(started.elapsed() >= BODY_IDLE);
    assert!(
        err.to_string()
            .contains("no byte of the request's body came"),
        "{err}"
    );
    drop(tx);

    // A byte each half of the idle time, for three times the idle time.
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        for _ in 0..6 {
            tx.send(Ok(Bytes::from_static(b"x"))).await.unwrap();
            tokio::time::sleep(BODY_IDLE / 2).await;
        }
    });
    let read = axum::body::to_bytes(idle_bounded(Body::from_stream(rx), BODY_IDLE), 1 << 20).await;
    assert_eq!(read.unwrap(), Bytes::from_static(b"xxxxxx"));
}
