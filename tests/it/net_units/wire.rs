//! Every wire type round-trips through CBOR unchanged.

use proptest::prelude::*;
use serde::Serialize;
use shoal_net::codec::{decode, encode};
use shoal_net::wire::*;

fn info() -> impl Strategy<Value = PeerInfo> {
    (
        ".{0,20}",
        proptest::collection::vec(".{0,30}", 0..3),
        ".{0,20}",
    )
        .prop_map(|(peer_id, addrs, http)| PeerInfo {
            peer_id,
            addrs,
            http,
            slots: 2,
            host: None,
        })
}

fn hello() -> impl Strategy<Value = Hello> {
    (
        any::<u64>(),
        info(),
        any::<Option<u64>>(),
        (".{0,12}", any::<u32>(), any::<u32>()),
    )
        .prop_map(
            |(node_id, info, cluster_id, (version, major, minor))| Hello {
                node_id,
                info,
                cluster_id,
                build: Build {
                    version,
                    protocol: Protocol { major, minor },
                },
            },
        )
}

fn ctl_request() -> impl Strategy<Value = CtlRequest> {
    prop_oneof![
        hello().prop_map(CtlRequest::Hello),
        (any::<u64>(), proptest::collection::vec(any::<u64>(), 0..5))
            .prop_map(|(cluster_id, voters)| CtlRequest::Adopt { cluster_id, voters }),
        any::<u64>().prop_map(|cluster_id| CtlRequest::Release { cluster_id }),
        (any::<u64>(), any::<u64>(), info()).prop_map(|(cluster_id, node_id, info)| {
            CtlRequest::Join {
                cluster_id,
                node_id,
                info,
            }
        }),
        (any::<u64>(), any::<Vec<u8>>()).prop_map(|(cluster_id, command)| {
            CtlRequest::Propose {
                cluster_id,
                command,
            }
        }),
    ]
}

fn ctl_response() -> impl Strategy<Value = CtlResponse> {
    prop_oneof![
        hello().prop_map(CtlResponse::Hello),
        Just(CtlResponse::Ok),
        any::<Vec<u8>>().prop_map(CtlResponse::Applied),
        ".*".prop_map(CtlResponse::Refused),
        ".*".prop_map(|why| CtlResponse::declined(Reason::OutOfStep, why)),
    ]
}

fn round_trips<T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(v: &T) {
    let back: T = decode(&encode(v)).expect("decodes");
    assert_eq!(&back, v);
}

proptest! {
    #[test]
    fn ctl_messages_round_trip(req in ctl_request(), resp in ctl_response()) {
        round_trips(&req);
        round_trips(&resp);
    }

    #[test]
    fn raft_messages_round_trip(cluster_id in any::<u64>(), payload in any::<Vec<u8>>(), reason in ".*") {
        round_trips(&RaftRequest { cluster_id, payload: payload.clone() });
        round_trips(&RaftResponse::Ok(payload));
        round_trips(&RaftResponse::Refused(reason));
    }

    #[test]
    fn data_messages_round_trip(cluster_id in any::<u64>(), key in ".*", bytes in any::<Vec<u8>>(), reason in ".*") {
        round_trips(&DataRequest::Fetch { cluster_id, key: key.clone() });
        round_trips(&DataRequest::Put { cluster_id, key: key.clone() });
        round_trips(&DataRequest::FetchMany { cluster_id, pieces: vec![Piece { key: key.clone(), offset: 3, len: u64::MAX }] });
        round_trips(&DataRequest::PutMany { cluster_id, keys: vec![key] });
        round_trips(&DataFrame::Chunk(bytes));
        round_trips(&DataFrame::End);
        round_trips(&DataFrame::Error(reason));
    }

    #[test]
    fn chunks_written_without_copying_are_the_codec_s_frames(
        len in prop_oneof![0usize..40, 200usize..300, 65_000usize..66_000],
        reason in ".{0,40}",
    ) {
        let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
        futures::executor::block_on(async {
            let mut fast = Vec::new();
            DataFrame::write_chunk(&mut fast, &bytes).await.unwrap();
            let mut slow = Vec::new();
            shoal_net::codec::write_frame(&mut slow, &DataFrame::Chunk(bytes.clone())).await.unwrap();
            prop_assert_eq!(&fast, &slow);
            let mut stream: Vec<u8> = fast;
            for f in [DataFrame::End, DataFrame::Error(reason.clone())] {
                shoal_net::codec::write_frame(&mut stream, &f).await.unwrap();
            }
            let mut r = &stream[..];
            prop_assert_eq!(DataFrame::read(&mut r, 1 << 20).await.unwrap(), DataFrame::Chunk(bytes.clone()));
            prop_assert_eq!(DataFrame::read(&mut r, 1 << 20).await.unwrap(), DataFrame::End);
            prop_assert_eq!(DataFrame::read(&mut r, 1 << 20).await.unwrap(), DataFrame::Error(reason.clone()));
            Ok(())
        })?;
    }

    #[test]
    fn data_frames_from_garbage_never_panic(bytes in any::<Vec<u8>>()) {
        let mut framed = (bytes.len() as u32).to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        let mut r = &framed[..];
        let _ = futures::executor::block_on(DataFrame::read(&mut r, 1 << 20));
    }

    #[test]
    fn garbage_never_panics(bytes in any::<Vec<u8>>()) {
        let _ = decode::<CtlRequest>(&bytes);
        let _ = decode::<RaftRequest>(&bytes);
        let _ = decode::<DataRequest>(&bytes);
    }
}

#[test]
fn payloads_are_cbor_byte_strings() {
    // Major type 2 (byte string) with a 1-byte length, not an array of integers.
    let bytes = encode(&RaftResponse::Ok(vec![1, 2, 3]));
    assert!(bytes.windows(4).any(|w| w == [0x43, 1, 2, 3]), "{bytes:x?}");
}

#[tokio::test]
async fn oversized_frames_are_refused_before_allocating() {
    let mut input: &[u8] = &[0xff, 0xff, 0xff, 0xff];
    let err = shoal_net::codec::read_raw_frame(&mut input, 1024)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("over the 1024-byte limit"),
        "{err}"
    );
}
