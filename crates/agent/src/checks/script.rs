//! Script checks (`Args`): run a program, map its exit code the Nagios way
//! (0 passing, 1 warning, anything else critical).

use std::io;
use std::os::fd::OwnedFd;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};

use super::output::{go_os_error, TailBuffer};
use super::scheduler::ProbeResult;
use super::CheckStatus;
use crate::go_duration::format_go_duration;

/// A script check: `args[0]` run with `args[1..]`, no shell involved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptCheck {
    pub args: Vec<String>,
    pub interval: Duration,
    /// After this the whole process group is killed (Consul's default 30s).
    pub timeout: Duration,
    /// Only the last this-many bytes of stdout+stderr are reported.
    pub output_max_size: usize,
}

impl ScriptCheck {
    /// One run. Start failures and timeouts bypass the thresholds, exactly
    /// as Consul's `CheckMonitor` reports them straight to local state.
    pub(crate) async fn probe(&self) -> ProbeResult {
        let (mut child, mut output_pipe) = match self.spawn() {
            Ok(spawned) => spawned,
            Err(error) => {
                let text = spawn_error_text(&self.args, &error);
                tracing::error!(error = %text, "check failed to invoke");
                return ProbeResult::new(CheckStatus::Critical, text).bypassing_thresholds();
            }
        };
        // If this task is aborted (check stopped or replaced) mid-run, the
        // guard kills the script and everything it started.
        let mut group = ProcessGroupGuard::new(&child);
        let mut output = TailBuffer::new(self.output_max_size);
        let finished = tokio::time::timeout(
            self.timeout,
            run_to_exit(&mut child, &mut output_pipe, &mut output),
        )
        .await;
        match finished {
            Ok(exit) => {
                group.disarm();
                let text = output.to_script_output();
                match exit {
                    Ok(status) => ProbeResult::new(exit_status(status), text),
                    Err(error) => ProbeResult::new(CheckStatus::Critical, go_os_error(&error)),
                }
            }
            Err(_) => {
                group.kill();
                let mut message = format!(
                    "Timed out ({}) running check",
                    format_go_duration(self.timeout)
                );
                let text = output.to_script_output();
                if !text.is_empty() {
                    message.push_str("\n\n");
                    message.push_str(&text);
                }
                tracing::warn!(timeout = %format_go_duration(self.timeout), "timed out running check");
                // Wait for the exit so two runs of one check never overlap.
                if let Err(error) = child.wait().await {
                    tracing::warn!(%error, "check failed to reap its script after timeout");
                }
                group.disarm();
                ProbeResult::new(CheckStatus::Critical, message).bypassing_thresholds()
            }
        }
    }

    /// Starts the script in its own process group with stdout and stderr on
    /// one pipe, so the two streams interleave as the script wrote them.
    fn spawn(&self) -> io::Result<(Child, pipe::Receiver)> {
        let Some((program, args)) = self.args.split_first() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no command"));
        };
        let (writer, reader) = pipe::pipe()?;
        let writer: OwnedFd = writer.into_blocking_fd()?;
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(writer.try_clone()?))
            .stderr(Stdio::from(writer))
            .process_group(0);
        let child = command.spawn()?;
        // Dropping the command closes our copies of the pipe's write end, so
        // the reader sees end-of-file once the script's side is closed.
        drop(command);
        Ok((child, reader))
    }
}

/// Collects output until every writer has closed the pipe, then waits for
/// the exit status (Go's `cmd.Wait` does the same).
async fn run_to_exit(
    child: &mut Child,
    pipe: &mut pipe::Receiver,
    output: &mut TailBuffer,
) -> io::Result<ExitStatus> {
    let mut chunk = vec![0u8; 8 * 1024];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => output.write(&chunk[..n]),
            Err(error) => {
                tracing::debug!(%error, "check output pipe failed");
                break;
            }
        }
    }
    child.wait().await
}

fn exit_status(status: ExitStatus) -> CheckStatus {
    match status.code() {
        Some(0) => CheckStatus::Passing,
        Some(1) => CheckStatus::Warning,
        // Other codes, and death by a signal.
        _ => CheckStatus::Critical,
    }
}

