"""Process harness for praetor's process tests.

Starts the real `praetor` binary, waits for it with deadlines (never a bare
sleep), and stops it again, checking that it exits cleanly.  Imported by
conftest.py and by the test modules (pytest puts this folder on sys.path).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

import requests

REPO = Path(__file__).resolve().parent.parent

START_DEADLINE = 10.0  # seconds until /v1/status/leader must answer
STOP_DEADLINE = 10.0  # seconds between SIGTERM and the process being gone
HTTP_TIMEOUT = 10.0  # default timeout of one non-blocking HTTP request
CLI_TIMEOUT = 30.0  # one CLI invocation

# Environment variables a Consul-compatible binary may read; the tests set
# them explicitly where they mean to, and scrub them everywhere else.
_SCRUBBED_ENV_PREFIXES = ("CONSUL_", "PRAETOR_")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to 0, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int) -> list[int]:
    """n distinct ports free for both TCP and UDP (held open together so
    they differ): gossip and DNS listen on both, and a port free for TCP
    may be taken for UDP."""
    socks = []
    ports: list[int] = []
    try:
        while len(ports) < n:
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.bind(("127.0.0.1", 0))
            socks.append(tcp)
            port = tcp.getsockname()[1]
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                udp.close()
                continue
            socks.append(udp)
            ports.append(port)
        return ports
    finally:
        for s in socks:
            s.close()


def wait_until(pred: Callable[[], object], deadline: float, interval: float = 0.02,
               what: str = "condition"):
    """Poll pred() until it returns a truthy value or `deadline` seconds pass.

    Returns the truthy value; raises AssertionError on timeout.
    """
    end = time.monotonic() + deadline
    last_exc: Optional[BaseException] = None
    while True:
        try:
            value = pred()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - reported on timeout
            last_exc = exc
        if time.monotonic() >= end:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise AssertionError(f"timed out after {deadline}s waiting for {what}{detail}")
        time.sleep(interval)


def clean_env(extra: Optional[dict] = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_ENV_PREFIXES)}
    if extra:
        env.update(extra)
    return env


def praetor_binary() -> Path:
    override = os.environ.get("PRAETOR_BIN")
    if override:
        return Path(override).resolve()
    return REPO / "target" / "debug" / "praetor"


def isolation_ports_config() -> dict:
    """Consul `ports` for every listener a -dev agent opens besides HTTP.

    Consul's -dev mode listens on fixed ports (DNS 8600, serf 8301/8302,
    server RPC 8300, gRPC 8502); two agents on one machine would collide,
    so every agent the tests start gets its own free ports for them.
    """
    dns, serf_lan, serf_wan, server, grpc = free_ports(5)
    return {
        "ports": {
            "dns": dns,
            "serf_lan": serf_lan,
            "serf_wan": serf_wan,
            "server": server,
            "grpc": grpc,
        }
    }


def isolation_enabled() -> bool:
    return os.environ.get("PRAETOR_TEST_ISOLATE_PORTS", "1") != "0"


class AgentExited(AssertionError):
    pass


class Agent:
    """One `praetor agent -dev` process.

    http_port: the port to talk to (chosen free when None).
    http_flag: pass `-http-port <port>`; False when a config file sets it.
    config_files: paths passed as `-config-file` (after the isolation file,
        so they win over it).
    extra_args: appended after everything else.
    """

    def __init__(self, binary: Path, workdir: Path, *, node: Optional[str] = "test-node",
                 http_port: Optional[int] = None, http_flag: bool = True,
                 config_files: Iterable[os.PathLike | str] = (),
                 extra_args: Iterable[str] = (), isolate_ports: Optional[bool] = None,
                 dev: bool = True, name: str = "agent"):
        self.binary = Path(binary)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.port = http_port if http_port is not None else free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stdout_path = self.workdir / f"{name}.stdout.log"
        self.stderr_path = self.workdir / f"{name}.stderr.log"
        self.proc: Optional[subprocess.Popen] = None
        self.ready_after: Optional[float] = None
        self.stopped_by_test = False
        self.isolation: Optional[dict] = None

        args = [str(self.binary), "agent"]
        if dev:
            args.append("-dev")
        if node is not None:
            args += ["-node", node]
        if http_flag:
            args += ["-http-port", str(self.port)]
        if isolate_ports is None:
            isolate_ports = isolation_enabled()
        if isolate_ports:
            self.isolation = isolation_ports_config()
            iso = self.workdir / f"{name}-isolation-ports.json"
            iso.write_text(json.dumps(self.isolation))
            args += ["-config-file", str(iso)]
        for cf in config_files:
            args += ["-config-file", str(cf)]
        args += list(extra_args)
        self.args = args

    # ----------------------------------------------------------------- life
    def spawn(self) -> "Agent":
        if not self.binary.exists():
            raise FileNotFoundError(
                f"praetor binary not found at {self.binary}; build it with "
                "`cargo build -p praetor` or set PRAETOR_BIN")
        self._t0 = time.monotonic()
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                self.args, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                cwd=self.workdir, env=clean_env(), start_new_session=True)
        return self

    def leader(self, timeout: float = 1.0) -> Optional[str]:
        r = requests.get(self.url + "/v1/status/leader", timeout=timeout)
        if r.status_code != 200:
            return None
        value = r.json()
        if isinstance(value, str) and value:
            return value
        return None

    def wait_ready(self, deadline: float = START_DEADLINE) -> "Agent":
        assert self.proc is not None
        end = self._t0 + deadline
        while True:
            code = self.proc.poll()
            if code is not None:
                self.stopped_by_test = True  # reported here; teardown need not repeat it
                raise AgentExited(
                    f"{self.name} exited with code {code} before becoming ready\n"
                    f"args: {self.args}\n{self.logs()}")
            try:
                if self.leader(timeout=0.5):
                    self.ready_after = time.monotonic() - self._t0
                    return self
            except (requests.ConnectionError, requests.Timeout, ValueError):
                pass
            if time.monotonic() >= end:
                self.stopped_by_test = True
                self.kill()
                raise AssertionError(
                    f"{self.name} did not answer GET /v1/status/leader with a leader "
                    f"within {deadline}s\nargs: {self.args}\n{self.logs()}")
            time.sleep(0.01)

    def start(self, deadline: float = START_DEADLINE) -> "Agent":
        self.spawn()
        return self.wait_ready(deadline)

    def wait_exit(self, deadline: float = STOP_DEADLINE) -> Optional[int]:
        """Exit code, or None if still running after `deadline` seconds."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=deadline)
        except subprocess.TimeoutExpired:
            return None

    def send_signal(self, sig: int) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, deadline: float = STOP_DEADLINE) -> Optional[int]:
        """Send `sig` and wait; returns the exit code, None if it had to be killed."""
        self.stopped_by_test = True
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(sig)
        code = self.wait_exit(deadline)
        if code is None:
            self.kill()
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                pass

    def close(self) -> None:
        """Teardown: SIGTERM, expect exit 0 within the deadline, else kill and fail.

        When the test itself already stopped the agent (leave, signals, bad
        config), only make sure nothing is left running.
        """
        if self.proc is None:
            return
        if self.stopped_by_test or self.proc.poll() is not None:
            was_running = self.proc.poll() is None
            self.kill()
            if not self.stopped_by_test and not was_running:
                code = self.proc.returncode
                raise AssertionError(
                    f"{self.name} had already exited (code {code}) before teardown\n{self.logs()}")
            return
        self.proc.send_signal(signal.SIGTERM)
        code = self.wait_exit(STOP_DEADLINE)
        if code is None:
            self.kill()
            raise AssertionError(
                f"{self.name} did not exit within {STOP_DEADLINE}s of SIGTERM; killed\n{self.logs()}")
        if code != 0:
            raise AssertionError(f"{self.name} exited with code {code} on SIGTERM\n{self.logs()}")

    # ------------------------------------------------------------- output
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def logs(self) -> str:
        return (f"--- {self.name} stdout ---\n{self.stdout()[-6000:]}\n"
                f"--- {self.name} stderr ---\n{self.stderr()[-6000:]}")

    # --------------------------------------------------------------- http
    def http(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", HTTP_TIMEOUT)
        return requests.request(method, self.url + path, **kw)

    def get(self, path: str, **kw) -> requests.Response:
        return self.http("GET", path, **kw)

    def put(self, path: str, **kw) -> requests.Response:
        return self.http("PUT", path, **kw)

    def delete(self, path: str, **kw) -> requests.Response:
        return self.http("DELETE", path, **kw)

    # ------------------------------------------------------ kv shorthands
    def kv_put(self, key: str, value: bytes | str | None = b"", **params) -> requests.Response:
        data = value.encode() if isinstance(value, str) else value
        return self.put("/v1/kv/" + key, data=data, params=params or None)

    def kv_entry(self, key: str) -> Optional[dict]:
        """The single DirEntry for key, or None on 404."""
        r = self.get("/v1/kv/" + key)
        if r.status_code == 404:
            return None
        assert r.status_code == 200, (r.status_code, r.text)
        body = r.json()
        assert isinstance(body, list) and len(body) == 1, body
        return body[0]


def close_agents(agents: Iterable[Agent]) -> None:
    """Closes every agent (killing any whose close fails) and then raises
    one AssertionError naming every failure."""
    errors = []
    for agent in agents:
        try:
            agent.close()
        except AssertionError as exc:
            errors.append(str(exc))
        finally:
            agent.kill()
    if errors:
        raise AssertionError("\n\n".join(errors))


def run_cli(binary: Path, args: Iterable[str], *, env: Optional[dict] = None,
            input: Optional[bytes | str] = None, timeout: float = CLI_TIMEOUT,
            cwd: Optional[os.PathLike] = None) -> subprocess.CompletedProcess:
    """Run `praetor <args>` to completion, capturing bytes stdout/stderr."""
    if isinstance(input, str):
        input = input.encode()
    return subprocess.run(
        [str(binary), *args], input=input if input is not None else b"",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env(env),
        timeout=timeout, cwd=cwd)


def json_true(resp: requests.Response) -> bool:
    """Body is Consul's bare JSON `true` (compact, or pretty with newline in -dev)."""
    return resp.text in ("true", "true\n")


def json_false(resp: requests.Response) -> bool:
    return resp.text in ("false", "false\n")
