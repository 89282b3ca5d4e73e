//! `soc-collector`: receives agent batches, journals them durably, detects
//! incidents with `soc-rules`, stores alerts, and serves them to `socctl`.
//!
//! # Layout
//!
//! The modules follow the path of a line through the collector:
//!
//! * [`config`]: the TOML file, validated into [`config::Settings`].
//! * [`tls`]: the server's certificate, generated on first start when unset.
//! * [`server`]: the HTTPS and metrics listeners, connection limits, shutdown.
//! * [`ingest`]: agent endpoints (batches, heartbeats, enrolment).
//! * [`journal`]: durable, de-duplicated, gap-free journal of every line.
//! * [`pipeline`]: the detection worker (journal → decoders → rules → alerts),
//!   committing cursor, rule state and alerts together.
//! * [`alerts`]: the alert store.
//! * [`api`]: the responders' API used by `socctl`; [`model`] its JSON shapes.
//! * [`rules_api`]: reloading decoders, rules and lists (API and SIGHUP).
//! * [`auth`]: agent keys, enrolment secrets, API tokens and roles.
//! * [`http`]: what every handler shares (errors, credentials, request counting).
//! * [`metrics`]: every Prometheus metric, in one place; [`stats`] refreshes
//!   the gauges read from state (disk, database, open alerts).
//! * [`db`]: the sled database and the names of its trees.
//! * [`app`]: the shared state and the loaded detection content.
//! * [`client`]: the HTTPS client `socctl` uses.
//! * [`syslog`]: UDP, TCP and TLS syslog listeners for appliances, feeding the journal.
//! * [`alert_index`]: the alert store's secondary indexes and query planner.
//! * [`audit`]: the append-only audit log of API changes.
//! * [`backup`]: checksummed snapshots of rule state, cursor and alert store;
//!   [`backup_api`] their admin routes.
//! * [`ratelimit`]: failed authentications limited per peer address.
//! * [`retention`]: the periodic removal of old closed alerts, journal and audit records.
//! * [`forward`]: alerts pushed to a webhook and to syslog (CEF).

pub mod alert_index;
pub mod alerts;
pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod backup_api;
pub mod client;
pub mod config;
pub mod db;
pub mod forward;
pub mod http;
pub mod ingest;
pub mod journal;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod ratelimit;
pub mod retention;
pub mod rules_api;
pub mod server;
pub mod stats;
pub mod syslog;
pub mod tls;
