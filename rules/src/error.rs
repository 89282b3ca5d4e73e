//! Load errors for decoder and rule files.
//!
//! A broken file must say *where* it is broken, and all of it at once: the
//! operator fixes every mistake in one pass instead of one per reload. Each
//! [`LoadError`] carries the file, the line and the field it is about;
//! [`LoadErrors`] is the whole list. The caller's next step is always the same:
//! refuse the new content and keep running the previous one.

use std::fmt;

/// One error in a decoder or rule file.
///
/// Displayed as `{file}:{line}: {field}: {message}`; the line and the field are
/// left out when unknown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LoadError {
    /// The file the error is in, as given in [`crate::SourceFile::name`].
    pub file: String,
    /// 1-based line number, when it could be determined.
    pub line: Option<usize>,
    /// The key or path inside the file, e.g. `condition.all[1].cidr`.
    pub field: Option<String>,
    /// What is wrong, as a sentence fragment.
    pub message: String,
    /// A decoder name or rule id defined a second time (see
    /// [`LoadErrors::defines_twice`]).
    pub repeats_a_name: bool,
}

impl LoadError {
    pub(crate) fn new(
        file: &str,
        line: Option<usize>,
        field: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        LoadError {
            file: file.to_string(),
            line,
            field: field.map(str::to_string),
            message: message.into(),
            repeats_a_name: false,
        }
    }

    /// The error of a decoder name or rule id defined a second time.
    pub(crate) fn repeated_name(
        file: &str,
        line: usize,
        field: &str,
        message: impl Into<String>,
    ) -> Self {
        LoadError {
            repeats_a_name: true,
            ..LoadError::new(file, Some(line), Some(field), message)
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every error found while loading a set of files, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LoadErrors(pub Vec<LoadError>);

impl LoadErrors {
    /// Whether some of the errors are a decoder name or rule id defined a
    /// second time, as when a folder holding a copy of the shipped set is
    /// loaded after the shipped set itself.
    pub fn defines_twice(&self) -> bool {
        self.0.iter().any(|e| e.repeats_a_name)
    }
}

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// One failed inline test case of a decoder or rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestFailure {
    /// The file that holds the test case.
    pub file: String,
    /// The line where the test case is written (its name, or its input
    /// line).
    pub line: usize,
    /// Which test: `decoder <name> test <n>` or `rule <id> test <n>`, plus the
    /// test's own name when it has one.
    pub name: String,
    /// What differed from the expectation.
    pub message: String,
}

impl fmt::Display for TestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file, self.line, self.name, self.message
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_omits_unknown_parts() {
        let full = LoadError::new("a.yml", Some(3), Some("severity"), "unknown severity `hi`");
        assert_eq!(full.to_string(), "a.yml:3: severity: unknown severity `hi`");
        let bare = LoadError::new("a.yml", None, None, "empty");
        assert_eq!(bare.to_string(), "a.yml: empty");
        let all = LoadErrors(vec![full, bare]);
        assert_eq!(
            all.to_string(),
            "a.yml:3: severity: unknown severity `hi`\na.yml: empty"
        );
    }
}