/// Go's `exec` error texts for a program that cannot be started.
fn spawn_error_text(args: &[String], error: &io::Error) -> String {
    let program = args.first().map(String::as_str).unwrap_or_default();
    if program.is_empty() {
        return "exec: no command".to_owned();
    }
    if error.kind() == io::ErrorKind::NotFound && !program.contains('/') {
        return format!("exec: {program:?}: executable file not found in $PATH");
    }
    format!("fork/exec {program}: {}", go_os_error(error))
}

/// Kills a script's whole process group unless disarmed: a check that
/// spawns `sleep 600 &` must not leak the sleeper on timeout or stop.
struct ProcessGroupGuard {
    pgid: Option<i32>,
}

impl ProcessGroupGuard {
    fn new(child: &Child) -> Self {
        ProcessGroupGuard {
            pgid: child.id().and_then(|pid| i32::try_from(pid).ok()),
        }
    }

    fn kill(&mut self) {
        if let Some(pgid) = self.pgid {
            // SAFETY: kill(2) takes plain integers and touches no memory of
            // ours; the negative pid addresses the group the child leads
            // (it was started with process_group(0), so pgid == pid).
            let result = unsafe { libc::kill(-pgid, libc::SIGKILL) };
            if result != 0 {
                let error = io::Error::last_os_error();
                tracing::warn!(%error, "check failed to kill after timeout");
            }
        }
    }

    fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for ProcessGroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration) -> ScriptCheck {
        ScriptCheck {
            args: vec!["sh".into(), "-c".into(), script.into()],
            interval: Duration::from_secs(1),
            timeout,
            output_max_size: 4096,
        }
    }

    #[tokio::test]
    async fn exit_codes_map_to_statuses() {
        let timeout = Duration::from_secs(10);
        let cases = [
            ("echo ok; exit 0", CheckStatus::Passing, "ok\n"),
            ("echo slow >&2; exit 1", CheckStatus::Warning, "slow\n"),
            (
                "echo out; echo err >&2; exit 2",
                CheckStatus::Critical,
                "out\nerr\n",
            ),
            ("kill -9 $$", CheckStatus::Critical, ""),
        ];
        for (script, status, output) in cases {
            let result = sh(script, timeout).probe().await;
            assert_eq!(
                (result.status, result.output.as_str()),
                (status, output),
                "{script}"
            );
            assert!(!result.bypass_thresholds);
        }
    }

    #[tokio::test]
    async fn output_keeps_the_tail_with_consul_prefix() {
        let script = "head -c 5000 /dev/zero | tr '\\0' a; printf END";
        let result = sh(script, Duration::from_secs(10)).probe().await;
        let expected = format!("Captured 4096 of 5003 bytes\n...\n{}END", "a".repeat(4093));
        assert_eq!(result.output, expected);
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let script = format!(
            "sleep 30 & echo $! > {}; echo started; wait",
            pid_file.display()
        );
        let started = std::time::Instant::now();
        let result = sh(&script, Duration::from_millis(300)).probe().await;
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(result.status, CheckStatus::Critical);
        assert_eq!(
            result.output,
            "Timed out (300ms) running check\n\nstarted\n"
        );
        assert!(result.bypass_thresholds);
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The background sleeper is gone too (it may linger as a zombie of
        // the killed shell for an instant, so allow a short grace period).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while process_alive(pid) {
            assert!(std::time::Instant::now() < deadline, "sleep {pid} survived");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn process_alive(pid: i32) -> bool {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Field 3 is the state; a zombie ("Z") is already dead.
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
            && !stat.is_empty()
    }

    #[tokio::test]
    async fn missing_program_is_critical_with_go_text() {
        let check = ScriptCheck {
            args: vec!["praetor-no-such-program".into()],
            ..sh("", Duration::from_secs(1))
        };
        let result = check.probe().await;
        assert_eq!(result.status, CheckStatus::Critical);
        assert_eq!(
            result.output,
            "exec: \"praetor-no-such-program\": executable file not found in $PATH"
        );
    }
}
