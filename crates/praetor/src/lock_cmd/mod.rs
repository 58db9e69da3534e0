//! `praetor lock PREFIX CHILD...`: runs a child while holding a lock in the
//! KV store, as `consul lock` does. With `-n 1` that is Consul's API lock:
//! a session with a 15s TTL renewed at half of it, `<prefix>/.lock`
//! acquired with Consul's lock flag value, and a blocking query on the key
//! to notice a lost lock. With `-n N` (N > 1) it is Consul's API semaphore
//! (see `semaphore.rs`). A lost lock gets the child SIGTERM, and SIGKILL
//! after 5s; release and cleanup follow when the child exits.

mod semaphore;

use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;
use tokio::process::Command;
use tokio::signal::unix::{signal, SignalKind};

use crate::catalog_cmd::{block_on, call, connect, fail, node_name, Failure};
use crate::cli::LockArgs;
use crate::client::{escape_key, ApiClient};
use semaphore::Semaphore;

/// Consul's `api.LockFlagValue`: marks a key as used by a lock.
const LOCK_FLAG_VALUE: u64 = 0x2ddccbc058a50c18;
/// `api.DefaultLockSessionTTL`.
const SESSION_TTL: Duration = Duration::from_secs(15);
/// `api.DefaultLockWaitTime`: one blocking wait for the key.
const LOCK_WAIT: Duration = Duration::from_secs(15);
/// `api.DefaultLockRetryTime`: the pause after a refused acquire (a lock
/// delay in force).
const LOCK_RETRY: Duration = Duration::from_secs(5);
/// Between SIGTERM and SIGKILL for the child.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// Between monitor retries after a server error.
const MONITOR_RETRY_TIME: Duration = Duration::from_secs(1);

pub fn run(c: LockArgs) -> u8 {
    block_on(lock(c))
}

/// A Go duration ("300ms", "1h30m", "-2s", "0") in seconds.
pub(crate) fn parse_go_duration(text: &str) -> Option<f64> {
    agent::go_duration::parse_go_duration(text)
        .ok()
        .map(|nanos| nanos as f64 / 1e9)
}

fn parse_int(flag: &str, value: &str) -> Result<i64, Failure> {
    value.parse().map_err(|_| {
        Failure(format!(
            "invalid value \"{value}\" for flag -{flag}: parse error"
        ))
    })
}

/// Go's `path.Join(prefix, name)`: empty parts are dropped and the result
/// is cleaned (`.`, `..` and repeated slashes resolved).
fn go_path_join(prefix: &str, name: &str) -> String {
    let joined = match (prefix.is_empty(), name.is_empty()) {
        (true, true) => return String::new(),
        (true, false) => name.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) => format!("{prefix}/{name}"),
    };
    let rooted = joined.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|last| *last != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            part => parts.push(part),
        }
    }
    let body = parts.join("/");
    if rooted {
        format!("/{body}")
    } else if body.is_empty() {
        ".".to_owned()
    } else {
        body
    }
}

/// The `-n 1` lock's key: `<prefix>/.lock`.
fn lock_key(prefix: &str) -> String {
    go_path_join(prefix, ".lock")
}

#[derive(Deserialize)]
struct Pair {
    #[serde(rename = "Flags", default)]
    flags: u64,
    #[serde(rename = "Session", default)]
    session: Option<String>,
    #[serde(rename = "ModifyIndex", default)]
    modify_index: u64,
}

impl Pair {
    fn session(&self) -> &str {
        self.session.as_deref().unwrap_or("")
    }
}

/// Why reading the key failed: a transport error or a 5xx may be retried
/// by the monitor (Consul's `IsRetryableError`).
struct ReadError {
    text: String,
    retryable: bool,
}

