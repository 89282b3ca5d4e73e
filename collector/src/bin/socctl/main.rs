//! `socctl`: the incident responder's command line. It talks to the
//! collector's HTTPS API and never opens the database.

mod decode;
mod output;
mod rules;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use soc_collector::client::Client;
use soc_collector::model::{
    AckRequest, AgentView, Alert, AlertPage, AlertQuery, AlertStatus, EnrollAgentRequest,
    EnrollAgentResponse, JournalPage, JournalQuery, Severity, StatusView,
};

/// Query, inspect and acknowledge alerts; manage agents.
#[derive(Debug, Parser)]
#[command(name = "socctl", version)]
struct Cli {
    /// Collector API address.
    #[arg(
        long,
        global = true,
        env = "SOC_SERVER",
        default_value = "https://127.0.0.1:8443"
    )]
    server: String,
    /// API token (see `admin.token` in the collector's data_dir for the first one).
    #[arg(long, global = true, env = "SOC_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File holding the API token.
    #[arg(long, global = true, env = "SOC_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// CA certificate (PEM) to trust for the collector, e.g. `<data_dir>/tls/ca.pem`.
    #[arg(long, global = true, env = "SOC_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// Print JSON instead of tables (NDJSON for listings).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Alerts: list, show, acknowledge.
    #[command(subcommand)]
    Alerts(AlertsCmd),
    /// Agents: list, enrol.
    #[command(subcommand)]
    Agents(AgentsCmd),
    /// The collector's journal, detection and content status.
    Status,
    /// Decode lines offline (file or stdin) and show the fields and the rules
    /// that would match. Needs no server or token.
    Decode(decode::DecodeArgs),
    /// The journalled lines themselves (admin only).
    #[command(subcommand)]
    Journal(JournalCmd),
    /// Rules: lint and test offline, replay a log file, reload the collector's.
    #[command(subcommand)]
    Rules(rules::RulesCmd),
}

#[derive(Debug, Subcommand)]
enum JournalCmd {
    /// Print journalled lines in sequence order, one JSON object a line
    /// (seq, agent, stream, source, path, offset, line, truncated), always
    /// NDJSON: it is meant for scripts and audits.
    Dump {
        /// Start after this sequence number (0: from the first entry).
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Most entries to print (default: all).
        #[arg(long)]
        limit: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
enum AlertsCmd {
    /// List alerts, newest first.
    List(ListArgs),
    /// Show one alert with the raw lines and decoded fields behind it.
    Show { id: u64 },
    /// Acknowledge an alert.
    Ack {
        id: u64,
        /// A note kept in the alert's history.
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Debug, Args)]
struct ListArgs {
    /// At least this severity (info, low, medium, high, critical).
    #[arg(long)]
    severity: Option<Severity>,
    /// Only this rule id.
    #[arg(long)]
    rule: Option<String>,
    /// Only this host.
    #[arg(long)]
    host: Option<String>,
    /// Only this status (open, acknowledged, closed).
    #[arg(long)]
    status: Option<AlertStatus>,
    /// Only alerts raised within this long, e.g. 15m, 1h, 7d.
    #[arg(long)]
    since: Option<humantime::Duration>,
    /// Most alerts to print (at most 1000).
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Only alerts with an id below this one: the next page after a listing.
    #[arg(long)]
    before: Option<u64>,
}

#[derive(Debug, Subcommand)]
enum AgentsCmd {
    /// List agents with when they were last seen and what they sent.
    List,
    /// Register an agent and print its one-time enrolment secret.
    Enroll { name: String },
}

fn main() {
    let cli = Cli::parse();
    if let Cmd::Decode(args) = &cli.cmd {
        if let Err(e) = decode::run(args, cli.json) {
            eprintln!("socctl: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("socctl: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(cli)) {
        eprintln!("socctl: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let cli = match cli.cmd {
        Cmd::Rules(rules::RulesCmd::Reload) => Cli {
            cmd: Cmd::Rules(rules::RulesCmd::Reload),
            ..cli
        },
        // Offline: no collector, no token.
        Cmd::Rules(cmd) => {
            let code = rules::run_offline(cmd, cli.json)?;
            if code != 0 {
                std::process::exit(code);
            }
            return Ok(());
        }
        cmd => Cli { cmd, ..cli },
    };
    let token = match (&cli.token, &cli.token_file) {
        (Some(t), _) => Some(t.trim().to_owned()),
        (None, Some(f)) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("reading the token file {}", f.display()))?
                .trim()
                .to_owned(),
        ),
        (None, None) => None,
    };
    if token.is_none() {
        anyhow::bail!("no API token: pass --token, --token-file, or set SOC_TOKEN");
    }
    let client = Client::new(&cli.server, token, cli.ca_cert.as_deref())?;
    let out = output::Output::new(cli.json);
    match cli.cmd {
        Cmd::Alerts(AlertsCmd::List(a)) => {
            let since_ms = a
                .since
                .map(|d| soc_collector::app::now_ms() - d.as_millis() as i64);
            let q = AlertQuery {
                severity: a.severity,
                rule: a.rule,
                host: a.host,
                status: a.status,
                since_ms,
                before_id: a.before,
                limit: Some(a.limit.clamp(1, 1000)),
            };
            let page: AlertPage = client.get("/api/v1/alerts", &q).await?;
            out.alerts(&page.alerts)?;
        }
        Cmd::Alerts(AlertsCmd::Show { id }) => {
            let a: Alert = client.get(&format!("/api/v1/alerts/{id}"), &()).await?;
            out.alert(&a)?;
        }
        Cmd::Alerts(AlertsCmd::Ack { id, note }) => {
            let a: Alert = client
                .post(&format!("/api/v1/alerts/{id}/ack"), &AckRequest { note })
                .await?;
            out.acked(&a)?;
        }
        Cmd::Agents(AgentsCmd::List) => {
            let agents: Vec<AgentView> = client.get("/api/v1/agents", &()).await?;
            out.agents(&agents)?;
        }
        Cmd::Agents(AgentsCmd::Enroll { name }) => {
            let r: EnrollAgentResponse = client
                .post("/api/v1/agents", &EnrollAgentRequest { name })
                .await?;
            out.enrolled(&r)?;
        }
        Cmd::Journal(JournalCmd::Dump { after, limit }) => {
            use std::io::Write as _;
            let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
            let mut after = after;
            let mut left = limit.unwrap_or(u64::MAX);
            while left > 0 {
                let q = JournalQuery {
                    after: Some(after),
                    limit: Some(left.min(10_000) as usize),
                };
                let page: JournalPage = client.get("/api/v1/journal", &q).await?;
                for e in &page.entries {
                    serde_json::to_writer(&mut stdout, e)?;
                    stdout.write_all(b"\n")?;
                }
                left -= page.entries.len() as u64;
                match page.next_after {
                    Some(a) => after = a,
                    None => break,
                }
            }
            stdout.flush()?;
        }
        Cmd::Status => {
            let s: StatusView = client.get("/api/v1/status", &()).await?;
            out.status(&s)?;
        }
        Cmd::Decode(_) => unreachable!("handled before the runtime starts"),
        Cmd::Rules(_) => {
            let r: soc_collector::rules_api::ReloadView =
                client.post("/api/v1/rules/reload", &()).await?;
            if cli.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!("reloaded: {} decoders, {} rules", r.decoders, r.rules);
            }
        }
    }
    Ok(())
}
