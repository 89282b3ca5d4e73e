//! How socctl prints: tables for people (colour only on a terminal), JSON or
//! NDJSON for scripts.

use std::io::{IsTerminal as _, Write as _};

use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::{Cell, ContentArrangement, Table};
use soc_collector::model::{
    AgentView, Alert, AlertPage, AuditEntry, AuditOutcome, BulkResponse, CreateTokenResponse,
    EnrollAgentResponse, RuleView, Severity, StatusView, TokenView,
};

pub struct Output {
    json: bool,
    colour: bool,
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || "-".into(),
        |t| t.format("%Y-%m-%d %H:%M:%SZ").to_string(),
    )
}

fn ago(ms: Option<i64>) -> String {
    let Some(ms) = ms else { return "never".into() };
    let secs = (soc_collector::app::now_ms() - ms).max(0) / 1000;
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86400),
    }
}

impl Output {
    pub fn new(json: bool) -> Output {
        let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Output { json, colour }
    }

    fn table(&self, header: &[&str]) -> Table {
        let mut t = Table::new();
        t.load_preset(UTF8_BORDERS_ONLY)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_header(header.to_vec());
        if !self.colour {
            t.force_no_tty();
        }
        t
    }

    fn severity(&self, s: Severity) -> Cell {
        let cell = Cell::new(s.as_str());
        if !self.colour {
            return cell;
        }
        match s {
            Severity::Critical => cell.fg(comfy_table::Color::Magenta),
            Severity::High => cell.fg(comfy_table::Color::Red),
            Severity::Medium => cell.fg(comfy_table::Color::Yellow),
            _ => cell,
        }
    }