/// GET on the lock key: the entry (if any) and the index to block on.
async fn read_key(
    client: &ApiClient,
    key: &str,
    query: &str,
) -> Result<(Option<Pair>, u64), ReadError> {
    let answer = client
        .send(
            Method::GET,
            &format!("/v1/kv/{}{query}", escape_key(key)),
            Vec::new(),
        )
        .await
        .map_err(|text| ReadError {
            text,
            retryable: true,
        })?;
    let index = answer.index.unwrap_or(0);
    match answer.status {
        StatusCode::NOT_FOUND => Ok((None, index)),
        StatusCode::OK => {
            let pairs: Vec<Pair> = serde_json::from_slice(&answer.body).map_err(|e| ReadError {
                text: e.to_string(),
                retryable: false,
            })?;
            Ok((pairs.into_iter().next(), index))
        }
        status => Err(ReadError {
            text: answer.unexpected(),
            retryable: status.is_server_error(),
        }),
    }
}

/// A `true`/`false` answer from a KV write.
async fn kv_write(client: &ApiClient, method: Method, path: &str) -> Result<bool, String> {
    let answer = call(client, method, path, Vec::new()).await?;
    Ok(String::from_utf8_lossy(&answer.body).trim() == "true")
}

struct Ui {
    verbose: bool,
}

impl Ui {
    fn info(&self, text: &str) {
        if self.verbose {
            println!("{text}");
        }
    }
}

/// SIGINT or SIGTERM: Consul's shutdown channel.
struct Shutdown {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    fired: bool,
}

impl Shutdown {
    fn new() -> Result<Shutdown, Failure> {
        let listen = |kind| signal(kind).map_err(|e| Failure(format!("Error starting: {e}")));
        Ok(Shutdown {
            interrupt: listen(SignalKind::interrupt())?,
            terminate: listen(SignalKind::terminate())?,
            fired: false,
        })
    }

    async fn wait(&mut self) {
        if !self.fired {
            tokio::select! {
                _ = self.interrupt.recv() => {}
                _ = self.terminate.recv() => {}
            }
            self.fired = true;
        }
    }
}

/// How acquisition ended without the lock.
enum NotAcquired {
    /// Shutdown or the -timeout passed.
    Stopped,
    Failed(String),
}

struct Lock<'a> {
    client: &'a ApiClient,
    key: String,
    session: String,
}

impl Lock<'_> {
    /// Consul's `Lock.Lock`: wait until the key is free, then acquire it.
    async fn acquire(
        &self,
        timeout: Option<Duration>,
        shutdown: &mut Shutdown,
    ) -> Result<(), NotAcquired> {
        let start = Instant::now();
        let mut wait = LOCK_WAIT;
        let mut index = 0u64;
        let mut attempts = 0;
        loop {
            if let Some(limit) = timeout {
                if attempts > 0 {
                    let elapsed = start.elapsed();
                    if elapsed > limit {
                        return Err(NotAcquired::Stopped);
                    }
                    wait = limit - elapsed;
                }
            }
            attempts += 1;
            let query = if index > 0 {
                format!("?index={index}&wait={}ms", wait.as_millis().max(1))
            } else {
                String::new()
            };
            let read = tokio::select! {
                _ = shutdown.wait() => return Err(NotAcquired::Stopped),
                read = read_key(self.client, &self.key, &query) => read,
            };
            let (pair, at) =
                read.map_err(|e| NotAcquired::Failed(format!("failed to read lock: {}", e.text)))?;
            if let Some(pair) = &pair {
                if pair.flags != LOCK_FLAG_VALUE {
                    return Err(NotAcquired::Failed(
                        "Existing key does not match lock use".to_owned(),
                    ));
                }
                if !pair.session().is_empty() {
                    index = at;
                    continue;
                }
            }
            let path = format!(
                "/v1/kv/{}?acquire={}&flags={LOCK_FLAG_VALUE}",
                escape_key(&self.key),
                self.session
            );
            let locked = kv_write(self.client, Method::PUT, &path)
                .await
                .map_err(|e| NotAcquired::Failed(format!("failed to acquire lock: {e}")))?;
            if locked {
                return Ok(());
            }
            tokio::select! {
                _ = shutdown.wait() => return Err(NotAcquired::Stopped),
                _ = tokio::time::sleep(LOCK_RETRY) => {}
            }
        }
    }

    /// Consul's `monitorLock`: returns once the key no longer names our
    /// session (or the agent stays unreachable beyond the retries).
    async fn monitor(&self, retries: i64) {
        let mut index = 0u64;
        loop {
            let mut left = retries;
            loop {
                let query = if index > 0 {
                    format!("?consistent&index={index}")
                } else {
                    "?consistent".to_owned()
                };
                match read_key(self.client, &self.key, &query).await {
                    Ok((Some(pair), at)) if pair.session() == self.session => {
                        index = at;
                        break;
                    }
                    Ok(_) => return,
                    Err(e) if left > 0 && e.retryable => {
                        tokio::time::sleep(MONITOR_RETRY_TIME).await;
                        left -= 1;
                        index = 0;
                    }
                    Err(_) => return,
                }
            }
        }
    }

    /// Consul's `Unlock`: release the key with our session.
    async fn release(&self) -> Result<(), String> {
        let path = format!(
            "/v1/kv/{}?release={}&flags={LOCK_FLAG_VALUE}",
            escape_key(&self.key),
            self.session
        );
        kv_write(self.client, Method::PUT, &path)
            .await
            .map(|_| ())
            .map_err(|e| format!("failed to release lock: {e}"))
    }

    /// Consul's `Destroy`: delete the key unless someone holds it.
    /// `Ok(false)` means it is in use.
    async fn cleanup(&self) -> Result<bool, String> {
        let (pair, _) = read_key(self.client, &self.key, "")
            .await
            .map_err(|e| format!("failed to read lock: {}", e.text))?;
        let Some(pair) = pair else {
            return Ok(true);
        };
        if pair.flags != LOCK_FLAG_VALUE {
            return Err("Existing key does not match lock use".to_owned());
        }
        if !pair.session().is_empty() {
            return Ok(false);
        }
        let path = format!("/v1/kv/{}?cas={}", escape_key(&self.key), pair.modify_index);
        kv_write(self.client, Method::DELETE, &path)
            .await
            .map_err(|e| format!("failed to remove lock: {e}"))
    }
}

