//! Agent log lines in Serf's shape (`2006/01/02 15:04:05 [INFO] text`),
//! fanned out to `serf monitor` clients through a tracing layer.

use std::fmt::Write as _;

use serf_rpc::{LogLevel, LogLine};
use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Sends every log event as a [`LogLine`] to `monitor` subscribers.
pub struct MonitorLayer {
    tx: broadcast::Sender<LogLine>,
}

impl MonitorLayer {
    pub fn new(tx: broadcast::Sender<LogLine>) -> Self {
        MonitorLayer { tx }
    }
}

struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

fn level(l: &Level) -> LogLevel {
    match *l {
        Level::TRACE => LogLevel::Trace,
        Level::DEBUG => LogLevel::Debug,
        Level::INFO => LogLevel::Info,
        Level::WARN => LogLevel::Warn,
        Level::ERROR => LogLevel::Err,
    }
}

/// Seconds since the epoch as Go's `2006/01/02 15:04:05` in UTC.
pub fn timestamp(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm), for the proleptic
    // Gregorian calendar.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}/{m:02}/{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl<S: Subscriber> Layer<S> for MonitorLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let mut text = Text(String::new());
        event.record(&mut text);
        let lvl = level(event.metadata().level());
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let line = format!("{} [{}] {}", timestamp(secs), lvl.as_str(), text.0);
        let _ = self.tx.send(LogLine {
            level: lvl,
            text: line,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_timestamps() {
        assert_eq!(timestamp(0), "1970/01/01 00:00:00");
        assert_eq!(timestamp(1_704_164_645), "2024/01/02 03:04:05");
        assert_eq!(timestamp(951_782_400), "2000/02/29 00:00:00");
    }
}
