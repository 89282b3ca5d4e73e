//! `socctl decode`: offline decoding, the rule writer's `wazuh-logtest`.
//!
//! Reads lines from a file or stdin, decodes each with the shipped decoders
//! (plus `--decoders DIR`) and shows the decoder chain's result and which
//! rules (shipped plus `--rules DIR`) would match. Needs no server and no
//! token. `--json` prints exactly one JSON object per input line, in order.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use soc_rules::{Decoders, Input, RuleSet, SourceFile};

use crate::output::shown;

#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// File to read; stdin when absent or `-`.
    pub file: Option<PathBuf>,
    /// Source type hint, as an agent would send it (forces that decoder family).
    #[arg(long = "type", value_name = "T", default_value = "")]
    pub source_type: String,
    /// Folder of extra decoder files (`*.yml`), loaded after the shipped ones.
    #[arg(long, value_name = "DIR")]
    pub decoders: Option<PathBuf>,
    /// Folder of extra rule files (`*.yml`), loaded after the shipped ones.
    #[arg(long, value_name = "DIR")]
    pub rules: Option<PathBuf>,
}

fn yaml_files(dir: &Path) -> anyhow::Result<Vec<SourceFile>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            Ok(SourceFile::new(p.display().to_string(), text))
        })
        .collect()
}

pub fn run(args: &DecodeArgs, json: bool) -> anyhow::Result<()> {
    let mut dec_files = soc_rules::builtin_decoder_sources();
    if let Some(dir) = &args.decoders {
        dec_files.extend(yaml_files(dir)?);
    }
    let decoders = Decoders::from_sources(&dec_files).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut rule_files = soc_rules::builtin_rule_sources();
    if let Some(dir) = &args.rules {
        rule_files.extend(yaml_files(dir)?);
    }
    let rules = RuleSet::from_sources_with_lists(&rule_files, &soc_rules::builtin_list_sources())
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    let reader: Box<dyn BufRead> = match &args.file {
        Some(p) if p.as_os_str() != "-" => Box::new(std::io::BufReader::new(
            std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?,
        )),
        _ => Box::new(std::io::stdin().lock()),
    };
    let now = chrono::Utc::now().timestamp_millis();
    let mut out = std::io::stdout().lock();
    let mut buf = Vec::new();
    let mut reader = reader;
    let mut n = 0usize;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        n += 1;
        let raw: &[u8] = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let ev = decoders.decode(&Input {
            raw,
            source_type: &args.source_type,
            agent: "",
            source: "",
            path: "",
            received_ms: now,
        });
        // Each matching rule with the steps the line is (sequences only).
        let matched: Vec<(&str, Vec<&str>)> = rules
            .rules()
            .iter()
            .filter_map(|r| r.matching_steps(&ev).map(|steps| (r.id.as_str(), steps)))
            .collect();
        if json {
            let steps: serde_json::Map<String, serde_json::Value> = matched
                .iter()
                .filter(|(_, steps)| !steps.is_empty())
                .map(|(id, steps)| (id.to_string(), serde_json::json!(steps)))
                .collect();
            let obj = serde_json::json!({
                "line": n,
                "decoder": ev.get_str("decoder.name"),
                "fields": ev.fields,
                "rules": matched.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
                "steps": steps,
            });
            writeln!(out, "{obj}")?;
        } else {
            writeln!(out, "line {n}: {}", shown(&String::from_utf8_lossy(raw)))?;
            writeln!(
                out,
                "  decoder: {}",
                ev.get_str("decoder.name").unwrap_or("(none)")
            )?;
            for (k, v) in &ev.fields {
                if k == "message" {
                    continue;
                }
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                writeln!(out, "  {}: {}", shown(k), shown(&v))?;
            }
            if matched.is_empty() {
                writeln!(out, "  rules: (none)")?;
            } else {
                let names: Vec<String> = matched
                    .iter()
                    .map(|(id, steps)| match steps[..] {
                        [] => id.to_string(),
                        _ => format!("{id} (step: {})", steps.join(", ")),
                    })
                    .collect();
                writeln!(out, "  rules: {}", names.join(", "))?;
            }
            writeln!(out)?;
        }
    }
    Ok(())
}
