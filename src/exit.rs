//! Exit codes and the one-line error report.
//!
//! 0: success. 1: the run failed (or an assertion failed). 2: usage error — a bad flag,
//! a file that cannot be read or parsed. A command returns `Err(UsageError)` (wrapped
//! in `anyhow::Error`) for the latter; any other error is a run failure.

use std::fmt;
use std::process::ExitCode;

/// A problem with what the user asked for: exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Shorthand for returning a usage error from a command.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(message.into()))
}

/// Prints the error (if any) as one line on stderr and picks the exit code.
pub fn report(program: &str, outcome: anyhow::Result<ExitCode>) -> ExitCode {
    match outcome {
        Ok(code) => code,
        Err(err) if err.downcast_ref::<UsageError>().is_some() => {
            eprintln!("{program}: error: {err}");
            ExitCode::from(2)
        }
        Err(err) => {
            eprintln!("{program}: error: {err:#}");
            ExitCode::from(1)
        }
    }
}
