//! The collector's shared state: one value every task holds an `Arc` of.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use soc_rules::{Decoders, RuleSet, SourceFile};

use crate::alerts::AlertStore;
use crate::auth::Auth;
use crate::config::Settings;
use crate::db::Db;
use crate::journal::Journal;
use crate::metrics::Metrics;

/// Decoders and rules in force; swapped whole on reload.
pub struct Content {
    pub decoders: Decoders,
    pub rules: Arc<RuleSet>,
    /// Fields the rules read that no loaded decoder sets: a rule reading
    /// one never fires. Warnings; the content loads all the same.
    pub unset: Vec<soc_rules::UnsetField>,
    /// List entries that look like an address or network but are not one:
    /// they match no address. Warnings too.
    pub doubtful: Vec<soc_rules::DoubtfulEntry>,
}

/// Why decoder or rule files could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// `twice_with_builtin`: some names are defined twice while the
    /// shipped set is loaded too (a modified copy of it in a folder).
    #[error(
        "{errors}{}",
        if *.twice_with_builtin {
            "\nhint: the shipped decoders and rules are loaded too (`builtin` under [rules]); \
             to run a modified copy of them from rules_dir / decoders_dir, set `builtin = false`"
        } else {
            ""
        }
    )]
    Invalid {
        errors: soc_rules::LoadErrors,
        twice_with_builtin: bool,
    },
}

