//! `socctl rules ...`: lint, test and replay rule folders offline (no
//! collector, no token), and ask a collector to reload its rules.
//!
//! Offline commands use the same `soc-rules` library as the collector, so a
//! replay of a log file raises exactly the alerts the collector would.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use soc_collector::app::read_yaml_dir;
use soc_rules::{Decoders, Engine, EngineOptions, EngineState, Input, RuleSet, SourceFile};

use crate::output::shown;

#[derive(Debug, Subcommand)]
pub enum RulesCmd {
    /// Check every decoder and rule file of DIR; print every error at once.
    Lint(ContentArgs),
    /// Run the inline tests of DIR (or of the shipped content), or replay a
    /// log file through the rules with `--replay`.
    Test(TestArgs),
    /// Ask the collector to reload its decoder, rule and list files (admin).
    Reload,
    /// The rules the collector runs: kind, severity, whether enabled, the
    /// groups each holds open and its newest alert.
    List,
    /// The fields rules can read: every field the decoders of DIR (and the
    /// shipped ones) set, with the decoders that set it.
    Fields(ContentArgs),
}

#[derive(Debug, Args)]
pub struct ContentArgs {
    /// A folder of decoder and rule files (`*.yml`, `*.yaml`, recursive).
    /// Files whose top-level key is `decoders:` are decoders, the rest rules.
    pub dir: Option<PathBuf>,
    /// A folder of list files for `in_list:` (default: DIR/lists when it exists).
    #[arg(long)]
    pub lists: Option<PathBuf>,
    /// A folder of decoder files loaded too, when they are not in DIR (as
    /// the collector's `rules.decoders_dir` beside its `rules_dir`).
    #[arg(long)]
    pub decoders: Option<PathBuf>,
    /// Leave out the shipped decoders, rules and lists.
    #[arg(long)]
    pub no_builtin: bool,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    #[command(flatten)]
    pub content: ContentArgs,
    /// Decode this log file, run the rules over it and print the alerts.
    #[arg(long)]
    pub replay: Option<PathBuf>,
    /// With --replay: a folder of extra rule/decoder files (same as DIR).
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// With --replay: the agent's source type hint for every line.
    #[arg(long, default_value = "")]
    pub source_type: String,
    /// With --replay: allowed lateness for out-of-order lines, e.g. 5s.
    #[arg(long)]
    pub lateness: Option<humantime::Duration>,
}

/// Loaded content, or every error.
struct Loaded {
    decoders: Decoders,
    rules: RuleSet,
    /// Fields the rules read that no loaded decoder sets (warnings).
    unset: Vec<soc_rules::UnsetField>,
    /// List entries that look like addresses but are not (warnings).
    doubtful: Vec<soc_rules::DoubtfulEntry>,
}

