//! `socctl`: the incident responder's command line. It talks to the
//! collector's HTTPS API and never opens the database.

mod alerts;
mod backup;
mod decode;
mod output;
mod replay;
mod rules;

use alerts::{AlertsCmd, bulk, follow, parse_time};

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use soc_collector::auth::Role;
use soc_collector::client::{Client, ClientError};
use soc_collector::model::{
    AckRequest, AgentView, Alert, AlertPage, AlertQuery, AlertStatus, AssignRequest, AuditEntry,
    AuditQuery, BulkAction, BulkRequest, BulkResponse, CloseReason, CloseRequest,
    CreateTokenRequest, CreateTokenResponse, EnrollAgentRequest, EnrollAgentResponse, JournalPage,
    JournalQuery, NoteRequest, Severity, SortOrder, StatusView, TokenView,
};

/// The collector's allocator: `socctl decode` and `socctl rules test
/// --replay` run the same decoders and engine, and should cost the same.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Query, inspect and handle alerts; manage agents, tokens; read the audit log.
#[derive(Debug, Parser)]
#[command(name = "socctl", version)]
struct Cli {
    /// Collector API address.
    // The options every command takes are listed under their own headings,
    // after the command's own, instead of among them.
    #[arg(
        long,
        global = true,
        env = "SOC_SERVER",
        default_value = "https://127.0.0.1:8443",
        help_heading = "Collector"
    )]
    server: String,
    /// API token (see `admin.token` in the collector's data_dir for the first one).
    #[arg(
        long,
        global = true,
        env = "SOC_TOKEN",
        hide_env_values = true,
        help_heading = "Collector"
    )]
    token: Option<String>,
    /// File holding the API token.
    #[arg(
        long,
        global = true,
        env = "SOC_TOKEN_FILE",
        help_heading = "Collector"
    )]
    token_file: Option<PathBuf>,
    /// CA certificate (PEM) to trust for the collector, e.g. `<data_dir>/tls/ca.pem`.
    #[arg(long, global = true, env = "SOC_CA_CERT", help_heading = "Collector")]
    ca_cert: Option<PathBuf>,
    /// Print JSON instead of tables (NDJSON for listings).
    #[arg(long, global = true, help_heading = "Output")]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per run
enum Cmd {
    /// Alerts: list, show, follow, acknowledge, close, assign, note, reopen.
    #[command(subcommand)]
    Alerts(AlertsCmd),
    /// Agents: list, enrol, revoke.
    #[command(subcommand)]
    Agents(AgentsCmd),
    /// API tokens: create, list, revoke (admin).
    #[command(subcommand)]
    Tokens(TokensCmd),
    /// Read the audit log of changes made through the API (admin).
    Audit(AuditArgs),
    /// The collector's journal, detection and content status.
    Status,
    /// Decode lines offline (file or stdin) and show the fields and the rules
    /// that would match. Needs no server or token.
    Decode(decode::DecodeArgs),
    /// The journalled lines themselves (admin only).
    #[command(subcommand)]
    Journal(JournalCmd),
    /// Rules: lint, test and replay offline; list and reload the collector's
    /// rules; the fields rules can read.
    #[command(subcommand)]
    Rules(rules::RulesCmd),
    /// Backups of rule state, detection cursor and alerts: create, list,
    /// verify (offline), restore (admin).
    #[command(subcommand)]
    Backup(backup::BackupCmd),
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
enum AgentsCmd {
    /// List agents with when they were last seen and what they sent.
    List,
    /// Register an agent and print its one-time enrolment secret.
    Enroll { name: String },
    /// Cut an agent off at once: its next batch is refused (401).
    Revoke { name: String },
}

#[derive(Debug, Subcommand)]
enum TokensCmd {
    /// Create a token and print it (the only time it is shown).
    Create {
        name: String,
        /// viewer (read), responder (read, ack, close, assign) or admin.
        #[arg(long)]
        role: Role,
    },
    /// List tokens (names and roles, never the tokens).
    List,
    /// Revoke a token: refused from its next request on.
    Revoke { name: String },
}

#[derive(Debug, Args)]
struct AuditArgs {
    /// Only records since: a duration ago (24h) or a time.
    #[arg(long)]
    since: Option<String>,
    /// Most records to print (at most 1000).
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Only records after this sequence number (the next page).
    #[arg(long)]
    after: Option<u64>,
}

/// Ends the process after `e`, with `message`. When the reader of the
/// output went away (`socctl decode big.log | head`), quietly and with
/// success, as other command-line tools stop: nothing went wrong here.
fn fail(e: &anyhow::Error, message: String) -> ! {
    let broken = Some(std::io::ErrorKind::BrokenPipe);
    let reader_gone = e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind)
            == broken
            || cause
                .downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
                == broken
    });
    if reader_gone {
        std::process::exit(0);
    }
    eprintln!("socctl: {message}");
    std::process::exit(1);
}

