//! What validation reports: a [`Finding`] with a severity, a place and a message.
//!
//! Every problem meshrig finds in a configuration set is a `Finding`, printed as
//! `file:line: field.path: message`. The message says what is wrong and, in
//! parentheses, what would be right. Findings are collected, never thrown: loading a
//! set reports all of them at once.

use std::fmt;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The configuration is invalid: Istio would reject it, or it cannot do what it says.
    Error,
    /// Valid, but probably not what was meant (a later duplicate wins, an unchecked
    /// subset reference, two VirtualServices claiming one host).
    Warning,
    /// Information: a document meshrig skipped, a default it assumed.
    Note,
}

impl Severity {
    /// `error`, `warning` or `note`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem (or remark) about a configuration set.
///
/// `Display` is exactly `file:line: field.path: message`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// How bad it is.
    pub severity: Severity,
    /// The display path of the file, as given to [`ConfigSet::load`](super::ConfigSet::load).
    pub file: String,
    /// 1-based line in `file`.
    pub line: u32,
    /// Dotted field path inside the document (`spec.http[0].retries.perTryTimeout`),
    /// or a pseudo-path such as `(yaml)` for problems that are not about one field.
    pub path: String,
    /// What is wrong, and in parentheses what would be right.
    pub message: String,
}

impl Finding {
    /// Shorthand for an error.
    pub fn error(file: &str, line: u32, path: &str, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, file, line, path, message)
    }

    /// Shorthand for a warning.
    pub fn warning(file: &str, line: u32, path: &str, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, file, line, path, message)
    }

    /// Shorthand for a note.
    pub fn note(file: &str, line: u32, path: &str, message: impl Into<String>) -> Self {
        Self::new(Severity::Note, file, line, path, message)
    }

    /// A finding of any severity.
    pub fn new(
        severity: Severity,
        file: &str,
        line: u32,
        path: &str,
        message: impl Into<String>,
    ) -> Self {
        Finding {
            severity,
            file: file.to_owned(),
            line,
            path: path.to_owned(),
            message: message.into(),
        }
    }

    /// True for [`Severity::Error`].
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file, self.line, self.path, self.message
        )
    }
}

/// Counts of findings by severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub errors: usize,
    pub warnings: usize,
    pub notes: usize,
}

impl Tally {
    /// Counts `findings`.
    pub fn of(findings: &[Finding]) -> Self {
        let mut t = Tally::default();
        for f in findings {
            match f.severity {
                Severity::Error => t.errors += 1,
                Severity::Warning => t.warnings += 1,
                Severity::Note => t.notes += 1,
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_file_line_path_message() {
        let f = Finding::error("a.yaml", 7, "spec.hosts[0]", "bad (good)");
        assert_eq!(f.to_string(), "a.yaml:7: spec.hosts[0]: bad (good)");
        assert!(f.is_error());
        assert!(!Finding::note("a", 1, "kind", "x").is_error());
    }

    #[test]
    fn tally_counts_each_severity() {
        let fs = [
            Finding::error("a", 1, "p", "m"),
            Finding::error("a", 2, "p", "m"),
            Finding::warning("a", 3, "p", "m"),
        ];
        let t = Tally::of(&fs);
        assert_eq!((t.errors, t.warnings, t.notes), (2, 1, 0));
    }
}