/// With `deferred`, decoder regexes are compiled when a line first reaches
/// them (a replay); otherwise all of them now, so that `lint` and the
/// inline tests report a pattern that cannot be compiled.
fn load(
    args: &ContentArgs,
    deferred: bool,
) -> anyhow::Result<Result<Loaded, soc_rules::LoadErrors>> {
    let builtin = !args.no_builtin;
    let mut dec = if builtin {
        soc_rules::builtin_decoder_sources()
    } else {
        Vec::new()
    };
    let mut rules = if builtin {
        soc_rules::builtin_rule_sources()
    } else {
        Vec::new()
    };
    let mut lists: Vec<SourceFile> = if builtin {
        soc_rules::builtin_list_sources()
    } else {
        Vec::new()
    };
    if let Some(dir) = &args.decoders {
        dec.extend(read_yaml_dir(dir).with_context(|| format!("reading {}", dir.display()))?);
    }
    if let Some(dir) = &args.dir {
        for f in read_yaml_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            if f.text.lines().any(|l| l.starts_with("decoders:")) {
                dec.push(f);
            } else {
                rules.push(f);
            }
        }
    }
    let lists_dir = args.lists.clone().or_else(|| {
        args.dir
            .as_ref()
            .map(|d| d.join("lists"))
            .filter(|d| d.is_dir())
    });
    if let Some(dir) = lists_dir {
        let mut own = Vec::new();
        for item in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let p = item?.path();
            if p.is_file() {
                let text = std::fs::read_to_string(&p)
                    .with_context(|| format!("reading {}", p.display()))?;
                own.push(SourceFile::new(p.display().to_string(), text));
            }
        }
        own.sort_by(|a, b| a.name.cmp(&b.name));
        let stem = |n: &str| Path::new(n).file_stem().map(|s| s.to_os_string());
        lists.retain(|b| !own.iter().any(|o| stem(&o.name) == stem(&b.name)));
        lists.extend(own);
    }
    let d = if deferred {
        Decoders::from_sources_deferred(&dec)
    } else {
        Decoders::from_sources(&dec)
    };
    let r = RuleSet::from_sources_with_lists(&rules, &lists);
    Ok(match (d, r) {
        (Ok(decoders), Ok(set)) => Ok(Loaded {
            unset: soc_rules::unset_fields(&set, &decoders, &rules),
            doubtful: soc_rules::doubtful_entries(&lists),
            decoders,
            rules: set,
        }),
        (Err(mut a), Err(b)) => {
            a.0.extend(b.0);
            Err(a)
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    })
}

/// Prints every load error, their count and, when some are names defined
/// twice while the shipped set is loaded too, how to check a modified copy
/// of the shipped set on its own: linting such a copy otherwise reports
/// every one of its decoders and rules as a duplicate.
fn report_load_errors(e: &soc_rules::LoadErrors, args: &ContentArgs) {
    println!("{e}");
    eprintln!("{} error(s)", e.0.len());
    if e.defines_twice() && !args.no_builtin {
        eprintln!(
            "hint: the shipped decoders and rules are loaded before {}; if it holds a modified copy of them, \
             check it on its own with --no-builtin (the collector: `builtin = false` under [rules])",
            args.dir
                .as_ref()
                .map_or_else(|| "DIR".to_owned(), |d| d.display().to_string())
        );
    }
}

/// Prints a `warning:` line for each field a rule reads that no loaded
/// decoder sets and each list entry that looks like an address but is not
/// one; what to add to the summary line about them.
fn print_warnings(l: &Loaded) -> String {
    for u in &l.unset {
        println!("warning: {u}");
    }
    for d in &l.doubtful {
        println!("warning: {d}");
    }
    let mut said = Vec::new();
    if !l.unset.is_empty() {
        said.push(
            "a rule that reads a field no event holds never fires; \
             if a decoder of yours sets it, give its folder with --decoders",
        );
    }
    if !l.doubtful.is_empty() {
        said.push("a list entry that is not a valid address or network matches no address");
    }
    match l.unset.len() + l.doubtful.len() {
        0 => String::new(),
        n => format!(" ({n} warning(s): {})", said.join("; ")),
    }
}

