//! The ingest endpoint's answers to good, repeated and hostile batches,
//! through the real router and a real sled database.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use soc_collector::app::{App, Content};
use soc_collector::config::CollectorConfig;
use soc_collector::db::Db;
use soc_protocol::{
    AFTER_HEADER, AGENT_HEADER, BATCH_CONTENT_ENCODING, BATCH_CONTENT_TYPE, BATCH_PATH, Batch,
    BatchAck, ErrorBody, ErrorCode, Limits, PROTOCOL_VERSION, Record,
};
use tower::ServiceExt as _;

struct Fixture {
    _dir: tempfile::TempDir,
    app: Arc<App>,
    key: String,
}

fn fixture() -> Fixture {
    fixture_with("")
}

fn fixture_with(config: &str) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = std::path::Path::new("test.toml");
    let settings = CollectorConfig::parse(p, config)
        .expect("parse")
        .build(p, dir.path())
        .expect("settings");
    let content = Content::load(&settings).expect("builtin content");
    let db = Db::open(&dir.path().join("db")).expect("db");
    let app = Arc::new(App::new(settings, db, content).expect("app"));
    let secret = app.auth.enroll_agent("web-01", 60_000, 0).expect("enroll");
    let key = app
        .auth
        .exchange_enrollment("web-01", &secret, None, 1)
        .expect("exchange");
    Fixture {
        _dir: dir,
        app,
        key,
    }
}

fn record(offset: u64, line: &str) -> Record {
    let mut r = Record {
        stream: "fd01-42-abc".into(),
        source: "ufw".into(),
        source_type: "iptables".into(),
        path: "/var/log/ufw.log".into(),
        offset,
        read_time_ms: 0,
        line: None,
        line_b64: None,
        truncated: false,
    };
    r.set_raw(line.as_bytes());
    r
}

fn batch(records: Vec<Record>) -> Batch {
    batch_numbered(1, records)
}

fn batch_numbered(batch_id: u64, records: Vec<Record>) -> Batch {
    Batch {
        version: PROTOCOL_VERSION,
        agent: "web-01".into(),
        batch_id,
        labels: Default::default(),
        records,
    }
}

fn request(body: Vec<u8>, agent: &str, key: &str) -> Request<Body> {
    Request::post(BATCH_PATH)
        .header("content-type", BATCH_CONTENT_TYPE)
        .header("content-encoding", BATCH_CONTENT_ENCODING)
        .header(AGENT_HEADER, agent)
        .header("authorization", format!("Bearer {key}"))
        .body(Body::from(body))
        .expect("request")
}

async fn send(f: &Fixture, req: Request<Body>) -> (StatusCode, Vec<u8>, Option<String>) {
    let resp = soc_collector::server::router(f.app.clone())
        .oneshot(req)
        .await
        .expect("router answers");
    let status = resp.status();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    (status, body.to_vec(), retry)
}

fn error_code(body: &[u8]) -> ErrorCode {
    serde_json::from_slice::<ErrorBody>(body)
        .expect("a JSON error body")
        .code
}

#[tokio::test]
async fn a_batch_is_acknowledged_once_and_a_resend_is_deduplicated() {
    let f = fixture();
    let b = batch(vec![record(0, "a"), record(2, "b"), record(4, "c")]);
    let body = soc_protocol::encode_batch(&b, &Limits::V1).expect("encode");
    let (status, resp, _) = send(&f, request(body.clone(), "web-01", &f.key)).await;
    assert_eq!(status, StatusCode::OK);
    let ack: BatchAck = serde_json::from_slice(&resp).expect("ack");
    assert_eq!((ack.accepted, ack.duplicates), (3, 0));

    let (status, resp, _) = send(&f, request(body, "web-01", &f.key)).await;
    assert_eq!(status, StatusCode::OK);
    let ack: BatchAck = serde_json::from_slice(&resp).expect("ack");
    assert_eq!((ack.accepted, ack.duplicates), (0, 3));
    assert_eq!(f.app.journal.last_seq().await, 3);
    let agents = f.app.auth.agents().expect("agents");
    assert_eq!(agents[0].events_received, 3);
}

