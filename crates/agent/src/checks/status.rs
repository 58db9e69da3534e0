//! The three health states a check can report.

use std::fmt;
use std::str::FromStr;

/// A check's health, spelled on the wire as Consul spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckStatus {
    Passing,
    Warning,
    Critical,
}

impl CheckStatus {
    /// The wire spelling: `passing`, `warning` or `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Passing => "passing",
            CheckStatus::Warning => "warning",
            CheckStatus::Critical => "critical",
        }
    }
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not one of `passing`, `warning`, `critical` (Consul compares
/// case-sensitively, so `Passing` is rejected too).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid check status: '{0}'")]
pub struct ParseCheckStatusError(pub String);

impl FromStr for CheckStatus {
    type Err = ParseCheckStatusError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "passing" => Ok(CheckStatus::Passing),
            "warning" => Ok(CheckStatus::Warning),
            "critical" => Ok(CheckStatus::Critical),
            other => Err(ParseCheckStatusError(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_the_wire_spelling() {
        for status in [
            CheckStatus::Passing,
            CheckStatus::Warning,
            CheckStatus::Critical,
        ] {
            assert_eq!(status.as_str().parse::<CheckStatus>(), Ok(status));
        }
        assert!("Passing".parse::<CheckStatus>().is_err());
        assert!("maintenance".parse::<CheckStatus>().is_err());
    }
}
