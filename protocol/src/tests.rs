use super::*;

fn record(offset: u64, raw: &[u8]) -> Record {
    let mut r = Record {
        stream: "803-1a2b-9f".into(),
        source: "ufw".into(),
        source_type: "iptables".into(),
        path: "/var/log/ufw.log".into(),
        offset,
        read_time_ms: 1_700_000_000_000,
        line: None,
        line_b64: None,
        truncated: false,
    };
    r.set_raw(raw);
    r
}

fn batch(records: Vec<Record>) -> Batch {
    Batch {
        version: PROTOCOL_VERSION,
        agent: "host-1".into(),
        batch_id: 7,
        labels: [("agency".to_owned(), "dept-finance".to_owned())].into(),
        records,
    }
}

#[test]
fn round_trip_keeps_bytes_exact_including_invalid_utf8() {
    let raw_lines: Vec<&[u8]> = vec![
        b"plain ascii",
        b"caf\xc3\xa9 utf8",
        b"bad \xff\xfe bytes\x00",
        b"",
    ];
    let b = batch(
        raw_lines
            .iter()
            .enumerate()
            .map(|(i, l)| record(i as u64 * 100, l))
            .collect(),
    );
    let body = encode_batch(&b, &Limits::V1).expect("encode");
    let back = decode_batch(&body, &Limits::V1).expect("decode");
    assert_eq!(back, b);
    for (r, want) in back.records.iter().zip(raw_lines) {
        assert_eq!(r.raw().expect("raw"), want);
    }
    assert!(
        back.records[2].line.is_none(),
        "invalid UTF-8 must travel as base64"
    );
}

#[test]
fn refuses_a_decompression_bomb_without_inflating_it() {
    let limits = Limits {
        max_decompressed_bytes: 1024 * 1024,
        ..Limits::V1
    };
    let zeros = vec![b' '; 50 * 1024 * 1024];
    let bomb = zstd::bulk::compress(&zeros, 19).expect("compress");
    assert!(bomb.len() < 64 * 1024, "the bomb is small on the wire");
    let err = decode_batch(&bomb, &limits).expect_err("must refuse");
    assert_eq!(err.code(), ErrorCode::DecompressedTooLarge);
}

#[test]
fn refuses_oversized_bodies_lines_and_record_counts() {
    let limits = Limits {
        max_compressed_bytes: 100,
        ..Limits::V1
    };
    let err = decode_batch(&[0u8; 101], &limits).expect_err("too big");
    assert_eq!(err.code(), ErrorCode::PayloadTooLarge);

    let limits = Limits {
        max_line_bytes: 10,
        ..Limits::V1
    };
    let err =
        encode_batch(&batch(vec![record(0, b"0123456789A")]), &limits).expect_err("long line");
    assert_eq!(err.code(), ErrorCode::LineTooLong);
    assert!(err.to_string().contains("offset 0"), "{err}");

    let limits = Limits {
        max_records: 2,
        ..Limits::V1
    };
    let recs = (0..3).map(|i| record(i, b"x")).collect();
    let err = encode_batch(&batch(recs), &limits).expect_err("too many");
    assert_eq!(err.code(), ErrorCode::TooManyRecords);
}

#[test]
fn refuses_garbage_unknown_versions_and_unknown_fields() {
    let err = decode_batch(b"definitely not zstd", &Limits::V1).expect_err("garbage");
    assert_eq!(err.code(), ErrorCode::MalformedBatch);

    let mut b = batch(vec![record(0, b"x")]);
    b.version = 2;
    let json = serde_json::to_vec(&b).expect("json");
    let body = zstd::bulk::compress(&json, 1).expect("zstd");
    let err = decode_batch(&body, &Limits::V1).expect_err("v2");
    assert_eq!(err.code(), ErrorCode::UnsupportedVersion);

    let json = br#"{"version":1,"agent":"a","batch_id":1,"records":[],"surprise":1}"#;
    let body = zstd::bulk::compress(json, 1).expect("zstd");
    let err = decode_batch(&body, &Limits::V1).expect_err("unknown field");
    assert_eq!(err.code(), ErrorCode::MalformedBatch);
    assert!(err.to_string().contains("surprise"), "{err}");
}

#[test]
fn a_record_must_carry_exactly_one_form_of_the_line() {
    let mut r = record(5, b"x");
    r.line_b64 = Some("eA==".into());
    assert!(r.raw().is_err());
    r.line = None;
    r.line_b64 = None;
    let err = r.raw().expect_err("none");
    assert!(err.to_string().contains("offset 5"));
}

#[test]
fn only_overload_and_unavailable_are_retryable() {
    assert!(ErrorCode::Overloaded.is_retryable());
    assert!(ErrorCode::Unavailable.is_retryable());
    assert!(!ErrorCode::MalformedBatch.is_retryable());
    assert!(!ErrorCode::Unauthorized.is_retryable());
}

#[test]
fn a_binary_line_exactly_at_the_limit_is_accepted() {
    let limits = Limits {
        max_line_bytes: 10,
        ..Limits::V1
    };
    // 10 bytes that are not UTF-8: base64 with padding (16 chars, two `=`).
    let raw = [0xffu8; 10];
    let b = batch(vec![record(0, &raw)]);
    let body = encode_batch(&b, &limits).expect("exactly at the limit");
    assert_eq!(
        decode_batch(&body, &limits).expect("decode").records[0]
            .raw()
            .expect("raw"),
        raw
    );
    let b = batch(vec![record(0, &[0xffu8; 11])]);
    assert_eq!(
        encode_batch(&b, &limits).expect_err("over").code(),
        ErrorCode::LineTooLong
    );
}
