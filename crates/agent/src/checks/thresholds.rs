//! Consul's `StatusHandler`: a check flips only after enough consecutive
//! results agree, so one slow response does not page anyone.

use super::CheckStatus;

/// How many consecutive results it takes to change a check's status
/// (`SuccessBeforePassing`, `FailuresBeforeWarning`, `FailuresBeforeCritical`).
/// Zero everywhere (the default) applies every result at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Thresholds {
    pub success_before_passing: u32,
    /// Zero means "same as `failures_before_critical`", as Consul's agent
    /// defaults it; a warning threshold can never exceed the critical one.
    pub failures_before_warning: u32,
    pub failures_before_critical: u32,
}

/// Counts consecutive successes and failures of one check and decides which
/// results are reported. TTL checks do not use it: the application sets
/// their status directly.
#[derive(Debug)]
pub(crate) struct StatusHandler {
    success_before_passing: u32,
    failures_before_warning: u32,
    failures_before_critical: u32,
    success_counter: u32,
    failures_counter: u32,
}

impl StatusHandler {
    pub(crate) fn new(thresholds: Thresholds) -> Self {
        let failures_before_warning = if thresholds.failures_before_warning == 0 {
            thresholds.failures_before_critical
        } else {
            thresholds.failures_before_warning
        };
        // Counters start at their thresholds so the very first result is
        // applied immediately, whatever it is.
        StatusHandler {
            success_before_passing: thresholds.success_before_passing,
            failures_before_warning,
            failures_before_critical: thresholds.failures_before_critical,
            success_counter: thresholds.success_before_passing,
            failures_counter: thresholds.failures_before_critical,
        }
    }

    /// Feeds one probe result; returns the status to report, if any. A
    /// failure that has reached the warning but not the critical threshold
    /// is reported as `warning` with the failure's output.
    pub(crate) fn record(&mut self, status: CheckStatus) -> Option<CheckStatus> {
        match status {
            CheckStatus::Passing | CheckStatus::Warning => {
                self.success_counter = self.success_counter.saturating_add(1);
                self.failures_counter = 0;
                if self.success_counter >= self.success_before_passing {
                    return Some(status);
                }
                tracing::debug!(
                    success_count = self.success_counter,
                    success_threshold = self.success_before_passing,
                    "check passed but has not reached success threshold"
                );
                None
            }
            CheckStatus::Critical => {
                self.failures_counter = self.failures_counter.saturating_add(1);
                self.success_counter = 0;
                if self.failures_counter >= self.failures_before_critical {
                    return Some(CheckStatus::Critical);
                }
                if self.failures_counter >= self.failures_before_warning {
                    return Some(CheckStatus::Warning);
                }
                tracing::debug!(
                    failure_count = self.failures_counter,
                    warning_threshold = self.failures_before_warning,
                    failure_threshold = self.failures_before_critical,
                    "check failed but has not reached warning/failure threshold"
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CheckStatus::{Critical, Passing, Warning};

    fn run(thresholds: Thresholds, results: &[CheckStatus]) -> Vec<Option<CheckStatus>> {
        let mut handler = StatusHandler::new(thresholds);
        results.iter().map(|&r| handler.record(r)).collect()
    }

    #[test]
    fn zero_thresholds_apply_every_result() {
        let results = [Passing, Critical, Warning, Passing];
        let reported: Vec<_> = results.iter().copied().map(Some).collect();
        assert_eq!(run(Thresholds::default(), &results), reported);
    }

    #[test]
    fn first_result_applies_immediately_then_counts() {
        let thresholds = Thresholds {
            success_before_passing: 2,
            failures_before_warning: 0,
            failures_before_critical: 3,
        };
        assert_eq!(
            run(
                thresholds,
                &[Critical, Passing, Passing, Critical, Critical, Critical, Passing]
            ),
            vec![
                Some(Critical),
                None,
                Some(Passing),
                None,
                None,
                Some(Critical),
                None
            ]
        );
    }

    #[test]
    fn failures_reach_warning_before_critical() {
        let thresholds = Thresholds {
            success_before_passing: 0,
            failures_before_warning: 1,
            failures_before_critical: 3,
        };
        assert_eq!(
            run(thresholds, &[Passing, Critical, Critical, Critical]),
            vec![Some(Passing), Some(Warning), Some(Warning), Some(Critical)]
        );
    }

    #[test]
    fn a_warning_result_counts_as_success() {
        let thresholds = Thresholds {
            success_before_passing: 2,
            failures_before_warning: 0,
            failures_before_critical: 2,
        };
        assert_eq!(
            run(thresholds, &[Critical, Warning, Critical, Warning, Warning]),
            vec![Some(Critical), None, None, None, Some(Warning)]
        );
    }
}
