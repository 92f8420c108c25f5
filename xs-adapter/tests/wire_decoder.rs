//! The wire decoder never panics, whatever the bytes, and frames survive any split.
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use xs_adapter::wire::{self, Decoder, Frame, MsgType, Request, PAYLOAD_MAX};

fn cases() -> u32 {
    std::env::var("XLSYNC_PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(256)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../proptest-regressions/xs-adapter/wire_decoder.txt"
        )))),
        ..ProptestConfig::default()
    }
}

/// Bytes that often look like headers: small type numbers and lengths, so the decoder gets past
/// the header checks and into payload handling.
fn header_like() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            (0u32..30, any::<u32>(), any::<u32>(), 0u32..64).prop_map(|(t, r, x, l)| {
                let mut v = Vec::new();
                for w in [t, r, x, l] {
                    v.extend_from_slice(&w.to_ne_bytes());
                }
                v
            }),
            prop::collection::vec(any::<u8>(), 0..40),
        ],
        0..20,
    )
    .prop_map(|parts| parts.concat())
}

fn any_payload_parsers(payload: &[u8]) {
    let _ = wire::parse_directory(payload);
    let _ = wire::parse_directory_part(payload);
    let _ = wire::parse_perms(payload);
    let _ = wire::parse_watch_event(payload);
    let _ = wire::parse_transaction_id(payload);
    let _ = wire::Errno::from_payload(payload);
    let _ = wire::strings(payload).count();
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bytes_never_panic(bytes in prop_oneof![prop::collection::vec(any::<u8>(), 0..600), header_like()], split in 1usize..50) {
        let whole = wire::decode(&bytes);
        let mut d = Decoder::new();
        let mut pieces: Vec<Result<Frame, wire::WireError>> = Vec::new();
        for chunk in bytes.chunks(split) {
            pieces.extend(d.push(chunk));
        }
        // However the bytes arrive, the same frames come out, and the same error if any.
        match whole {
            Ok((frames, used)) => {
                let got: Vec<Frame> = pieces.into_iter().collect::<Result<_, _>>().unwrap();
                prop_assert_eq!(&got, &frames);
                prop_assert_eq!(used, bytes.len() - d.buffered());
                for f in &frames {
                    prop_assert!(f.payload.len() <= PAYLOAD_MAX);
                    any_payload_parsers(&f.payload);
                }
            }
            Err(e) => prop_assert_eq!(pieces.last().cloned(), Some(Err(e))),
        }
        any_payload_parsers(&bytes);
    }

    #[test]
    fn requests_round_trip(path in "/[a-z0-9_@-]{1,20}(/[a-z0-9_@-]{1,20}){0,5}", value in prop::collection::vec(any::<u8>(), 0..300), req_id in 1u32.., tx_id in any::<u32>(), split in 1usize..40) {
        let requests = [
            Request::Read(&path),
            Request::Directory(&path),
            Request::DirectoryPart { path: &path, offset: 1234 },
            Request::GetPerms(&path),
            Request::Write { path: &path, value: &value },
            Request::Watch { path: &path, token: "tok" },
            Request::Rm(&path),
            Request::TransactionEnd { commit: true },
        ];
        let mut bytes = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            wire::encode(r, req_id.wrapping_add(i as u32), tx_id, &mut bytes).unwrap();
        }
        let mut d = Decoder::new();
        let mut frames = Vec::new();
        for chunk in bytes.chunks(split) {
            frames.extend(d.push(chunk).map(Result::unwrap));
        }
        prop_assert_eq!(frames.len(), requests.len());
        for (f, r) in frames.iter().zip(&requests) {
            prop_assert_eq!(f.msg_type, r.msg_type());
            prop_assert_eq!(f.tx_id, tx_id);
        }
        prop_assert_eq!(&frames[4].payload[path.len() + 1..], &value[..]);
        prop_assert_eq!(frames[0].msg_type, MsgType::Read);
    }
}
