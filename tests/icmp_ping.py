"""ICMP echo round trips, for checking the netns harness's injected delay
and loss where no `ping` binary is installed (iputils is not in every CI
image). Needs root (a raw socket); the harness runs it inside a namespace:

    ip netns exec <ns> python3 icmp_ping.py <address> --count 50 --interval 0.02

prints one JSON object: {"rtt_ms": [<ms or null per echo, in order>]};
null means no reply came within --timeout of the last request.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import struct
import sys
import time

ECHO_REQUEST = 8
ECHO_REPLY = 0


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int) -> bytes:
    payload = b"praetor-netns-probe"
    header = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, seq)
    return struct.pack("!BBHHH", ECHO_REQUEST, 0, checksum(header + payload), ident,
                       seq) + payload


def parse_reply(datagram: bytes, ident: int) -> int | None:
    """The sequence number of an echo reply to us (raw sockets hand over
    the IP header too), None for anything else."""
    ihl = (datagram[0] & 0x0F) * 4
    if len(datagram) < ihl + 8:
        return None
    kind, _code, _sum, rid, seq = struct.unpack("!BBHHH", datagram[ihl:ihl + 8])
    if kind != ECHO_REPLY or rid != ident:
        return None
    return seq


def ping(address: str, count: int, interval: float, timeout: float) -> list[float | None]:
    ident = os.getpid() & 0xFFFF
    sent: dict[int, float] = {}
    rtt: list[float | None] = [None] * count
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        next_send = time.monotonic()
        seq = 0
        last_sent = None
        while True:
            now = time.monotonic()
            if seq < count and now >= next_send:
                sock.sendto(echo_request(ident, seq), (address, 0))
                sent[seq] = now
                last_sent = now
                seq += 1
                next_send = now + interval
                continue
            if seq >= count and (all(r is not None for r in rtt)
                                 or now >= last_sent + timeout):
                return rtt
            until = next_send if seq < count else last_sent + timeout
            ready, _, _ = select.select([sock], [], [], max(0.0, until - now))
            if not ready:
                continue
            datagram, _ = sock.recvfrom(65535)
            got = time.monotonic()
            n = parse_reply(datagram, ident)
            if n is not None and n in sent and rtt[n] is None:
                rtt[n] = (got - sent[n]) * 1000.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("address")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between echoes")
    parser.add_argument("--timeout", type=float, default=2.0,
                        help="seconds to wait for replies after the last echo")
    args = parser.parse_args()
    json.dump({"rtt_ms": ping(args.address, args.count, args.interval, args.timeout)},
              sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
