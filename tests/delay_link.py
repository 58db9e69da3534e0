"""A userspace stand-in for `tc netem`: holds and drops IPv4 packets that
the kernel routes into a TUN device, then hands them back to the kernel.

Runs inside the netns harness's "delay" namespace (tests/netns_harness.py
starts it under `ip netns exec`). There, policy routing sends every packet
arriving on eth0 into the TUN device named on the command line; this
process reads each one, looks up the shape of its (source, destination)
pair, drops it with the pair's loss probability or holds it for the pair's
delay (plus uniform jitter), and writes it back into the TUN device, from
where the kernel forwards it out of eth0 to its destination. Kernels
without sch_netem (some CI kernels) still get latency and loss this way.

Control: one JSON object per line on stdin, one JSON reply per line on
stdout (`ready` is printed once the device is attached):

    {"op": "set", "src": "10.0.0.1", "dst": "10.0.0.2" | null,
     "delay_ms": 50, "jitter_ms": 0, "loss": 0.1}
    {"op": "clear", "src": "10.0.0.1", "dst": "10.0.0.2" | null}
    {"op": "stats"}

A rule with a destination wins over the source's catch-all (dst null).
Packets that match no rule pass at once. The process exits when stdin
closes, so it never outlives the harness that started it.
"""

from __future__ import annotations

import argparse
import fcntl
import heapq
import json
import os
import random
import select
import socket
import struct
import sys
import time
from dataclasses import dataclass
from typing import Optional

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_PACKET = 65535
READ_BURST = 256  # packets read per wake-up before releasing due ones


@dataclass(frozen=True)
class Shape:
    """What happens to one pair's packets."""

    delay_s: float = 0.0
    jitter_s: float = 0.0
    loss: float = 0.0

    def hold(self, rng: random.Random) -> float:
        if self.jitter_s <= 0:
            return self.delay_s
        return max(0.0, self.delay_s + rng.uniform(-self.jitter_s, self.jitter_s))


def open_tun(name: str) -> int:
    """Attaches to (or creates) the TUN device `name`, without the packet
    information header, non-blocking."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        ifr = struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI)
        fcntl.ioctl(fd, TUNSETIFF, ifr)
    except OSError:
        os.close(fd)
        raise
    return fd


def addresses(packet: bytes) -> Optional[tuple[str, str]]:
    """(source, destination) of an IPv4 packet, None for anything else."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    return socket.inet_ntoa(packet[12:16]), socket.inet_ntoa(packet[16:20])


class DelayLink:
    def __init__(self, fd: int, seed: Optional[int]):
        self.fd = fd
        self.rng = random.Random(seed)
        self.rules: dict[tuple[str, Optional[str]], Shape] = {}
        self.held: list[tuple[float, int, bytes]] = []  # (due, arrival order, packet)
        self.arrivals = 0
        self.passed: dict[str, int] = {}
        self.dropped: dict[str, int] = {}
        self.write_errors = 0

    # ---------------------------------------------------------- control
    def command(self, line: str) -> dict:
        try:
            cmd = json.loads(line)
            op = cmd["op"]
            if op == "set":
                shape = Shape(delay_s=float(cmd.get("delay_ms", 0)) / 1000.0,
                              jitter_s=float(cmd.get("jitter_ms", 0)) / 1000.0,
                              loss=float(cmd.get("loss", 0)))
                if not 0.0 <= shape.loss <= 1.0 or shape.delay_s < 0 or shape.jitter_s < 0:
                    return {"error": f"bad shape {cmd}"}
                self.rules[(cmd["src"], cmd.get("dst"))] = shape
                return {"ok": True}
            if op == "clear":
                self.rules.pop((cmd["src"], cmd.get("dst")), None)
                return {"ok": True}
            if op == "stats":
                return {"ok": True, "passed": self.passed, "dropped": self.dropped,
                        "held": len(self.held), "write_errors": self.write_errors}
            return {"error": f"unknown op {op!r}"}
        except (ValueError, KeyError, TypeError) as exc:
            return {"error": f"bad command {line.strip()!r}: {exc}"}

    # ----------------------------------------------------------- packets
    def shape_of(self, pair: tuple[str, str]) -> Optional[Shape]:
        return self.rules.get(pair) or self.rules.get((pair[0], None))

    def take(self, packet: bytes, now: float) -> None:
        pair = addresses(packet)
        shape = self.shape_of(pair) if pair else None
        if shape is None:
            self.emit(packet)
            return
        key = f"{pair[0]}>{pair[1]}"
        if shape.loss > 0 and self.rng.random() < shape.loss:
            self.dropped[key] = self.dropped.get(key, 0) + 1
            return
        self.passed[key] = self.passed.get(key, 0) + 1
        hold = shape.hold(self.rng)
        if hold <= 0:
            self.emit(packet)
            return
        self.arrivals += 1
        heapq.heappush(self.held, (now + hold, self.arrivals, packet))

    def emit(self, packet: bytes) -> None:
        try:
            os.write(self.fd, packet)
        except OSError:
            self.write_errors += 1

    def read_burst(self) -> None:
        now = time.monotonic()
        for _ in range(READ_BURST):
            try:
                packet = os.read(self.fd, MAX_PACKET)
            except BlockingIOError:
                return
            self.take(packet, now)

    def release_due(self) -> Optional[float]:
        """Writes every packet whose time has come; seconds until the next."""
        now = time.monotonic()
        while self.held and self.held[0][0] <= now:
            self.emit(heapq.heappop(self.held)[2])
        return self.held[0][0] - now if self.held else None

    # -------------------------------------------------------------- loop
    def run(self, control_in, control_out) -> None:
        poller = select.epoll()
        poller.register(self.fd, select.EPOLLIN)
        control_fd = control_in.fileno()
        poller.register(control_fd, select.EPOLLIN)
        pending = b""
        while True:
            wait = self.release_due()
            events = poller.poll(-1 if wait is None else max(wait, 0.0))
            for fd, _ in events:
                if fd == self.fd:
                    self.read_burst()
                    continue
                chunk = os.read(control_fd, 65536)
                if not chunk:
                    return
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    if line.strip():
                        reply = self.command(line.decode())
                        control_out.write(json.dumps(reply) + "\n")
                        control_out.flush()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tun", required=True, help="TUN device to attach to")
    parser.add_argument("--seed", type=int, default=None, help="seed of the loss draws")
    args = parser.parse_args()
    fd = open_tun(args.tun)
    try:
        # Packets are released on time even while builds load the CPUs.
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    except (OSError, AttributeError):
        pass
    link = DelayLink(fd, args.seed)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    link.run(sys.stdin, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