/// Runs an offline command; returns the process exit code.
pub fn run_offline(cmd: RulesCmd, json: bool) -> anyhow::Result<i32> {
    match cmd {
        RulesCmd::Lint(args) => match load(&args, false)? {
            Ok(l) => {
                let warnings = print_warnings(&l);
                println!(
                    "ok: {} decoders, {} rules{warnings}",
                    l.decoders.names().len(),
                    l.rules.rules().len()
                );
                Ok(0)
            }
            Err(e) => {
                report_load_errors(&e, &args);
                Ok(1)
            }
        },
        RulesCmd::Test(mut args) => {
            if args.replay.is_some() && args.content.dir.is_none() {
                args.content.dir = args.rules.clone();
            }
            let loaded = match load(&args.content, args.replay.is_some())? {
                Ok(l) => l,
                Err(e) => {
                    report_load_errors(&e, &args.content);
                    return Ok(1);
                }
            };
            match &args.replay {
                Some(file) => replay(&loaded, file, &args, json),
                None => {
                    let warnings = print_warnings(&loaded);
                    let failures = soc_rules::run_inline_tests(&loaded.decoders, &loaded.rules);
                    for f in &failures {
                        println!("FAIL {f}");
                    }
                    let tests: usize = loaded.rules.rules().iter().map(|r| r.test_count()).sum();
                    println!(
                        "{} rules, {} rule tests, {} failure(s){warnings}",
                        loaded.rules.rules().len(),
                        tests,
                        failures.len()
                    );
                    Ok(i32::from(!failures.is_empty()))
                }
            }
        }
        RulesCmd::Fields(args) => match load(&args, true)? {
            Ok(l) => {
                let fields = l.decoders.fields_by_decoder();
                let mut out = std::io::stdout().lock();
                for (field, (by_decoding, by)) in &fields {
                    if json {
                        let line = serde_json::json!({
                            "field": field,
                            "set_by_decoding": by_decoding,
                            "decoders": by,
                        });
                        writeln!(out, "{line}")?;
                    } else {
                        let decoding = by_decoding.then_some("(decoding)");
                        let all: Vec<&str> =
                            decoding.into_iter().chain(by.iter().copied()).collect();
                        writeln!(out, "{field}  {}", all.join(", "))?;
                    }
                }
                Ok(0)
            }
            Err(e) => {
                report_load_errors(&e, &args);
                Ok(1)
            }
        },
        RulesCmd::Reload | RulesCmd::List => {
            anyhow::bail!("`rules reload` and `rules list` talk to a collector")
        }
    }
}

/// The fields to print with a detection: those of the event that raised it
/// when that event is its last evidence (a silence is raised by another
/// source's event, whose fields would mislead).
fn raised_by<'e>(
    d: &soc_rules::Detection,
    by: &'e soc_rules::Event,
) -> Option<&'e soc_rules::Fields> {
    (d.evidence.last() == Some(&by.id)).then_some(&by.fields)
}

/// A detection as `--replay --json` prints it: one object per line, keys
/// in name order (the order of the format since it was first printed).
#[derive(serde::Serialize)]
struct JsonDetection<'a> {
    evidence_lines: &'a [u64],
    fields: Option<&'a soc_rules::Fields>,
    group_key: &'a str,
    rule_id: &'a str,
    severity: soc_rules::Severity,
    summary: &'a str,
    suppressed: u64,
    tags: &'a [String],
    timestamp: Option<String>,
    title: &'a str,
}