/// `println!` panics when the reader of the output went away (`socctl
/// alerts list | head`); such a panic ends socctl as [`fail`] does, quietly
/// and with success. Other panics are reported as usual.
fn quiet_when_the_reader_goes_away() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to std") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        report(info);
    }));
}

fn main() {
    quiet_when_the_reader_goes_away();
    let cli = Cli::parse();
    if let Cmd::Decode(args) = &cli.cmd {
        if let Err(e) = decode::run(args, cli.json) {
            fail(&e, format!("{e:#}"));
        }
        return;
    }
    if let Cmd::Backup(backup::BackupCmd::Verify { file }) = &cli.cmd {
        if let Err(e) = backup::verify(file, cli.json) {
            fail(&e, format!("{e:#}"));
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
    let server = cli.server.clone();
    if let Err(e) = rt.block_on(run(cli)) {
        fail(&e, explain(&e, &server));
    }
}

/// One line that says what went wrong and what to do about it.
fn explain(e: &anyhow::Error, server: &str) -> String {
    let Some(ce) = e.downcast_ref::<ClientError>() else {
        return format!("{e:#}");
    };
    match ce {
        ClientError::Api {
            status, message, ..
        } => match status.as_u16() {
            401 => format!(
                "{server} refused the token (401: unknown, revoked or mistyped): check --token, SOC_TOKEN or SOC_TOKEN_FILE, or ask an admin for a new one (`socctl tokens create NAME --role ROLE`)"
            ),
            403 => format!(
                "{message} (403): ask an admin for a token with that role (`socctl tokens create NAME --role ROLE`)"
            ),
            429 => format!("{message} (HTTP 429); wait a minute before trying again"),
            _ => format!("{e:#}"),
        },
        ClientError::Connect { message, .. } => {
            let m = message.to_ascii_lowercase();
            if m.contains("expired") || m.contains("notvalidyet") || m.contains("not valid yet") {
                format!(
                    "the certificate of {server} has expired or is not valid yet: renew it (for a generated one, delete <data_dir>/tls/server.pem and restart the collector) or fix this machine's clock"
                )
            } else if m.contains("unknownissuer")
                || m.contains("unknown issuer")
                || m.contains("badsignature")
                || m.contains("invalid peer certificate")
            {
                if m.contains("notvalidforname") || m.contains("not valid for name") {
                    format!(
                        "the certificate of {server} does not name that host: use a name it lists in --server/SOC_SERVER, or add the name to tls.subject_alt_names on the collector"
                    )
                } else {
                    format!(
                        "the certificate of {server} is not trusted: pass --ca-cert (or set SOC_CA_CERT) to the collector's CA, usually <data_dir>/tls/ca.pem"
                    )
                }
            } else if m.contains("refused") {
                format!(
                    "cannot reach {server}: connection refused; is soc-collector running, and is --server/SOC_SERVER right?"
                )
            } else if m.contains("dns") || m.contains("resolve") || m.contains("lookup") {
                format!("cannot resolve the host of {server}: check --server/SOC_SERVER")
            } else {
                format!(
                    "cannot reach {server}: {message}; check --server/SOC_SERVER and the network"
                )
            }
        }
        ClientError::CaFile { path, message } => format!(
            "cannot use the CA file {path}: {message}; point --ca-cert/SOC_CA_CERT at the collector's <data_dir>/tls/ca.pem"
        ),
        _ => format!("{e:#}"),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let cli = match cli.cmd {
        Cmd::Rules(cmd @ (rules::RulesCmd::Reload | rules::RulesCmd::List)) => Cli {
            cmd: Cmd::Rules(cmd),
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
            let mut q = a.filter.query()?;
            q.before_id = a.before;
            q.after_id = a.after;
            q.sort = a.sort;
            q.limit = Some(a.limit.clamp(1, 1000));
            let page: AlertPage = client.get("/api/v1/alerts", &q).await?;
            out.alerts(&page)?;
        }
        Cmd::Alerts(AlertsCmd::Show { id }) => {
            let a: Alert = client.get(&format!("/api/v1/alerts/{id}"), &()).await?;
            out.alert(&a)?;
        }
        Cmd::Alerts(AlertsCmd::Follow { filter, from }) => {
            follow(&client, &out, filter.query()?, from).await?;
        }
        Cmd::Alerts(AlertsCmd::Ack {
            id,
            note,
            filter,
            yes,
        }) => match id {
            Some(id) => {
                if !filter.is_empty() {
                    anyhow::bail!("give an alert id or filters, not both");
                }
                let a: Alert = client
                    .post(&format!("/api/v1/alerts/{id}/ack"), &AckRequest { note })
                    .await?;
                out.changed(&a)?;
            }
            None => {
                if filter.is_empty() {
                    anyhow::bail!(
                        "give an alert id, or filters (--rule, --host, --severity, ...) for a bulk acknowledgement"
                    );
                }
                let mut q = filter.query()?;
                q.status = q.status.or(Some(AlertStatus::Open));
                bulk(&client, &out, BulkAction::Ack, q, None, note, yes).await?;
            }
        },
        Cmd::Alerts(AlertsCmd::Close {
            id,
            reason,
            note,
            filter,
            yes,
        }) => match id {
            Some(id) => {
                if !filter.is_empty() {
                    anyhow::bail!("give an alert id or filters, not both");
                }
                let a: Alert = client
                    .post(
                        &format!("/api/v1/alerts/{id}/close"),
                        &CloseRequest { reason, note },
                    )
                    .await?;
                out.changed(&a)?;
            }
            None => {
                if filter.is_empty() {
                    anyhow::bail!("give an alert id, or filters for a bulk close");
                }
                let q = filter.query()?;
                bulk(&client, &out, BulkAction::Close, q, Some(reason), note, yes).await?;
            }
        },
        Cmd::Alerts(AlertsCmd::Assign { id, user, note }) => {
            let a: Alert = client
                .post(
                    &format!("/api/v1/alerts/{id}/assign"),
                    &AssignRequest {
                        assignee: user,
                        note,
                    },
                )
                .await?;
            out.changed(&a)?;
        }
        Cmd::Alerts(AlertsCmd::Note { id, text }) => {
            let a: Alert = client
                .post(
                    &format!("/api/v1/alerts/{id}/note"),
                    &NoteRequest { note: Some(text) },
                )
                .await?;
            out.changed(&a)?;
        }
        Cmd::Alerts(AlertsCmd::Reopen { id, note }) => {
            let a: Alert = client
                .post(
                    &format!("/api/v1/alerts/{id}/reopen"),
                    &NoteRequest { note },
                )
                .await?;
            out.changed(&a)?;
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
        Cmd::Agents(AgentsCmd::Revoke { name }) => {
            let r: serde_json::Value = client
                .post(&format!("/api/v1/agents/{name}/revoke"), &())
                .await?;
            if out.is_json() {
                out.json(&r)?;
            } else {
                println!("agent {name} is revoked; its next batch will be refused");
            }
        }
        Cmd::Tokens(TokensCmd::Create { name, role }) => {
            let r: CreateTokenResponse = client
                .post("/api/v1/tokens", &CreateTokenRequest { name, role })
                .await?;
            out.token_created(&r)?;
        }
        Cmd::Tokens(TokensCmd::List) => {
            let tokens: Vec<TokenView> = client.get("/api/v1/tokens", &()).await?;
            out.tokens(&tokens)?;
        }
        Cmd::Tokens(TokensCmd::Revoke { name }) => {
            let t: TokenView = client
                .post(&format!("/api/v1/tokens/{name}/revoke"), &())
                .await?;
            if out.is_json() {
                out.json(&t)?;
            } else {
                println!("token {name} is revoked; it is refused from now on");
            }
        }
        Cmd::Audit(a) => {
            let q = AuditQuery {
                since_ms: a
                    .since
                    .as_deref()
                    .map(|s| parse_time("--since", s))
                    .transpose()?,
                after_seq: a.after,
                limit: Some(a.limit.clamp(1, 1000)),
            };
            let entries: Vec<AuditEntry> = client.get("/api/v1/audit", &q).await?;
            out.audit(&entries)?;
        }
        Cmd::Status => {
            let s: StatusView = client.get("/api/v1/status", &()).await?;
            out.status(&s)?;
        }
        Cmd::Decode(_) => unreachable!("handled before the runtime starts"),
        Cmd::Backup(cmd) => backup::run(&client, cmd, cli.json).await?,
        Cmd::Rules(rules::RulesCmd::List) => {
            let rules: Vec<soc_collector::model::RuleView> =
                client.get("/api/v1/rules", &()).await?;
            out.rules(&rules)?;
        }
        Cmd::Rules(_) => {
            let r: soc_collector::rules_api::ReloadView =
                client.post("/api/v1/rules/reload", &()).await?;
            if cli.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                for w in &r.warnings {
                    println!("warning: {w}");
                }
                println!("reloaded: {} decoders, {} rules", r.decoders, r.rules);
            }
        }
    }
    Ok(())
}