/// What `consul lock` holds: Consul's `LockUnlock` over a lock (`-n 1`)
/// or a semaphore.
enum Guard<'a> {
    Lock(Lock<'a>),
    Semaphore(Semaphore<'a>),
}

impl Guard<'_> {
    async fn acquire(
        &self,
        timeout: Option<Duration>,
        shutdown: &mut Shutdown,
    ) -> Result<(), NotAcquired> {
        match self {
            Guard::Lock(lock) => lock.acquire(timeout, shutdown).await,
            Guard::Semaphore(sem) => sem.acquire(timeout, shutdown).await,
        }
    }

    /// Returns once the lock or the semaphore slot is lost.
    async fn monitor(&self, retries: i64) {
        match self {
            Guard::Lock(lock) => lock.monitor(retries).await,
            Guard::Semaphore(sem) => sem.monitor(retries).await,
        }
    }

    async fn release(&self) -> Result<(), String> {
        match self {
            Guard::Lock(lock) => lock.release().await,
            Guard::Semaphore(sem) => sem.release().await,
        }
    }

    /// `Ok(false)`: not removed, still in use.
    async fn cleanup(&self) -> Result<bool, String> {
        match self {
            Guard::Lock(lock) => lock.cleanup().await,
            Guard::Semaphore(sem) => sem.cleanup().await,
        }
    }
}

/// Creates the lock's session; a semaphore's has the `delete` behaviour so
/// that its contender key goes with it.
async fn create_session(
    client: &ApiClient,
    name: &str,
    behavior: Option<&str>,
) -> Result<String, String> {
    let mut body = json!({"Name": name, "TTL": format!("{}s", SESSION_TTL.as_secs())});
    if let Some(behavior) = behavior {
        body["Behavior"] = json!(behavior);
    }
    let answer = call(
        client,
        Method::PUT,
        "/v1/session/create",
        serde_json::to_vec(&body).map_err(|e| e.to_string())?,
    )
    .await?;
    #[derive(Deserialize)]
    struct Created {
        #[serde(rename = "ID")]
        id: String,
    }
    let created: Created = serde_json::from_slice(&answer.body).map_err(|e| e.to_string())?;
    Ok(created.id)
}

