//! `soc-collector`: the province-side service. See the crate docs for the layout.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use soc_collector::app::{App, Content, now_ms};
use soc_collector::config::{CollectorConfig, CommandLine, ConfigError, Settings};
use soc_collector::db::Db;
use soc_collector::{pipeline, server, stats, tls};
use tokio::net::TcpListener;

/// mimalloc instead of the system allocator: ingest and detection allocate
/// many small, short-lived strings, which glibc malloc served at a third
/// of the ingest threads' time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Receives agent batches and appliance logs, detects incidents, stores alerts.
#[derive(Debug, Parser)]
#[command(name = "soc-collector", version)]
struct Cli {
    /// Configuration file (TOML). Without it the collector runs on embedded
    /// defaults: data in ./soc-data, HTTPS on 127.0.0.1:8443, metrics on
    /// 127.0.0.1:9464, the shipped rules.
    #[arg(long, short = 'c', env = "SOC_COLLECTOR_CONFIG")]
    config: Option<PathBuf>,
    /// Validate the configuration and the rule and decoder files, then exit.
    #[arg(long)]
    check_config: bool,
    /// Override `data_dir`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Override `server.listen` (use port 0 to let the system choose).
    #[arg(long)]
    listen: Option<String>,
    /// Override `metrics.listen` (`""` disables it).
    #[arg(long)]
    metrics_listen: Option<String>,
    /// Write the bound addresses as JSON to this file once listening (for
    /// scripts and tests that start the collector on port 0).
    #[arg(long)]
    ready_file: Option<PathBuf>,
}

fn load_settings(cli: &Cli) -> anyhow::Result<Settings> {
    let cwd = std::env::current_dir().context("reading the working folder")?;
    let (text, path, base) = match &cli.config {
        Some(p) => {
            let base = p
                .parent()
                .filter(|b| !b.as_os_str().is_empty())
                .map_or(cwd.clone(), Path::to_owned);
            let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.clone(),
                source,
            })?;
            (text, p.clone(), base)
        }
        None => (String::new(), PathBuf::from("<embedded defaults>"), cwd),
    };
    let command_line = CommandLine {
        data_dir: cli.data_dir.clone(),
        listen: cli.listen.clone(),
        metrics_listen: cli.metrics_listen.clone(),
    };
    Ok(CollectorConfig::settings(
        &text,
        &path,
        &base,
        &command_line,
    )?)
}

fn init_logging(s: &Settings) {
    let (filter, set_aside) = soc_config::log_filter_from_env(&s.log_level);
    // Colour only on a terminal: a log file or the journal gets plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    if s.log_json {
        b.json().init();
    } else {
        b.init();
    }
    if let Some(why) = set_aside {
        tracing::warn!("{why}");
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = load_settings(&cli)?;
    if cli.check_config {
        let content = Content::load(&settings)?;
        if let (Some(c), Some(k)) = (&settings.tls_cert_file, &settings.tls_key_file) {
            tls::server_config(&settings.data_dir, Some(c), Some(k), &[])?;
        }
        let warnings = content.warnings();
        for w in &warnings {
            println!("warning: {w}");
        }
        println!(
            "configuration is valid: {} decoders, {} rules{}",
            content.decoders.names().len(),
            content.rules.rules().len(),
            match warnings.len() {
                0 => String::new(),
                n => format!(" ({n} warning(s))"),
            }
        );
        return Ok(());
    }
    init_logging(&settings);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(settings, cli.ready_file))
}

