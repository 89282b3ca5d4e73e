//! How socctl prints: tables for people (colour only on a terminal), JSON or
//! NDJSON for scripts.

use std::borrow::Cow;
use std::fmt::Write as _;
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

/// `s` as it is safe to print on a terminal: control characters (C0, DEL,
/// C1) and the controls that reorder bidirectional text written as escapes
/// (`\x1b`, `\t`, `\u{9b}`, `\u{202e}`), everything else as it is.
///
/// Log lines, and the fields and summaries made from them, are written by
/// whoever sends the logs. Printed raw, an escape sequence in one could
/// rewrite the responder's screen, retitle the window or hide the text
/// around it, and a right-to-left override could show an address or a file
/// name reversed. JSON output is left as stored, for scripts (its strings
/// escape the ASCII control characters).
pub fn shown(s: &str) -> Cow<'_, str> {
    if !s.chars().any(hidden) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            c if hidden(c) && c.is_ascii() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if hidden(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A character [`shown`] writes as an escape.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
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
                Cell::new(shown(a.assignee.as_deref().unwrap_or("-"))),
                Cell::new(shown(&a.rule_id)),
                Cell::new(shown(&a.host)),
                Cell::new(if a.suppressed > 0 {
                    format!("{} (repeated {}×)", shown(&a.summary), a.suppressed)
                } else {
                    shown(&a.summary).into_owned()
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
            s.push_str(&format!(", assigned to {}", shown(u)));
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
                shown(&a.rule_id),
                shown(&a.host),
                shown(&a.summary)
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
                shown(&k.name).into_owned(),
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
                Cell::new(shown(&e.token)),
                Cell::new(e.role.map_or("-", |r| r.as_str())),
                Cell::new(shown(e.peer.as_deref().unwrap_or("-"))),
                Cell::new(shown(&e.action)),
                Cell::new(shown(&e.target)),
                outcome,
                Cell::new(shown(e.message.as_deref().unwrap_or(""))),
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
            shown(&a.rule_id),
            a.rule_version,
            shown(&a.rule_title)
        );
        println!("  summary   {}", shown(&a.summary));
        println!("  host      {}   agent {}", shown(&a.host), shown(&a.agent));
        if let Some(u) = &a.assignee {
            println!("  assignee  {}", shown(u));
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
            println!("  tags      {}", shown(&a.tags.join(", ")));
        }
        if !a.group_key.is_empty() {
            println!("  key       {}", shown(&a.group_key));
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
                e.seq,
                shown(&e.agent),
                shown(&e.path),
                e.offset,
                shown(&e.source)
            );
            println!("    {}", shown(&e.line));
            let width = e.fields.keys().map(str::len).max().unwrap_or(0);
            for (k, v) in &e.fields {
                if k == "message" || k == "event.original" {
                    continue;
                }
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                println!("      {:width$}  {}", shown(k), shown(&v));
            }
        }
        println!();
        println!("History:");
        for h in &a.history {
            let action = match &h.detail {
                Some(d) => format!("{} ({})", h.action, shown(d)),
                None => h.action.clone(),
            };
            let by = shown(&h.by);
            match &h.note {
                Some(n) => println!("  {}  {:<13} by {by}: {}", time(h.at_ms), action, shown(n)),
                None => println!("  {}  {:<13} by {by}", time(h.at_ms), action),
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
                shown(&a.name).into_owned(),
                shown(&a.state).into_owned(),
                ago(a.last_seen_ms),
                a.events_received.to_string(),
                a.lag_bytes.map_or_else(|| "-".into(), |b| format!("{b} B")),
                a.files_watched
                    .map_or_else(|| "-".into(), |f| f.to_string()),
                shown(a.agent_version.as_deref().unwrap_or("-")).into_owned(),
                shown(a.hostname.as_deref().unwrap_or("-")).into_owned(),
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
                format!("{}:{}", shown(&r.file), r.line),
                shown(&r.title).into_owned(),
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

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn controls_are_escaped_and_the_rest_is_left_alone() {
        for (text, want) in [
            (
                "plain text, ünïcödé, C:\\Users\\x",
                "plain text, ünïcödé, C:\\Users\\x",
            ),
            ("\u{1b}[2J\u{1b}]0;title\u{7}", "\\x1b[2J\\x1b]0;title\\x07"),
            ("a\tb\rc\nd\u{0}e\u{7f}", "a\\tb\\rc\\nd\\x00e\\x7f"),
            ("\u{9b}31m", "\\u{9b}31m"),
            ("invoice\u{202e}fdp.exe", "invoice\\u{202e}fdp.exe"),
            ("\u{2066}x\u{2069}\u{200f}", "\\u{2066}x\\u{2069}\\u{200f}"),
        ] {
            assert_eq!(shown(text), want, "{text:?}");
        }
        assert!(matches!(
            shown("no controls"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
