//! Operator-set labels of the agent (`[agent.labels]`), sent on every batch
//! as `Batch.labels` so that the province sees which agency a line, an
//! event or an alert belongs to.
//!
//! Keys are free, within `[a-z0-9_.]{1,32}`; three are documented and used
//! by the collector's filters and dashboards:
//!
//! * `agency`: the agency's short name (`so-tai-chinh`, `ubnd-xa-an-binh`).
//! * `level`: one of `province`, `department`, `district`, `commune`.
//! * `district`: the district's name, for district and commune agencies.
//!
//! Values are at most [`MAX_VALUE_CHARS`] characters, and an agent has at
//! most [`MAX_LABELS`] labels, so they cost little on every batch.

/// Most labels one agent may carry.
pub const MAX_LABELS: usize = 16;
/// Longest key, in bytes (keys are ASCII).
pub const MAX_KEY_LEN: usize = 32;
/// Longest value, in characters.
pub const MAX_VALUE_CHARS: usize = 128;
/// The values `level` may take.
pub const LEVELS: [&str; 4] = ["province", "department", "district", "commune"];

/// What is wrong with one label; the config loader adds file and line.
pub fn check(key: &str, value: &str) -> Result<(), String> {
    let key_ok = !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
    if !key_ok {
        return Err(format!(
            "label key `{key}` must be 1 to {MAX_KEY_LEN} characters among a-z 0-9 _ ."
        ));
    }
    if value.trim().is_empty() {
        return Err(format!("label `{key}` has an empty value"));
    }
    if value.chars().count() > MAX_VALUE_CHARS {
        return Err(format!(
            "label `{key}` is longer than {MAX_VALUE_CHARS} characters"
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("label `{key}` holds a control character"));
    }
    if key == "level" && !LEVELS.contains(&value) {
        return Err(format!(
            "label `level` is `{value}`; it must be one of {}",
            LEVELS.join(", ")
        ));
    }
    Ok(())
}

/// Checks a whole set of labels (count included).
#[cfg(test)]
pub fn check_all(labels: &std::collections::BTreeMap<String, String>) -> Result<(), String> {
    if labels.len() > MAX_LABELS {
        return Err(format!("at most {MAX_LABELS} labels, not {}", labels.len()));
    }
    labels.iter().try_for_each(|(k, v)| check(k, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_of_labels() {
        let cases: &[(&str, &str, bool)] = &[
            ("agency", "so-tai-chinh", true),
            ("level", "commune", true),
            ("level", "village", false),
            ("district", "Huyện An Bình", true),
            ("site.room_2", "b", true),
            ("Agency", "x", false),
            ("agency-name", "x", false),
            ("", "x", false),
            (&"k".repeat(33), "x", false),
            ("agency", "", false),
            ("agency", &"é".repeat(128), true),
            ("agency", &"é".repeat(129), false),
            ("agency", "a\nb", false),
        ];
        for (k, v, ok) in cases {
            assert_eq!(check(k, v).is_ok(), *ok, "{k} = {v:?}");
        }
        let many: std::collections::BTreeMap<String, String> =
            (0..17).map(|i| (format!("k{i}"), "v".to_owned())).collect();
        assert!(check_all(&many).is_err());
    }
}