fn replay(loaded: &Loaded, file: &Path, args: &TestArgs, json: bool) -> anyhow::Result<i32> {
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    // RFC 3164 lines carry no year: take it from the file's modification time
    // so the same file always replays the same way.
    let received_ms = f
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64);
    let options = EngineOptions {
        allowed_lateness_ms: args.lateness.map_or(0, |d| d.as_millis() as i64),
        ..EngineOptions::default()
    };
    let max_pending = options.max_pending;
    let engine = Engine::with_options(Arc::new(loaded.rules.clone()), options);
    let mut state = EngineState::default();
    let path = file.display().to_string();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut by_rule: BTreeMap<std::sync::Arc<str>, u64> = BTreeMap::new();
    let started = Instant::now();
    let mut n = 0u64;
    let reader = std::io::BufReader::with_capacity(1 << 20, f);
    let mut print = |d: soc_rules::Detection,
                     fields: Option<&soc_rules::Fields>,
                     out: &mut dyn Write|
     -> anyhow::Result<()> {
        *by_rule.entry(d.rule_id.clone()).or_default() += 1;
        if json {
            let record = JsonDetection {
                evidence_lines: &d.evidence,
                fields,
                group_key: &d.group_key,
                rule_id: &d.rule_id,
                severity: d.severity,
                summary: &d.summary,
                suppressed: d.suppressed,
                tags: &d.tags,
                timestamp: chrono::DateTime::from_timestamp_millis(d.timestamp_ms)
                    .map(|t| t.to_rfc3339()),
                title: &d.rule_title,
            };
            serde_json::to_writer(&mut *out, &record)?;
            out.write_all(b"\n")?;
        } else {
            writeln!(
                out,
                "{} {:<8} {:<32} {} (lines {:?})",
                chrono::DateTime::from_timestamp_millis(d.timestamp_ms)
                    .map_or_else(|| d.timestamp_ms.to_string(), |t| t.to_rfc3339()),
                d.severity.as_str(),
                d.rule_id,
                shown(&d.summary),
                d.evidence
            )?;
        }
        Ok(())
    };
    // Without a lateness, the event that raised a detection is the one
    // being processed, whose line is at hand: events are decoded with only
    // the fields the rules read (cheaper), and a line that raised a
    // detection is decoded again in full for its fields. With a lateness,
    // a detection may come from a line of an earlier batch: every field is
    // kept.
    let projection = (options.allowed_lateness_ms == 0).then(|| {
        loaded
            .decoders
            .projection(engine.fields_read().iter().copied())
    });
    let decode_line = |raw: &[u8], projection: Option<&soc_rules::Projection>| {
        let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let input = Input {
            raw,
            source_type: &args.source_type,
            agent: "",
            source: "",
            path: &path,
            received_ms,
        };
        match projection {
            Some(p) => loaded.decoders.decode_projected(&input, p),
            None => loaded.decoders.decode(&input),
        }
    };
    let decode = |first_id: u64, batch: &crate::replay::Batch| -> Vec<soc_rules::Event> {
        let mut events = Vec::with_capacity(crate::replay::BATCH_LINES);
        for (i, line) in batch.lines().enumerate() {
            let mut ev = decode_line(line, projection.as_ref());
            ev.id = first_id + i as u64;
            events.push(ev);
        }
        events
    };
    // Lines are decoded in batches on every core (decoding is pure, one
    // line at a time); the engine takes the batches in file order, so the
    // alerts are the same as those of a one-thread run.
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get().min(8));
    crate::replay::decode_in_order(reader, threads, &decode, |events, batch| {
        let mut lines = batch.lines();
        for ev in events {
            n = ev.id;
            let line = lines.next();
            let mut whole = None;
            let mut printed = Ok(());
            engine.process_with(&mut state, ev, |d, by| {
                if printed.is_ok() {
                    let fields = raised_by(&d, by).map(|fields| match (&projection, line) {
                        // `by` is `ev` without a lateness; the check keeps
                        // another event's fields from this line's.
                        (Some(p), Some(line)) if !p.keeps_all() && by.id == ev.id => {
                            &whole.get_or_insert_with(|| decode_line(line, None)).fields
                        }
                        _ => fields,
                    });
                    printed = print(d, fields, &mut out);
                }
            });
            printed?;
        }
        Ok(())
    })?;
    let mut printed = Ok(());
    engine.flush_with(&mut state, |d, by| {
        if printed.is_ok() {
            let fields = raised_by(&d, by);
            printed = print(d, fields, &mut out);
        }
    });
    printed?;
    out.flush()?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "replayed {n} lines in {secs:.3} s ({:.0} lines/s); late events {}; groups evicted {}",
        n as f64 / secs.max(1e-9),
        state.stats.late_events,
        state.stats.evicted.values().sum::<u64>()
    );
    if state.stats.pending_overflow > 0 {
        eprintln!(
            "{} lines were evaluated before --lateness had passed: more than {} were waiting",
            state.stats.pending_overflow, max_pending
        );
    }
    for (rule, count) in &by_rule {
        eprintln!("  {count:>8}  {rule}");
    }
    Ok(0)
}