    fn print_json<T: serde::Serialize>(&self, v: &T) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer(&mut out, v)?;
        writeln!(out)?;
        Ok(())
    }

    pub fn alerts(&self, page: &AlertPage) -> anyhow::Result<()> {
        let alerts = &page.alerts;
        if self.json {
            for a in alerts {
                self.print_json(a)?;
            }
            return Ok(());
        }
        if alerts.is_empty() {
            println!("no alerts match");
            return Ok(());
        }
        let mut t = self.table(&[
            "ID", "TIME", "SEVERITY", "STATUS", "ASSIGNEE", "RULE", "HOST", "SUMMARY",
        ]);
        for a in alerts {
            t.add_row(vec![
                Cell::new(a.id),
                Cell::new(time(a.created_ms)),
                self.severity(a.severity),
                Cell::new(a.status.as_str()),
                Cell::new(a.assignee.as_deref().unwrap_or("-")),
                Cell::new(&a.rule_id),
                Cell::new(&a.host),
                Cell::new(if a.suppressed > 0 {
                    format!("{} (repeated {}×)", a.summary, a.suppressed)
                } else {
                    a.summary.clone()
                }),
            ]);
        }
        println!("{t}");
        if let Some(b) = page.next_before_id {
            println!("more: add --before {b}");
        }
        if let Some(a) = page.next_after_id {
            println!("more: add --after {a}");
        }
        Ok(())
    }

    pub fn is_json(&self) -> bool {
        self.json
    }

    /// One JSON document on a line.
    pub fn json<T: serde::Serialize>(&self, v: &T) -> anyhow::Result<()> {
        self.print_json(v)
    }

    /// An alert after a change: JSON, or one sentence.
    pub fn changed(&self, a: &Alert) -> anyhow::Result<()> {
        if self.json {
            return self.print_json(a);
        }
        let mut s = format!("alert {} is {}", a.id, a.status.as_str());
        if let Some(r) = a.close_reason {
            s.push_str(&format!(" ({})", r.as_str()));
        }
        if let Some(u) = &a.assignee {
            s.push_str(&format!(", assigned to {u}"));
        }
        println!("{s}");
        Ok(())
    }

    pub fn bulk(&self, verb: &str, r: &BulkResponse) -> anyhow::Result<()> {
        if self.json {
            return self.print_json(r);
        }
        println!(
            "{verb}: {} of {} matching alert{} changed{}",
            r.changed,
            r.matched,
            if r.matched == 1 { "" } else { "s" },
            if r.truncated {
                "; more match, run it again"
            } else {
                ""
            }
        );
        Ok(())
    }

    /// One streamed alert: the line as received (NDJSON), or a short line.
    pub fn follow_line(&self, a: &Alert, raw: &str) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        if self.json {
            writeln!(out, "{raw}")?;
        } else {
            let sev = if self.colour {
                let code = match a.severity {
                    Severity::Critical => "35",
                    Severity::High => "31",
                    Severity::Medium => "33",
                    _ => "0",
                };
                format!("\x1b[{code}m{:<8}\x1b[0m", a.severity.as_str())
            } else {
                format!("{:<8}", a.severity.as_str())
            };
            writeln!(
                out,
                "{} #{:<7} {sev} {:<28} {:<16} {}",
                time(a.created_ms),
                a.id,
                a.rule_id,
                a.host,
                a.summary
            )?;
        }
        out.flush()?;
        Ok(())
    }

    pub fn token_created(&self, r: &CreateTokenResponse) -> anyhow::Result<()> {
        if self.json {
            return self.print_json(r);
        }
        println!(
            "token {} ({}) created; it is shown only this once:",
            r.name,
            r.role.as_str()
        );
        println!();
        println!("  {}", r.token);
        println!();
        println!(
            "give it to its user as SOC_TOKEN or in a file named by SOC_TOKEN_FILE (mode 0600)."
        );
        Ok(())
    }

    pub fn tokens(&self, tokens: &[TokenView]) -> anyhow::Result<()> {
        if self.json {
            for t in tokens {
                self.print_json(t)?;
            }
            return Ok(());
        }
        let mut t = self.table(&["NAME", "ROLE", "CREATED", "STATE"]);
        for k in tokens {
            t.add_row(vec![
                k.name.clone(),
                k.role.as_str().to_owned(),
                time(k.created_ms),
                if k.revoked { "revoked" } else { "active" }.to_owned(),
            ]);
        }
        println!("{t}");
        Ok(())
    }

    pub fn audit(&self, entries: &[AuditEntry]) -> anyhow::Result<()> {
        if self.json {
            for e in entries {
                self.print_json(e)?;
            }
            return Ok(());
        }
        if entries.is_empty() {
            println!("no audit records match");
            return Ok(());
        }
        let mut t = self.table(&[
            "SEQ", "TIME", "TOKEN", "ROLE", "FROM", "ACTION", "TARGET", "OUTCOME", "MESSAGE",
        ]);
        for e in entries {
            let outcome = Cell::new(e.outcome.as_str());
            let outcome = if self.colour && e.outcome != AuditOutcome::Success {
                outcome.fg(comfy_table::Color::Red)
            } else {
                outcome
            };
            t.add_row(vec![
                Cell::new(e.seq),
                Cell::new(time(e.at_ms)),
                Cell::new(&e.token),
                Cell::new(e.role.map_or("-", |r| r.as_str())),
                Cell::new(e.peer.as_deref().unwrap_or("-")),
                Cell::new(&e.action),
                Cell::new(&e.target),
                outcome,
                Cell::new(e.message.as_deref().unwrap_or("")),
            ]);
        }
        println!("{t}");
        Ok(())
    }

    pub fn alert(&self, a: &Alert) -> anyhow::Result<()> {
        if self.json {
            return self.print_json(a);
        }
        println!(
            "Alert {}  [{}]  {}",
            a.id,
            a.severity.as_str(),
            a.status.as_str()
        );
        println!(
            "  rule      {} (v{}): {}",
            a.rule_id, a.rule_version, a.rule_title
        );
        println!("  summary   {}", a.summary);
        println!("  host      {}   agent {}", a.host, a.agent);
        if let Some(u) = &a.assignee {
            println!("  assignee  {u}");
        }
        if let Some(r) = a.close_reason {
            println!("  closed as {}", r.as_str());
        }
        println!(
            "  event at  {}   stored {}",
            time(a.event_time_ms),
            time(a.created_ms)
        );
        if !a.tags.is_empty() {
            println!("  tags      {}", a.tags.join(", "));
        }
        if !a.group_key.is_empty() {
            println!("  key       {}", a.group_key);
        }
        if a.suppressed > 0 {
            println!(
                "  repeats   {} suppressed since, the last at {}",
                a.suppressed,
                a.last_repeat_ms.map_or_else(|| "-".into(), time)
            );
        }
        println!();
        println!(
            "Evidence ({} line{}{}):",
            a.evidence.len(),
            if a.evidence.len() == 1 { "" } else { "s" },
            if a.evidence_omitted > 0 {
                format!(", {} more not kept", a.evidence_omitted)
            } else {
                String::new()
            }
        );
        for e in &a.evidence {
            println!(
                "  #{} {}:{} @{} ({})",
                e.seq, e.agent, e.path, e.offset, e.source
            );
            println!("    {}", e.line);
            let width = e.fields.keys().map(str::len).max().unwrap_or(0);
            for (k, v) in &e.fields {
                if k == "message" || k == "event.original" {
                    continue;
                }
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                println!("      {k:width$}  {v}");
            }
        }
        println!();
        println!("History:");
        for h in &a.history {
            let action = match &h.detail {
                Some(d) => format!("{} ({d})", h.action),
                None => h.action.clone(),
            };
            match &h.note {
                Some(n) => println!("  {}  {:<13} by {}: {n}", time(h.at_ms), action, h.by),
                None => println!("  {}  {:<13} by {}", time(h.at_ms), action, h.by),
            }
        }
        Ok(())
    }

    pub fn agents(&self, agents: &[AgentView]) -> anyhow::Result<()> {
        if self.json {
            for a in agents {
                self.print_json(a)?;
            }
            return Ok(());
        }
        if agents.is_empty() {
            println!("no agents enrolled; add one with `socctl agents enroll NAME`");
            return Ok(());
        }
        let mut t = self.table(&[
            "NAME",
            "STATE",
            "LAST SEEN",
            "EVENTS",
            "LAG",
            "FILES",
            "VERSION",
            "HOST",
        ]);
        for a in agents {
            t.add_row(vec![
                a.name.clone(),
                a.state.clone(),
                ago(a.last_seen_ms),
                a.events_received.to_string(),
                a.lag_bytes.map_or_else(|| "-".into(), |b| format!("{b} B")),
                a.files_watched
                    .map_or_else(|| "-".into(), |f| f.to_string()),
                a.agent_version.clone().unwrap_or_else(|| "-".into()),
                a.hostname.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        println!("{t}");
        Ok(())
    }

    pub fn rules(&self, rules: &[RuleView]) -> anyhow::Result<()> {
        if self.json {
            for r in rules {
                self.print_json(r)?;
            }
            return Ok(());
        }
        if rules.is_empty() {
            println!("the collector runs no rules");
            return Ok(());
        }
        let mut t = self.table(&[
            "ID",
            "SEVERITY",
            "KIND",
            "STATE",
            "OPEN GROUPS",
            "LAST ALERT",
            "FILE",
            "TITLE",
        ]);
        for r in rules {
            t.add_row(vec![
                r.id.clone(),
                r.severity.as_str().to_owned(),
                r.kind.clone(),
                if r.enabled { "enabled" } else { "disabled" }.to_owned(),
                r.open_groups.to_string(),
                r.last_alert.as_ref().map_or_else(
                    || "-".into(),
                    |a| {
                        format!(
                            "#{} {} ({})",
                            a.id,
                            ago(Some(a.created_ms)),
                            a.status.as_str()
                        )
                    },
                ),
                format!("{}:{}", r.file, r.line),
                r.title.clone(),
            ]);
        }
        println!("{t}");
        Ok(())
    }

    pub fn enrolled(&self, r: &EnrollAgentResponse) -> anyhow::Result<()> {
        if self.json {
            return self.print_json(r);
        }
        println!(
            "agent {} registered; its one-time enrolment secret (valid until {}):",
            r.name,
            time(r.expires_ms)
        );
        println!();
        println!("  {}", r.secret);
        println!();
        println!("put it in the agent's config as `enrollment_secret` (or a file named by");
        println!("`enrollment_secret_file`); the agent trades it for its own key on first start.");
        Ok(())
    }

    pub fn status(&self, s: &StatusView) -> anyhow::Result<()> {
        if self.json {
            return self.print_json(s);
        }
        println!("collector version   {}", s.version);
        println!("journal entries     {}", s.journal_last_seq);
        println!(
            "detection cursor    {} ({} behind)",
            s.detection_cursor,
            s.journal_last_seq.saturating_sub(s.detection_cursor)
        );
        println!("alerts stored       {}", s.alerts_stored);
        println!("rules loaded        {}", s.rules_loaded);
        println!("decoders loaded     {}", s.decoders_loaded);
        Ok(())
    }
}
