//! Log filters (`log.level`, `RUST_LOG`), checked before they are used.
//!
//! `tracing`'s filter syntax reads a bare word as the name of a module to
//! log everything of: `level = "debg"` or `RUST_LOG=warning` is a valid
//! filter that shows only the events of a module `debg` (or `warning`),
//! none at all, and the program runs silent. A bare word that is not a
//! level but misspells one, or names a level in another system's words
//! (`warning`, `err`, `notice`, `verbose`), is refused here, with the level
//! it likely means. Other bare words (`soc_collector`, `hyper`) stay
//! module names, as the syntax has them.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// The levels, as the filter syntax writes them.
const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Other systems' names of a level (syslog, Python, log4j), and the
/// level each means here.
const ALIASES: [(&str, &str); 9] = [
    ("warning", "warn"),
    ("err", "error"),
    ("crit", "error"),
    ("critical", "error"),
    ("fatal", "error"),
    ("notice", "info"),
    ("verbose", "debug"),
    ("all", "trace"),
    ("none", "off"),
];

/// The filter `text` (`info`, `info,soc_collector=debug`), or why it is
/// refused: its syntax, or a bare word that stands for a level it does
/// not name.
pub fn log_filter(text: &str) -> Result<EnvFilter, String> {
    for directive in text.split(',').map(str::trim) {
        if directive.is_empty() || directive.contains(['=', '[', ':']) {
            continue;
        }
        if directive.parse::<LevelFilter>().is_ok() {
            continue;
        }
        let word = directive.to_ascii_lowercase();
        let meant = ALIASES
            .iter()
            .find(|(alias, _)| *alias == word)
            .map(|(_, level)| *level)
            .or_else(|| {
                LEVELS
                    .into_iter()
                    .find(|level| crate::misspells(&word, level))
            });
        if let Some(level) = meant {
            return Err(format!(
                "`{directive}` is not a level (one of {}); did you mean `{level}`? \
                 (a bare word other than a level names a module to log, and would \
                 leave the log empty)",
                LEVELS.join(", ")
            ));
        }
    }
    EnvFilter::builder()
        .parse(text)
        .map_err(|e| format!("`{text}` is not a log filter: {e}"))
}

/// The filter to log with: `RUST_LOG`'s when it is set (and not empty),
/// else `configured` (`log.level`, or the program's default). A `RUST_LOG`
/// that [`log_filter`] refuses is set aside for `configured`, and the
/// reason comes back, for the program to log once logging runs: a
/// mistyped variable should not leave the log silent, nor pass unseen.
pub fn log_filter_from_env(configured: &str) -> (EnvFilter, Option<String>) {
    let fallback = || log_filter(configured).unwrap_or_else(|_| EnvFilter::new("info"));
    match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => match log_filter(&v) {
            Ok(filter) => (filter, None),
            Err(why) => (
                fallback(),
                Some(format!("RUST_LOG set aside for `{configured}`: {why}")),
            ),
        },
        Ok(_) => (fallback(), None),
        Err(std::env::VarError::NotPresent) => (fallback(), None),
        Err(std::env::VarError::NotUnicode(_)) => (
            fallback(),
            Some(format!(
                "RUST_LOG set aside for `{configured}`: it is not UTF-8"
            )),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn levels_and_module_filters_are_taken() {
        for good in [
            "info",
            "DEBUG",
            "warn",
            "off",
            "info,soc_collector=debug",
            "soc_collector",
            "hyper=warn,tower_http::trace=debug",
            "",
        ] {
            assert!(
                log_filter(good).is_ok(),
                "{good}: {:?}",
                log_filter(good).err()
            );
        }
    }

    #[test]
    fn a_word_that_stands_for_a_level_is_refused_with_the_level_it_means() {
        for (bad, meant) in [
            ("debg", "debug"),
            ("Inof", "info"),
            ("warning", "warn"),
            ("info,err", "error"),
            ("soc_collector=debug,notice", "info"),
            ("tarce", "trace"),
        ] {
            let message = log_filter(bad).err().unwrap_or_default();
            assert!(
                message.contains(&format!("did you mean `{meant}`?")),
                "{bad}: {message}"
            );
        }
    }

    #[test]
    fn bad_syntax_is_refused() {
        let message = log_filter("soc_collector=loud").err().unwrap_or_default();
        assert!(message.contains("is not a log filter"), "{message}");
    }
}
