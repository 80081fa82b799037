//! Frames as a peer may send them: a length that promises much and bytes that never come.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use shoal_net::codec::{
    encode, read_frame_in, read_raw_frame, Budget, MAX_FRAME, PRESSED_IDLE, READ_IDLE, SMALL_FRAME,
};

/// A peer's stream: `bytes`, then silence (never an end).
struct Stalls {
    bytes: Vec<u8>,
    at: usize,
}

impl Stalls {
    /// A frame announcing `announced` bytes, of which `sent` arrive.
    fn frame(announced: usize, sent: usize) -> Stalls {
        let mut bytes = (announced as u32).to_be_bytes().to_vec();
        bytes.resize(4 + sent, 0);
        Stalls { bytes, at: 0 }
    }
}

impl futures::AsyncRead for Stalls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let at = self.at;
        let n = buf.len().min(self.bytes.len() - at);
        if n == 0 {
            return Poll::Pending;
        }
        buf[..n].copy_from_slice(&self.bytes[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(n))
    }
}

/// A whole frame holding `value`, as a stream.
fn whole<T: serde::Serialize>(value: &T) -> Stalls {
    let body = encode(value);
    let mut bytes = (body.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&body);
    Stalls { bytes, at: 0 }
}

/// A value whose frame is over [`SMALL_FRAME`]: it is held in the pool for large frames.
fn large() -> Vec<u8> {
    vec![7; SMALL_FRAME + 1]
}

/// Poll `read` until it waits on its peer, not on its turn (tokio ends a poll after so many
/// operations): until a poll holds no more of `budget`.
async fn until_stalled<F: std::future::Future + Unpin>(read: &mut F, budget: &Budget) {
    let mut last = usize::MAX;
    for _ in 0..100_000 {
        assert!(futures::poll!(&mut *read).is_pending(), "the read ended");
        let now = budget.available();
        if now == last {
            return;
        }
        last = now;
        // A new turn of this task: tokio's budget of operations starts again.
        tokio::task::yield_now().await;
    }
    panic!("the read never waited for its peer");
}

#[tokio::test]
async fn a_frame_s_bytes_are_held_as_they_arrive_and_handed_back_when_it_ends() {
    let budget = Budget::new(3 * MAX_FRAME);
    let whole = budget.available();
    // The largest frame announced, nothing sent: nothing held.
    let mut silent = Stalls::frame(MAX_FRAME, 0);
    let mut read = Box::pin(read_frame_in::<_, u8>(&mut silent, MAX_FRAME, &budget));
    until_stalled(&mut read, &budget).await;
    assert_eq!(
        budget.available(),
        whole,
        "a bare length prefix holds nothing"
    );
    drop(read);
    // 10 MiB of it sent: those bytes held, while the rest is awaited.
    let mut partial = Stalls::frame(MAX_FRAME, 10 << 20);
    let mut read = Box::pin(read_frame_in::<_, u8>(&mut partial, MAX_FRAME, &budget));
    until_stalled(&mut read, &budget).await;
    assert_eq!(whole - budget.available(), 10 << 20);
    drop(read);
    assert_eq!(
        budget.available(),
        whole,
        "a read that ends hands its bytes back"
    );
}

#[tokio::test]
async fn a_spent_budget_makes_the_next_large_frame_wait_not_a_small_one() {
    let budget = Budget::new(1 << 20);
    // One sender has sent 1 MiB of 2: the whole budget for large frames.
    let mut hog = Stalls::frame(2 << 20, 1 << 20);
    let mut hogging = Box::pin(read_frame_in::<_, u8>(&mut hog, MAX_FRAME, &budget));
    until_stalled(&mut hogging, &budget).await;
    assert_eq!(budget.available(), 0);
    // A small frame from another is read at once, from the pool of its own...
    let mut small = whole(&7u8);
    assert_eq!(
        read_frame_in::<_, u8>(&mut small, MAX_FRAME, &budget)
            .await
            .unwrap(),
        7
    );
    // ...a large one waits for the budget...
    let mut honest = whole(&large());
    let mut waiting = Box::pin(read_frame_in::<_, Vec<u8>>(&mut honest, MAX_FRAME, &budget));
    assert!(futures::poll!(&mut waiting).is_pending());
    // ...and is read once the first one's read ends (its request timed out).
    drop(hogging);
    assert_eq!(waiting.await.unwrap(), large());
    assert_eq!(budget.available(), 1 << 20);
}

#[tokio::test(start_paused = true)]
async fn a_stalled_sender_gives_way_to_a_waiting_read_and_holds_alone_until_idle() {
    let budget = Budget::new(1 << 20);
    let mut honest = whole(&large());
    // The whole budget held by a sender that stalls, and a whole frame waiting for it: the
    // stalled one is shed once it has sent nothing for PRESSED_IDLE, and the other is read.
    let mut hog = Stalls::frame(2 << 20, 1 << 20);
    let started = tokio::time::Instant::now();
    let (hogged, read) = tokio::join!(
        read_frame_in::<_, u8>(&mut hog, MAX_FRAME, &budget),
        async {
            tokio::task::yield_now().await;
            read_frame_in::<_, Vec<u8>>(&mut honest, MAX_FRAME, &budget).await
        }
    );
    let err = hogged.unwrap_err();
    assert!(
        err.to_string().contains("while other requests waited"),
        "{err}"
    );
    assert_eq!(read.unwrap(), large());
    assert!(started.elapsed() < READ_IDLE, "{:?}", started.elapsed());
    assert!(started.elapsed() >= PRESSED_IDLE);
    // Alone, a stalled sender keeps its bytes until READ_IDLE.
    let mut hog = Stalls::frame(2 << 20, 1 << 20);
    let started = tokio::time::Instant::now();
    let err = read_frame_in::<_, u8>(&mut hog, MAX_FRAME, &budget)
        .await
        .unwrap_err();
    assert!(started.elapsed() >= READ_IDLE, "{err}");
    assert_eq!(budget.available(), 1 << 20);
}

#[tokio::test]
async fn a_frame_over_the_limit_is_refused_before_its_bytes_are_read() {
    let mut over = Stalls::frame(MAX_FRAME + 1, 0);
    let e = read_raw_frame(&mut over, MAX_FRAME).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    assert!(e.to_string().contains("over the"), "{e}");
}
