#!/usr/bin/env python3
"""Where the agent's memory goes with many connections: praetor's RSS with
N keep-alive connections in four states.

    python3 bench/conn_memory.py PRAETOR_BINARY [N]      (N defaults to 10000)

  idle      connected, no request ever sent
  used      one PUT and one GET done on each, then idle (keep-alive)
  held      as used, then a blocking GET held on each; every query read the
            same version of the store (all writes done before arming)
  distinct  as held, but a write to an unrelated key between two arms, so
            each query read (and holds on to) a different version

Each state is measured on a fresh agent, N connections opened one after
another. Run it with `ulimit -n` above N + 100.
"""

import asyncio
import socket
import subprocess
import sys
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def request(reader, writer, line, body=b""):
    """One HTTP/1.1 exchange; returns the X-Consul-Index, if any."""
    head = f"{line} HTTP/1.1\r\nHost: bench\r\nContent-Length: {len(body)}\r\n\r\n"
    writer.write(head.encode() + body)
    await writer.drain()
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode().lower().split("\r\n")
    if not lines[0].startswith("http/1.1 200"):
        raise RuntimeError(f"{line}: {lines[0]}")
    headers = dict(l.split(": ", 1) for l in lines[1:] if ": " in l)
    await reader.readexactly(int(headers.get("content-length", "0")))
    return headers.get("x-consul-index")


async def measure(port, pid, n, mode):
    w_reader, w_writer = await asyncio.open_connection("127.0.0.1", port)
    value = b"v" * 256
    if mode != "idle":
        for i in range(n):
            await request(w_reader, w_writer, f"PUT /v1/kv/bench/c/{i}", value)
    conns = []
    for i in range(n):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        conns.append((reader, writer))
        if mode == "idle":
            continue
        await request(reader, writer, f"PUT /v1/kv/bench/c/{i}", value)
        index = await request(reader, writer, f"GET /v1/kv/bench/c/{i}")
        if mode == "used":
            continue
        writer.write(
            f"GET /v1/kv/bench/c/{i}?index={index}&wait=120s HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
        )
        await writer.drain()
        if mode == "distinct":
            # Let the agent read this query's version before the next write.
            await asyncio.sleep(0.0002)
            await request(w_reader, w_writer, f"PUT /v1/kv/bench/other/{i}", value)
    if mode == "held":
        # The same writes as in `distinct`, after every query has read.
        for i in range(n):
            await request(w_reader, w_writer, f"PUT /v1/kv/bench/other/{i}", value)
    await asyncio.sleep(3)
    return rss_mb(pid)


def main():
    binary = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    print(f"{n} connections; agent RSS in MB")
    for mode in ["idle", "used", "held", "distinct"]:
        port = free_port()
        agent = subprocess.Popen(
            [binary, "agent", "-dev", "-http-port", str(port), "-dns-port", "-1", "-node", "bench"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.5)
            start = rss_mb(agent.pid)
            end = asyncio.run(measure(port, agent.pid, n, mode))
            per_conn = (end - start) * 1024 / n
            print(f"{mode:9} start {start:6.1f}  after {end:6.1f}  ({per_conn:.1f} KB per connection)")
        finally:
            agent.terminate()
            agent.wait()


if __name__ == "__main__":
    main()