/// Reads every `*.yml` / `*.yaml` file below `dir`, sorted by path.
pub fn read_yaml_dir(dir: &Path) -> Result<Vec<SourceFile>, ContentError> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).map_err(|source| ContentError::Read {
            path: d.display().to_string(),
            source,
        })?;
        for item in rd {
            let item = item.map_err(|source| ContentError::Read {
                path: d.display().to_string(),
                source,
            })?;
            let p = item.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "yml" || e == "yaml") {
                let text = std::fs::read_to_string(&p).map_err(|source| ContentError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                files.push(SourceFile {
                    name: p.display().to_string(),
                    text,
                });
            }
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

impl Content {
    /// Logs each of [`Content::warnings`].
    pub fn log_warnings(&self) {
        for w in self.warnings() {
            tracing::warn!("{w}");
        }
    }

    /// Every warning about the content, as text (see [`Content::unset`],
    /// [`Content::doubtful`]).
    pub fn warnings(&self) -> Vec<String> {
        let unset = self.unset.iter().map(ToString::to_string);
        unset
            .chain(self.doubtful.iter().map(ToString::to_string))
            .collect()
    }

    /// Loads the shipped content and/or the configured folders.
    pub fn load(settings: &Settings) -> Result<Content, ContentError> {
        let mut dec_files = if settings.builtin_rules {
            soc_rules::builtin_decoder_sources()
        } else {
            Vec::new()
        };
        let mut rule_files = if settings.builtin_rules {
            soc_rules::builtin_rule_sources()
        } else {
            Vec::new()
        };
        if let Some(d) = &settings.decoders_dir {
            dec_files.extend(read_yaml_dir(d)?);
        }
        if let Some(d) = &settings.rules_dir {
            rule_files.extend(read_yaml_dir(d)?);
        }
        let list_files = load_lists(settings)?;
        let decoders = Decoders::from_sources(&dec_files);
        let rules = RuleSet::from_sources_with_lists(&rule_files, &list_files);
        let errors = match (decoders, rules) {
            (Ok(decoders), Ok(rules)) => {
                return Ok(Content {
                    unset: soc_rules::unset_fields(&rules, &decoders, &rule_files),
                    doubtful: soc_rules::doubtful_entries(&list_files),
                    decoders,
                    rules: Arc::new(rules),
                });
            }
            (Err(mut a), Err(b)) => {
                a.0.extend(b.0);
                a
            }
            (Err(e), _) | (_, Err(e)) => e,
        };
        Err(ContentError::Invalid {
            twice_with_builtin: settings.builtin_rules && errors.defines_twice(),
            errors,
        })
    }
}

/// The shipped lists, replaced by name by the files of `rules.lists_dir`.
fn load_lists(settings: &Settings) -> Result<Vec<SourceFile>, ContentError> {
    let stem = |name: &str| {
        Path::new(name)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let mut own = Vec::new();
    if let Some(dir) = &settings.lists_dir {
        let rd = std::fs::read_dir(dir).map_err(|source| ContentError::Read {
            path: dir.display().to_string(),
            source,
        })?;
        for item in rd {
            let p = item
                .map_err(|source| ContentError::Read {
                    path: dir.display().to_string(),
                    source,
                })?
                .path();
            if p.is_file()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                let text = std::fs::read_to_string(&p).map_err(|source| ContentError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                own.push(SourceFile::new(p.display().to_string(), text));
            }
        }
    }
    own.sort_by(|a, b| a.name.cmp(&b.name));
    let mut files: Vec<SourceFile> = if settings.builtin_rules {
        soc_rules::builtin_list_sources()
            .into_iter()
            .filter(|b| !own.iter().any(|o| stem(&o.name) == stem(&b.name)))
            .collect()
    } else {
        Vec::new()
    };
    files.extend(own);
    Ok(files)
}

/// Everything the listeners and workers share.
pub struct App {
    pub settings: Settings,
    pub db: Db,
    pub journal: Journal,
    pub alerts: AlertStore,
    pub auth: Auth,
    pub metrics: Metrics,
    content: RwLock<Arc<Content>>,
    /// Permits to append a batch; bounds batches held in memory.
    pub ingest_slots: tokio::sync::Semaphore,
    /// Batches each agent had journalled lately, for [`soc_protocol::AFTER_HEADER`].
    pub batch_order: crate::ingest::BatchOrder,
    /// Last journal sequence processed by detection, for backpressure.
    pub detection_cursor: AtomicU64,
    /// Receive time of the newest journalled line, for the ingest lag gauge.
    pub newest_received_ms: AtomicI64,
    /// The append-only audit log of API changes.
    pub audit: crate::audit::AuditLog,
    /// Failed authentications per peer address.
    pub auth_limiter: crate::ratelimit::FailureLimiter,
    /// Permits for `alerts follow` streams.
    pub followers: Arc<tokio::sync::Semaphore>,
    /// Held by the detection worker for each step (read, detect, commit) and
    /// by a backup or restore, so they see or replace the committed state
    /// between two steps. The value counts restores: a worker that finds it
    /// changed reloads its cursor and rule state from the database.
    pub detection_gate: std::sync::Mutex<u64>,
    /// Open groups per rule id as of detection's last step, for
    /// `GET /api/v1/rules`; one entry per rule with a state (bounded by the
    /// rules loaded).
    rule_groups: RwLock<Arc<HashMap<String, u64>>>,
}

impl App {
    pub fn new(settings: Settings, db: Db, content: Content) -> Result<App, crate::db::DbError> {
        let journal = Journal::open(db.clone())?;
        let cursor = db.meta_u64(crate::db::meta_keys::DETECTION_CURSOR)?;
        let metrics = Metrics::new();
        metrics.rule_fields_unset.set(content.unset.len() as i64);
        Ok(App {
            ingest_slots: tokio::sync::Semaphore::new(settings.max_concurrent_batches),
            batch_order: crate::ingest::BatchOrder::default(),
            alerts: AlertStore::open(db.clone())?,
            auth: Auth::new(db.clone()),
            metrics,
            content: RwLock::new(Arc::new(content)),
            detection_cursor: AtomicU64::new(cursor),
            newest_received_ms: AtomicI64::new(0),
            audit: crate::audit::AuditLog::open(&db)?,
            auth_limiter: crate::ratelimit::FailureLimiter::new(
                crate::ratelimit::LimiterSettings {
                    burst: settings.api.auth_failure_burst,
                    refill: settings.api.auth_failure_refill,
                    max_peers: settings.api.auth_max_peers,
                },
            ),
            followers: Arc::new(tokio::sync::Semaphore::new(settings.api.max_followers)),
            detection_gate: std::sync::Mutex::new(0),
            rule_groups: RwLock::default(),
            settings,
            journal,
            db,
        })
    }

    /// Open groups per rule id, as detection last published them.
    pub fn rule_groups(&self) -> Arc<HashMap<String, u64>> {
        match self.rule_groups.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Publishes the open groups per rule id (detection, after each step).
    pub fn set_rule_groups(&self, groups: HashMap<String, u64>) {
        let groups = Arc::new(groups);
        match self.rule_groups.write() {
            Ok(mut g) => *g = groups,
            Err(poisoned) => *poisoned.into_inner() = groups,
        }
    }

    /// The decoders and rules in force.
    pub fn content(&self) -> Arc<Content> {
        match self.content.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Holds the detection worker between two steps until the guard drops.
    pub fn hold_detection(&self) -> std::sync::MutexGuard<'_, u64> {
        self.detection_gate
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub fn cursor(&self) -> u64 {
        self.detection_cursor.load(Ordering::Acquire)
    }

    /// Re-reads the decoder, rule and list files and swaps them in whole.
    /// On any error the running content stays and every error is returned.
    /// Rule state is carried over by the detector: rules whose text did not
    /// change keep their state (see `soc_rules::Engine::reconcile`).
    pub fn reload_content(&self) -> Result<Arc<Content>, ContentError> {
        let new = Arc::new(Content::load(&self.settings)?);
        match self.content.write() {
            Ok(mut c) => *c = new.clone(),
            Err(poisoned) => *poisoned.into_inner() = new.clone(),
        }
        tracing::info!(
            decoders = new.decoders.names().len(),
            rules = new.rules.rules().len(),
            "detection content reloaded"
        );
        new.log_warnings();
        self.metrics.rule_fields_unset.set(new.unset.len() as i64);
        Ok(new)
    }

    /// The engine bounds and lateness from the configuration.
    pub fn engine_options(&self) -> soc_rules::EngineOptions {
        soc_rules::EngineOptions {
            allowed_lateness_ms: self.settings.allowed_lateness.as_millis() as i64,
            max_pending: self.settings.max_held_back,
            max_groups_per_rule: self.settings.max_groups_per_rule,
            max_total_groups: self.settings.max_total_groups,
            max_evidence: self.settings.max_evidence.max(1),
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch (the collector's own clock,
/// never used by detection).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
