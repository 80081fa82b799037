//! openraft's storage conformance suite against Shoal's redb log store and state machine,
//! on a real file (and durability across reopening the file).

use crate::common::Counter;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::StorageError;
use shoal_raft::{LogStore, StateMachine, Store, TypeConfig};

struct OnDisk;

impl StoreBuilder<TypeConfig, LogStore, StateMachine<Counter>, tempfile::TempDir> for OnDisk {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine<Counter>), StorageError<TypeConfig>>
    {
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = Store::open(&dir.path().join("node.redb")).expect("the store opens");
        let sm = StateMachine::open(store.clone()).expect("the state machine opens");
        Ok((dir, store.log_store(), sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_store_passes_openraft_conformance_suite() {
    Suite::test_all(OnDisk)
        .await
        .expect("the conformance suite passes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_survives_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    {
        let store = Store::open(&path).unwrap();
        assert!(!store.has_raft_state().unwrap());
        store.put_meta("cluster_id", Some(b"42")).unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.get_meta("cluster_id").unwrap().as_deref(),
        Some(&b"42"[..])
    );
}

#[test]
fn a_corrupt_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    std::fs::write(&path, b"this is not a redb file, just garbage bytes").unwrap();
    let err = Store::open(&path)
        .err()
        .expect("garbage does not open")
        .to_string();
    assert!(err.contains("node.redb"), "{err}");
}