#[tokio::test]
async fn wrong_credentials_are_refused_and_counted() {
    let f = fixture();
    let body =
        soc_protocol::encode_batch(&batch(vec![record(0, "a")]), &Limits::V1).expect("encode");
    let (status, resp, _) = send(&f, request(body.clone(), "web-01", "soc_ak_wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&resp), ErrorCode::Unauthorized);
    let (status, _, _) = send(&f, request(body, "web-02", &f.key)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(f.app.journal.last_seq().await, 0);
    assert_eq!(
        f.app
            .metrics
            .auth_failures
            .with_label_values(&["agent"])
            .get(),
        2
    );
}

#[tokio::test]
async fn hostile_bodies_get_a_clear_4xx_and_nothing_is_journalled() {
    let f = fixture();
    // Garbage.
    let (status, resp, _) = send(&f, request(b"not zstd at all".to_vec(), "web-01", &f.key)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&resp), ErrorCode::MalformedBatch);
    // A zstd bomb: 100 MiB of spaces in a few KiB.
    let bomb = zstd::bulk::compress(&vec![b' '; 100 * 1024 * 1024], 19).expect("compress");
    let (status, resp, _) = send(&f, request(bomb, "web-01", &f.key)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(&resp), ErrorCode::DecompressedTooLarge);
    // Over the compressed size limit.
    let big = vec![0u8; Limits::V1.max_compressed_bytes + 1];
    let (status, _, _) = send(&f, request(big, "web-01", &f.key)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // A batch that names another agent than its key.
    let mut b = batch(vec![record(0, "a")]);
    b.agent = "someone-else".into();
    let body = soc_protocol::encode_batch(&b, &Limits::V1).expect("encode");
    let (status, resp, _) = send(&f, request(body, "web-01", &f.key)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let msg = serde_json::from_slice::<ErrorBody>(&resp)
        .expect("json")
        .message;
    assert!(msg.contains("someone-else"), "{msg}");
    // Wrong content type.
    let req = Request::post(BATCH_PATH)
        .header("content-type", "application/json")
        .header(AGENT_HEADER, "web-01")
        .header("authorization", format!("Bearer {}", f.key))
        .body(Body::from("{}"))
        .expect("request");
    let (status, _, _) = send(&f, req).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    assert_eq!(f.app.journal.last_seq().await, 0);
    let rejected = &f.app.metrics.batches_rejected;
    assert_eq!(rejected.with_label_values(&["malformed_batch"]).get(), 1);
    assert_eq!(
        rejected
            .with_label_values(&["decompressed_too_large"])
            .get(),
        1
    );
    assert_eq!(rejected.with_label_values(&["payload_too_large"]).get(), 1);
    assert_eq!(rejected.with_label_values(&["forbidden"]).get(), 1);
    assert_eq!(
        rejected.with_label_values(&["unsupported_version"]).get(),
        1
    );
}

#[tokio::test]
async fn detection_far_behind_makes_agents_back_off_with_retry_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = std::path::Path::new("test.toml");
    let cfg = CollectorConfig::parse(p, "[ingest]\nmax_detection_lag = 2\nretry_after_secs = 7\n")
        .expect("parse");
    let settings = cfg.build(p, dir.path()).expect("settings");
    let content = Content::load(&settings).expect("content");
    let db = Db::open(&dir.path().join("db")).expect("db");
    let app = Arc::new(App::new(settings, db, content).expect("app"));
    let secret = app.auth.enroll_agent("web-01", 60_000, 0).expect("enroll");
    let key = app
        .auth
        .exchange_enrollment("web-01", &secret, None, 1)
        .expect("exchange");
    let f = Fixture {
        _dir: dir,
        app,
        key,
    };

    let body =
        soc_protocol::encode_batch(&batch(vec![record(0, "a"), record(2, "b")]), &Limits::V1)
            .expect("encode");
    let (status, _, _) = send(&f, request(body, "web-01", &f.key)).await;
    assert_eq!(status, StatusCode::OK);
    // No detection worker runs here, so the journal is now 2 ahead.
    let body =
        soc_protocol::encode_batch(&batch(vec![record(4, "c")]), &Limits::V1).expect("encode");
    let (status, resp, retry) = send(&f, request(body, "web-01", &f.key)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(&resp), ErrorCode::Unavailable);
    assert_eq!(retry.as_deref(), Some("7"));
}

/// The encoded batch `batch_id` of the given lines of one file, with
/// `after` in [`AFTER_HEADER`].
fn ordered_request(
    f: &Fixture,
    batch_id: u64,
    after: Option<u64>,
    lines: &[(u64, &str)],
) -> Request<Body> {
    let records = lines.iter().map(|(o, l)| record(*o, l)).collect();
    let body = soc_protocol::encode_batch(&batch_numbered(batch_id, records), &Limits::V1)
        .expect("encode");
    let mut req = request(body, "web-01", &f.key);
    if let Some(after) = after {
        req.headers_mut().insert(
            AFTER_HEADER,
            after.to_string().parse().expect("header value"),
        );
    }
    req
}

fn ack(status: StatusCode, body: &[u8]) -> BatchAck {
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(body));
    serde_json::from_slice(body).expect("ack")
}

#[tokio::test]
async fn a_batch_that_overtakes_the_one_it_follows_waits_for_it() {
    let f = fixture();
    // Batch 8 (lines 20 and 30 of the file) arrives first; it names batch 7
    // (lines 0 and 10), which arrives later. Stored first, it would make
    // batch 7 look like a resend and its lines would be dropped.
    let second = send(&f, ordered_request(&f, 8, Some(7), &[(20, "c"), (30, "d")]));
    let first = async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        send(&f, ordered_request(&f, 7, None, &[(0, "a"), (10, "b")])).await
    };
    let ((s2, b2, _), (s1, b1, _)) = tokio::join!(second, first);
    assert_eq!(ack(s1, &b1).accepted, 2);
    assert_eq!(ack(s2, &b2).accepted, 2);
    let offsets: Vec<u64> = f
        .app
        .journal
        .read_after(0, 10)
        .expect("read")
        .into_iter()
        .map(|(_, e)| e.expect("decodes").offset)
        .collect();
    assert_eq!(offsets, vec![0, 10, 20, 30]);

    // A resend of batch 8 (its acknowledgement lost) still names batch 7,
    // which is journalled: it goes through at once, as duplicates.
    let (s, b, _) = send(&f, ordered_request(&f, 8, Some(7), &[(20, "c"), (30, "d")])).await;
    assert_eq!(ack(s, &b).duplicates, 2);
}

#[tokio::test]
async fn a_batch_whose_predecessor_never_comes_is_refused_and_not_journalled() {
    let f = fixture_with("[ingest]\nqueue_timeout = \"300ms\"\nretry_after_secs = 3\n");
    let (status, resp, retry) = send(&f, ordered_request(&f, 9, Some(8), &[(40, "e")])).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(&resp), ErrorCode::Unavailable);
    assert_eq!(retry.as_deref(), Some("3"));
    let msg = String::from_utf8_lossy(&resp).into_owned();
    assert!(msg.contains("batch 9 follows batch 8"), "{msg}");
    assert_eq!(f.app.journal.last_seq().await, 0);

    // Once the agent has batch 8's acknowledgement it sends 9 without the
    // header; an unreadable header is a 400.
    let mut req = ordered_request(&f, 9, None, &[(40, "e")]);
    req.headers_mut()
        .insert(AFTER_HEADER, "eight".parse().expect("header value"));
    let (status, resp, _) = send(&f, req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&resp), ErrorCode::BadRequest);
    let (s, b, _) = send(&f, ordered_request(&f, 9, None, &[(40, "e")])).await;
    assert_eq!(ack(s, &b).accepted, 1);
}
