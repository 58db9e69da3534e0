"""HTTP/1.1 on the wire: framing, keep-alive, pipelining and hostile input.

praetor serves the API port with its own lean HTTP/1.1 loop, so these tests
speak raw bytes to it and check what any HTTP client relies on.
"""

from __future__ import annotations

import socket

import requests


def connect(agent) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", agent.port), timeout=10)
    return s


def read_response(sock: socket.socket, buf: bytearray) -> tuple[int, dict, bytes]:
    """Reads one response (Content-Length framed) from sock; leftovers stay in buf."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-head: {bytes(buf)!r}"
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        rest += chunk
    buf[:] = rest[length:]
    return status, headers, rest[:length]


def test_chunked_put_is_decoded(agent):
    s = connect(agent)
    body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n"
    s.sendall(b"PUT /v1/kv/chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    status, _, payload = read_response(s, bytearray())
    assert (status, payload.strip()) == (200, b"true")
    assert requests.get(f"{agent.url}/v1/kv/chunked?raw").content == b"hello world"


def test_expect_continue_gets_100_then_the_answer(agent):
    s = connect(agent)
    s.sendall(b"PUT /v1/kv/continued HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
              b"Expect: 100-continue\r\n\r\n")
    buf = bytearray()
    status, _, _ = read_response(s, buf)
    assert status == 100
    s.sendall(b"abc")
    status, _, payload = read_response(s, buf)
    assert (status, payload.strip()) == (200, b"true")


def test_pipelined_requests_are_answered_in_order(agent):
    agent.kv_put("pipe/a", b"1")
    agent.kv_put("pipe/b", b"2")
    s = connect(agent)
    s.sendall(b"GET /v1/kv/pipe/a?raw HTTP/1.1\r\nHost: x\r\n\r\n"
              b"GET /v1/kv/pipe/b?raw HTTP/1.1\r\nHost: x\r\n\r\n"
              b"GET /v1/kv/pipe/missing HTTP/1.1\r\nHost: x\r\n\r\n")
    buf = bytearray()
    answers = [read_response(s, buf) for _ in range(3)]
    assert [(a[0], a[2]) for a in answers] == [(200, b"1"), (200, b"2"), (404, b"")]
    assert answers[2][1]["x-consul-index"].isdigit()


def test_headers_use_go_canonical_case(agent):
    s = connect(agent)
    s.sendall(b"GET /v1/kv/none HTTP/1.1\r\nHost: x\r\n\r\n")
    raw = b""
    while b"\r\n\r\n" not in raw:
        raw += s.recv(4096)
    assert b"\r\nX-Consul-Index: " in raw
    assert b"\r\nX-Consul-Knownleader: true\r\n" in raw


def test_http10_closes_after_the_answer(agent):
    s = connect(agent)
    s.sendall(b"GET /v1/status/leader HTTP/1.0\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"Connection: close" in data


def test_head_has_no_body(agent):
    s = connect(agent)
    s.sendall(b"HEAD /v1/kv/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 405 ")
    assert body == b""


def test_malformed_requests_get_400_and_the_agent_lives_on(agent):
    for garbage in [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
                    b"GET /v1/kv/a HTTP/9.9\r\n\r\n",
                    b"PUT /v1/kv/a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
                    b"PUT /v1/kv/a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"]:
        s = connect(agent)
        s.sendall(garbage)
        data = s.recv(4096)
        assert data.startswith(b"HTTP/1.1 400 "), (garbage, data)
        s.close()
    assert requests.get(f"{agent.url}/v1/status/leader").status_code == 200


def test_oversized_head_is_refused(agent):
    s = connect(agent)
    s.sendall(b"GET /v1/kv/a HTTP/1.1\r\n" + b"".join(
        b"X-Pad-%d: v\r\n" % i for i in range(200)) + b"\r\n")
    data = s.recv(4096)
    assert data.startswith(b"HTTP/1.1 431 ")


def test_oversized_chunked_body_is_refused(agent):
    s = connect(agent)
    s.sendall(b"PUT /v1/kv/big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n" % 65536 + b"a" * 65536 + b"\r\n"
    try:
        for _ in range(9):  # 576 KiB > the 512 KiB default limit
            s.sendall(chunk)
    except OSError:
        pass  # the server may close as soon as it has refused
    data = s.recv(4096)
    assert data.startswith(b"HTTP/1.1 413 ")
    assert agent.kv_entry("big") is None


def test_client_gone_mid_blocking_query_does_not_disturb_others(agent):
    agent.kv_put("gone/k", b"1")
    index = int(requests.get(f"{agent.url}/v1/kv/gone/k").headers["X-Consul-Index"])
    s = connect(agent)
    s.sendall(b"GET /v1/kv/gone/k?index=%d&wait=30s HTTP/1.1\r\nHost: x\r\n\r\n" % index)
    s.close()
    # The server notices the close; a write then wakes nobody and succeeds.
    assert agent.kv_put("gone/k", b"2").json() is True
    resp = requests.get(f"{agent.url}/v1/kv/gone/k?raw")
    assert resp.content == b"2"


def test_idle_keepalive_connection_is_reused(agent):
    s = connect(agent)
    buf = bytearray()
    for i in range(3):
        s.sendall(b"PUT /v1/kv/reuse HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n%d" % i)
        status, _, payload = read_response(s, buf)
        assert (status, payload.strip()) == (200, b"true")
    s.sendall(b"GET /v1/kv/reuse?raw HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(s, buf)[2] == b"2"