/// Renews the session at half its TTL until the renewal fails.
async fn renew_session(client: ApiClient, id: String) {
    loop {
        tokio::time::sleep(SESSION_TTL / 2).await;
        match call(
            &client,
            Method::PUT,
            &format!("/v1/session/renew/{id}"),
            Vec::new(),
        )
        .await
        {
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

async fn destroy_session(client: &ApiClient, id: &str) {
    let _ = call(
        client,
        Method::PUT,
        &format!("/v1/session/destroy/{id}"),
        Vec::new(),
    )
    .await;
}

/// Go's `exec.ExitError` text.
fn exit_text(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("signal: {}", signal_name(sig)),
        _ => "exit status unknown".to_owned(),
    }
}

fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGHUP => "hangup".to_owned(),
        libc::SIGINT => "interrupt".to_owned(),
        libc::SIGKILL => "killed".to_owned(),
        libc::SIGTERM => "terminated".to_owned(),
        libc::SIGQUIT => "quit".to_owned(),
        n => format!("signal {n}"),
    }
}

/// Signals the child's process group (it leads its own, so a shell's
/// children go too).
fn signal_child(pid: u32, sig: i32) -> Result<(), String> {
    let group = -(pid as i32);
    // SAFETY: kill(2) with a process group id and a valid signal number
    // touches no memory.
    if unsafe { libc::kill(group, sig) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().to_string())
    }
}

async fn lock(c: LockArgs) -> Result<u8, Failure> {
    let limit = parse_int("n", &c.limit)?;
    let monitor_retry = parse_int("monitor-retry", &c.monitor_retry)?;
    let mut timeout = 0.0;
    for (flag, value) in [("timeout", &c.timeout), ("try", &c.try_timeout)] {
        if let Some(value) = value {
            timeout = parse_go_duration(value).ok_or_else(|| {
                Failure(format!(
                    "invalid value \"{value}\" for flag -{flag}: parse error"
                ))
            })?;
        }
    }
    if limit <= 0 {
        return fail("Lock holder limit must be positive");
    }
    if c.args.len() < 2 {
        return fail("Key prefix and child command must be specified");
    }
    let prefix = c.args[0].strip_prefix('/').unwrap_or(&c.args[0]).to_owned();
    let child_args = &c.args[1..];
    if timeout < 0.0 {
        return fail("Timeout must be positive");
    }
    let name = if c.name.is_empty() {
        format!("Consul lock for '{}' at '{prefix}'", child_args.join(" "))
    } else {
        c.name.clone()
    };
    let timeout = (timeout > 0.0).then(|| Duration::from_secs_f64(timeout));
    if monitor_retry < 0 {
        return fail("Number for 'monitor-retry' must be >= 0");
    }
    let client = connect(&c.http)?;
    node_name(&client).await?;
    let ui = Ui { verbose: c.verbose };
    let semaphore = limit > 1;
    if semaphore {
        ui.info(&format!(
            "Setting up semaphore (limit {limit}) at prefix: {prefix}"
        ));
        // `api.SemaphoreOpts` refuses an empty prefix.
        if prefix.is_empty() {
            return fail("Lock setup failed: missing prefix");
        }
    } else {
        ui.info(&format!("Setting up lock at path: {}", lock_key(&prefix)));
    }
    let mut shutdown = Shutdown::new()?;

    ui.info("Attempting lock acquisition");
    let behavior = semaphore.then_some("delete");
    let session = create_session(&client, &name, behavior)
        .await
        .map_err(|e| {
            Failure(format!(
                "Lock acquisition failed: failed to create session: {e}"
            ))
        })?;
    let renewer = tokio::spawn(renew_session(connect(&c.http)?, session.clone()));
    let guard = if semaphore {
        Guard::Semaphore(Semaphore {
            client: &client,
            prefix,
            limit,
            session: session.clone(),
        })
    } else {
        Guard::Lock(Lock {
            client: &client,
            key: lock_key(&prefix),
            session: session.clone(),
        })
    };
    if let Err(why) = guard.acquire(timeout, &mut shutdown).await {
        // A semaphore's contender key goes with the session.
        renewer.abort();
        destroy_session(&client, &session).await;
        return match why {
            NotAcquired::Stopped => fail("Shutdown triggered or timeout during lock acquisition"),
            NotAcquired::Failed(e) => fail(format!("Lock acquisition failed: {e}")),
        };
    }

    let child_code = if shutdown.fired {
        eprintln!("Shutdown triggered during lock acquisition");
        0
    } else {
        run_child(&c, child_args, &ui, &mut shutdown, &guard, monitor_retry).await
    };

    let released = guard.release().await;
    renewer.abort();
    destroy_session(&client, &session).await;
    if let Err(e) = released {
        return fail(format!("Lock release failed: {e}"));
    }
    match guard.cleanup().await {
        Ok(true) => ui.info("Cleanup succeeded"),
        Ok(false) => ui.info("Cleanup aborted, lock in use"),
        Err(e) => return fail(format!("Lock cleanup failed: {e}")),
    }
    Ok(if c.child_exit_code { child_code } else { 0 })
}

