//! How socctl prints: tables for people (colour only on a terminal), JSON or
//! NDJSON for scripts.

use std::io::{IsTerminal as _, Write as _};

use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::{Cell, ContentArrangement, Table};
use soc_collector::model::{AgentView, Alert, EnrollAgentResponse, Severity, StatusView};

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

    pub fn alerts(&self, alerts: &[Alert]) -> anyhow::Result<()> {
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
            "ID", "TIME", "SEVERITY", "STATUS", "RULE", "HOST", "SUMMARY",
        ]);
        for a in alerts {
            t.add_row(vec![
                Cell::new(a.id),
                Cell::new(time(a.created_ms)),
                self.severity(a.severity),
                Cell::new(a.status.as_str()),
                Cell::new(&a.rule_id),
                Cell::new(&a.host),
                Cell::new(&a.summary),
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
            let width = e.fields.keys().map(String::len).max().unwrap_or(0);
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
            match &h.note {
                Some(n) => println!("  {}  {:<13} by {}: {n}", time(h.at_ms), h.action, h.by),
                None => println!("  {}  {:<13} by {}", time(h.at_ms), h.action, h.by),
            }
        }
        Ok(())
    }

    pub fn acked(&self, a: &Alert) -> anyhow::Result<()> {
        if self.json {
            return self.print_json(a);
        }
        println!("alert {} is {}", a.id, a.status.as_str());
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
