//! The ingest endpoint's answers to good, repeated and hostile batches,
//! through the real router and a real sled database.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use soc_collector::app::{App, Content};
use soc_collector::config::CollectorConfig;
use soc_collector::db::Db;
use soc_protocol::{
    AGENT_HEADER, BATCH_CONTENT_ENCODING, BATCH_CONTENT_TYPE, BATCH_PATH, Batch, BatchAck,
    ErrorBody, ErrorCode, Limits, PROTOCOL_VERSION, Record,
};
use tower::ServiceExt as _;

struct Fixture {
    _dir: tempfile::TempDir,
    app: Arc<App>,
    key: String,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = std::path::Path::new("test.toml");
    let settings = CollectorConfig::default()
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
    Batch {
        version: PROTOCOL_VERSION,
        agent: "web-01".into(),
        batch_id: 1,
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