async fn run(settings: Settings, ready_file: Option<PathBuf>) -> anyhow::Result<()> {
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating data_dir {}", settings.data_dir.display()))?;
    let content = Content::load(&settings)?;
    content.log_warnings();
    let db = Db::open(&settings.data_dir.join("db"))?;
    let tls_cfg = tls::server_config(
        &settings.data_dir,
        settings.tls_cert_file.as_deref(),
        settings.tls_key_file.as_deref(),
        &settings.tls_subject_alt_names,
    )?;
    let app = Arc::new(App::new(settings.clone(), db, content)?);
    // Agents' last contact survives a restart, so silent agents stay visible.
    for a in app.auth.agents()? {
        if let Some(ms) = a
            .last_seen_ms
            .filter(|_| a.key_hash.is_some() && !a.revoked)
        {
            app.metrics
                .agent_last_seen
                .with_label_values(&[&a.name])
                .set(ms / 1000);
        }
    }
    let token_path = settings.data_dir.join("admin.token");
    if app.auth.ensure_first_admin(&token_path, now_ms())? {
        tracing::info!(path = %token_path.display(), "created the first admin token");
    }

    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding server.listen {}", settings.listen))?;
    let https_addr = listener.local_addr()?;
    let metrics_listener = match settings.metrics_listen {
        Some(a) => Some(
            TcpListener::bind(a)
                .await
                .with_context(|| format!("binding metrics.listen {a}"))?,
        ),
        None => None,
    };
    let metrics_addr = metrics_listener
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()?;
    let syslog_listeners =
        soc_collector::syslog::Listeners::bind(&settings.syslog, &tls_cfg).await?;
    let syslog_addrs = syslog_listeners.addrs();

    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(server::serve_tls(
        app.clone(),
        listener,
        tls_cfg,
        rx.clone(),
    ));
    if let Some(l) = metrics_listener {
        tasks.spawn(server::serve_metrics(app.clone(), l, rx.clone()));
    }
    tasks.spawn(stats::run(app.clone(), rx.clone()));
    let detector = tokio::spawn(pipeline::run(app.clone(), rx.clone()));
    syslog_listeners.spawn(app.clone(), rx.clone(), &mut tasks);
    tasks.spawn(soc_collector::retention::run(app.clone(), rx.clone()));
    tasks.spawn(soc_collector::forward::run(app.clone(), rx.clone()));
    tasks.spawn(soc_collector::backup::run(app.clone(), rx.clone()));

    let ca = if settings.tls_cert_file.is_some() {
        None
    } else {
        Some(tls::generated_ca(&settings.data_dir))
    };
    tracing::info!(
        https = %https_addr,
        metrics = ?metrics_addr,
        data_dir = %settings.data_dir.display(),
        ca = ?ca,
        rules = app.content().rules.rules().len(),
        "collector started"
    );
    if let Some(p) = ready_file {
        let ready = serde_json::json!({
            "https": https_addr.to_string(),
            "metrics": metrics_addr.map(|a| a.to_string()),
            "ca_file": ca,
            "admin_token_file": token_path,
            "syslog": syslog_addrs,
        });
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&ready)?)?;
        std::fs::rename(&tmp, &p)?;
    }

    #[cfg(unix)]
    tasks.spawn(reload_on_sighup(app.clone(), rx.clone()));
    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = tx.send(true);
    while tasks.join_next().await.is_some() {}
    match detector.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "detection worker failed"),
        Err(e) => tracing::error!(error = %e, "detection worker panicked"),
    }
    if settings.backup.interval.is_some() {
        // The worker has stopped: the backup holds its last committed step.
        let worker = app.clone();
        let _ = tokio::task::spawn_blocking(move || {
            soc_collector::backup::create(&worker, soc_collector::backup::Reason::Shutdown)
        })
        .await;
    }
    app.db.flush().await?;
    tracing::info!("collector stopped");
    Ok(())
}

/// SIGHUP reloads the decoder, rule and list files (a broken file keeps the
/// running set; the errors are logged).
#[cfg(unix)]
async fn reload_on_sighup(app: Arc<App>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload with `socctl rules reload`");
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                let app = app.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    soc_collector::rules_api::reload(&app, "SIGHUP")
                })
                .await;
            }
            _ = shutdown.changed() => return,
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
