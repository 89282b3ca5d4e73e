//! The alert commands: their arguments and filters, and the helpers for
//! bulk changes and following new alerts.

use super::*;

#[derive(Debug, Subcommand)]
pub(crate) enum AlertsCmd {
    /// List alerts, newest first.
    List(ListArgs),
    /// Show one alert with the raw lines and decoded fields behind it.
    Show { id: u64 },
    /// Print new alerts as they are raised, until interrupted.
    Follow {
        #[command(flatten)]
        filter: FilterArgs,
        /// Start after this alert id instead of at the newest.
        #[arg(long)]
        from: Option<u64>,
    },
    /// Acknowledge one alert, or every open alert a filter selects.
    Ack {
        /// The alert; omit it and give filters for a bulk acknowledgement.
        id: Option<u64>,
        /// A note kept in the alert's history.
        #[arg(long)]
        note: Option<String>,
        #[command(flatten)]
        filter: FilterArgs,
        /// Do not ask for confirmation of a bulk change.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Close one alert, or every alert a filter selects, with a reason.
    Close {
        id: Option<u64>,
        /// true_positive, false_positive, benign or duplicate.
        #[arg(long)]
        reason: CloseReason,
        #[arg(long)]
        note: Option<String>,
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Assign an alert to someone.
    Assign {
        id: u64,
        user: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Add a note to an alert's history.
    Note { id: u64, text: String },
    /// Reopen a closed alert.
    Reopen {
        id: u64,
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Debug, Clone, Default, Args)]
pub(crate) struct FilterArgs {
    /// At least this severity (info, low, medium, high, critical).
    #[arg(long)]
    pub severity: Option<Severity>,
    /// Exactly the `--severity`, not that or higher.
    #[arg(long, requires = "severity")]
    pub severity_exactly: bool,
    /// Only this rule id.
    #[arg(long)]
    pub rule: Option<String>,
    /// Only this host (case-insensitive).
    #[arg(long)]
    pub host: Option<String>,
    /// Only alerts from lines this agent shipped.
    #[arg(long)]
    pub agent: Option<String>,
    /// Only alerts whose agent carries this label, e.g. `agency=finance`.
    #[arg(long)]
    pub label: Option<String>,
    /// Only alerts with a source.ip in this CIDR (or equal to this address).
    #[arg(long, visible_alias = "src")]
    pub source_ip: Option<String>,
    /// Only alerts with a destination.ip in this CIDR (or equal to this address).
    #[arg(long, visible_alias = "dst")]
    pub destination_ip: Option<String>,
    /// Only this status (open, acknowledged, closed).
    #[arg(long)]
    pub status: Option<AlertStatus>,
    /// Only alerts assigned to this person.
    #[arg(long)]
    pub assignee: Option<String>,
    /// Only alerts with this tag, e.g. attack.t1133.
    #[arg(long)]
    pub tag: Option<String>,
    /// Only alerts raised since: a duration ago (15m, 24h, 7d) or a time (2025-03-01T08:00:00Z).
    #[arg(long)]
    pub since: Option<String>,
    /// Only alerts raised until: a duration ago or a time.
    #[arg(long)]
    pub until: Option<String>,
}

impl FilterArgs {
    pub(crate) fn is_empty(&self) -> bool {
        self.severity.is_none()
            && self.rule.is_none()
            && self.host.is_none()
            && self.agent.is_none()
            && self.label.is_none()
            && self.source_ip.is_none()
            && self.destination_ip.is_none()
            && self.status.is_none()
            && self.assignee.is_none()
            && self.tag.is_none()
            && self.since.is_none()
            && self.until.is_none()
    }

    pub(crate) fn query(&self) -> anyhow::Result<AlertQuery> {
        Ok(AlertQuery {
            severity: self.severity,
            severity_exactly: self.severity_exactly.then_some(true),
            rule: self.rule.clone(),
            host: self.host.clone(),
            agent: self.agent.clone(),
            label: self.label.clone(),
            source_ip: self.source_ip.clone(),
            destination_ip: self.destination_ip.clone(),
            status: self.status,
            assignee: self.assignee.clone(),
            tag: self.tag.clone(),
            since_ms: self
                .since
                .as_deref()
                .map(|s| parse_time("--since", s))
                .transpose()?,
            until_ms: self
                .until
                .as_deref()
                .map(|s| parse_time("--until", s))
                .transpose()?,
            ..Default::default()
        })
    }
}

/// A duration ago (`15m`) or a time (`2025-03-01T08:00:00Z`), as ms since epoch.
pub(crate) fn parse_time(flag: &str, s: &str) -> anyhow::Result<i64> {
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(soc_collector::app::now_ms() - d.as_millis() as i64);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        let ms = t
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        return Ok(ms);
    }
    anyhow::bail!(
        "{flag} `{s}`: use a duration like 15m or 7d, or a time like 2025-03-01T08:00:00Z"
    )
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Most alerts to print (at most 1000).
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Only alerts with an id below this one: the next page of a newest-first listing.
    #[arg(long)]
    pub before: Option<u64>,
    /// Only alerts with an id above this one: the next page of an oldest-first listing.
    #[arg(long)]
    pub after: Option<u64>,
    /// newest (default) or oldest first.
    #[arg(long)]
    pub sort: Option<SortOrder>,
}

/// Asks before a bulk change; refuses when nobody can answer.
pub(crate) fn confirm(question: &str, yes: bool) -> anyhow::Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "{question}: refusing without confirmation because stdin is not a terminal; add --yes"
        );
    }
    eprint!("{question}. Proceed? [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn bulk(
    client: &Client,
    out: &output::Output,
    action: BulkAction,
    mut filter: AlertQuery,
    reason: Option<CloseReason>,
    note: Option<String>,
    yes: bool,
) -> anyhow::Result<()> {
    let mut req = BulkRequest {
        action,
        filter: filter.clone(),
        dry_run: true,
        reason,
        assignee: None,
        note,
    };
    let dry: BulkResponse = client.post("/api/v1/alerts/bulk", &req).await?;
    let verb = match action {
        BulkAction::Ack => "acknowledge",
        BulkAction::Close => "close",
        BulkAction::Assign => "assign",
        BulkAction::Reopen => "reopen",
    };
    if dry.changed == 0 {
        if !out.is_json() {
            println!(
                "nothing to {verb}: {} alert{} matched, none can be changed",
                dry.matched,
                if dry.matched == 1 { "" } else { "s" }
            );
        } else {
            out.json(&dry)?;
        }
        return Ok(());
    }
    let question = format!(
        "this will {verb} {} alert{}{}",
        dry.changed,
        if dry.changed == 1 { "" } else { "s" },
        if dry.truncated {
            " (more match; run again for the rest)"
        } else {
            ""
        }
    );
    if !confirm(&question, yes)? {
        anyhow::bail!("nothing changed");
    }
    // Act on exactly what was counted, not on alerts raised since.
    filter.before_id = dry.max_id.map(|m| m.saturating_add(1));
    req.filter = filter;
    req.dry_run = false;
    let done: BulkResponse = client.post("/api/v1/alerts/bulk", &req).await?;
    out.bulk(verb, &done)
}

