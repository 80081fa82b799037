use shoal_node::supervisor::*;
use std::time::Duration;

#[tokio::test]
async fn a_panicking_loop_is_named_with_its_message_and_a_finished_one_is_not() {
    let mut s = Supervisor::default();
    s.until_done("bootstrap", async {});
    s.forever("idle", std::future::pending());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    s.forever("worker", async move {
        let _ = rx.await;
        panic!("planted");
    });
    tx.send(()).unwrap();
    let stopped = s.stopped().await;
    assert_eq!(stopped.name, "worker");
    assert_eq!(stopped.how, "panicked: planted");
    assert!(stopped
        .to_string()
        .contains("the worker loop panicked: planted"));
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn stopping_waits_for_each_loop_to_finish_its_step_and_aborts_only_the_deaf() {
    let mut s = Supervisor::default();
    let finished = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (mut quick, mut slow) = (s.stop(), s.stop());
    s.forever("quick", async move { quick.requested().await });
    let done = std::sync::Arc::clone(&finished);
    s.forever("slow", async move {
        slow.requested().await;
        // The step it is in when asked takes a while; it is not cut short.
        tokio::time::sleep(Duration::from_millis(300)).await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    s.forever("deaf", std::future::pending());
    let (net_tx, net_rx) = tokio::sync::oneshot::channel::<()>();
    s.last("network", async move {
        let _keep = net_tx;
        std::future::pending::<()>().await
    });
    let order = s.shutdown(Duration::from_secs(1)).await;
    assert_eq!(order, vec!["quick", "slow"]);
    assert!(finished.load(std::sync::atomic::Ordering::SeqCst));
    // The last loop is gone too (its end of the channel dropped).
    assert!(net_rx.await.is_err());
}

#[tokio::test]
async fn a_network_loop_that_ends_stops_the_node_too() {
    let mut s = Supervisor::default();
    s.forever("idle", std::future::pending());
    s.last("network", async {});
    let stopped = s.stopped().await;
    assert_eq!(
        (stopped.name, stopped.how.as_str()),
        ("network", "returned")
    );
}

#[tokio::test]
async fn a_forever_loop_that_returns_stops_the_node() {
    let mut s = Supervisor::default();
    s.forever("manager", async {});
    let stopped = s.stopped().await;
    assert_eq!(
        (stopped.name, stopped.how.as_str()),
        ("manager", "returned")
    );
}