/// Runs the child while the lock is held: its exit code for
/// `-child-exit-code` (2 when it failed). On shutdown or a lost lock the
/// child gets SIGTERM, then SIGKILL after the grace period.
async fn run_child(
    c: &LockArgs,
    child_args: &[String],
    ui: &Ui,
    shutdown: &mut Shutdown,
    guard: &Guard<'_>,
    monitor_retry: i64,
) -> u8 {
    ui.info("Starting handler");
    let mut command = if c.shell {
        let shell = std::env::var("SHELL")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "/bin/sh".to_owned());
        let mut command = Command::new(shell);
        command.arg("-c").arg(child_args.join(" "));
        command
    } else {
        let mut command = Command::new(&child_args[0]);
        command.args(&child_args[1..]);
        command
    };
    command.env("CONSUL_LOCK_HELD", "true").process_group(0);
    if c.pass_stdin {
        ui.info("Stdin passed to handler process");
    } else {
        command.stdin(std::process::Stdio::null());
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!("Error starting handler: {e}");
            return 2;
        }
    };
    let pid = child.id().unwrap_or(0);
    tokio::select! {
        status = child.wait() => {
            let code = match status {
                Ok(status) if status.success() => 0,
                Ok(status) => {
                    eprintln!("Error running handler: {}", exit_text(status));
                    2
                }
                Err(e) => {
                    eprintln!("Error running handler: {e}");
                    2
                }
            };
            ui.info("Child terminated, releasing lock");
            return code;
        }
        _ = shutdown.wait() => ui.info("Shutdown triggered, killing child"),
        _ = guard.monitor(monitor_retry) => ui.info("Lock lost, killing child"),
    }
    ui.info(&format!("Terminating child pid {pid}"));
    if let Err(e) = signal_child(pid, libc::SIGTERM) {
        eprintln!("Failed to terminate {pid}: {e}");
        return 0;
    }
    match tokio::time::timeout(KILL_GRACE, child.wait()).await {
        Ok(_) => ui.info("Child terminated"),
        Err(_) => {
            ui.info(&format!(
                "Child did not exit after grace period of {}s",
                KILL_GRACE.as_secs()
            ));
            ui.info(&format!("Killing child pid {pid}"));
            if let Err(e) = signal_child(pid, libc::SIGKILL) {
                eprintln!("Failed to kill {pid}: {e}");
            }
            let _ = child.wait().await;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("0"), Some(0.0));
        assert_eq!(parse_go_duration("1h30m"), Some(5400.0));
        assert_eq!(parse_go_duration("250ms"), Some(0.25));
        assert_eq!(parse_go_duration("-2s"), Some(-2.0));
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration("1x"), None);
    }

    #[test]
    fn lock_key_joins_like_path_join() {
        assert_eq!(lock_key("a/b"), "a/b/.lock");
        assert_eq!(lock_key("a/"), "a/.lock");
        assert_eq!(lock_key(""), ".lock");
    }

    #[test]
    fn path_join_cleans_like_go() {
        assert_eq!(go_path_join("a//b/./c/", "s1"), "a/b/c/s1");
        assert_eq!(go_path_join("a/b/..", ".lock"), "a/.lock");
        assert_eq!(go_path_join("../a", "x"), "../a/x");
        assert_eq!(go_path_join("/a/../..", "x"), "/x");
        assert_eq!(go_path_join("a", ""), "a");
        assert_eq!(go_path_join("", ""), "");
    }
}