pub(crate) async fn follow(
    client: &Client,
    out: &output::Output,
    mut q: AlertQuery,
    from: Option<u64>,
) -> anyhow::Result<()> {
    q.after_id = from;
    let mut backoff = Duration::from_millis(500);
    loop {
        let mut last = q.after_id;
        let r = client
            .stream_lines(
                "/api/v1/alerts/stream",
                &q,
                Duration::from_secs(45),
                |line| {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
                        && let Some(err) = v.get("error").and_then(|e| e.as_str())
                    {
                        return Err(ClientError::Decode {
                            server: String::new(),
                            message: err.to_owned(),
                        });
                    }
                    match serde_json::from_str::<Alert>(line) {
                        Ok(a) => {
                            last = Some(a.id);
                            out.follow_line(&a, line)
                                .map_err(|e| ClientError::Build(e.to_string()))
                        }
                        Err(e) => Err(ClientError::Decode {
                            server: String::new(),
                            message: e.to_string(),
                        }),
                    }
                },
            )
            .await;
        match r {
            // The server only ends a stream when the token stops working.
            Ok(()) => anyhow::bail!("the collector ended the stream"),
            Err(ClientError::Connect { ref message, .. })
                if last.is_some() || q.after_id.is_some() =>
            {
                eprintln!("socctl: lost the stream ({message}); reconnecting");
                q.after_id = last.or(q.after_id);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            Err(ClientError::Decode { message, .. }) if message.contains("revoked") => {
                anyhow::bail!("the collector ended the stream: the token was revoked")
            }
            Err(e) => return Err(e.into()),
        }
        if let Some(l) = last {
            q.after_id = Some(l);
        }
    }
}
