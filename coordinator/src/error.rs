//! The error of every `scanfleet` command, split by exit status: 2 for bad input
//! or usage (found before anything was sent or connected), 1 for trouble while
//! running.

use std::fmt;

use scanfleet_common::config::ConfigError;

/// Errors of the `scanfleet` command, split by exit status.
#[derive(Debug)]
pub enum CliError {
    /// Bad input or usage: exit 2, nothing was sent.
    Input(String),
    /// The scan ran into trouble: exit 1. The chain of causes is kept and printed.
    Runtime(anyhow::Error),
}

impl CliError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Input(_) => 2,
            CliError::Runtime(_) => 1,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Input(m) => f.write_str(m),
            CliError::Runtime(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for CliError {}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        CliError::Runtime(e)
    }
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        CliError::Input(e.0)
    }
}
