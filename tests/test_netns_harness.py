"""The netns harness's own latency and loss (tests/netns_harness.py),
measured with ICMP echoes between namespaces: the userspace delay link
(tests/delay_link.py, used where the kernel has no sch_netem) holds a
member's egress for the netem delay, shapes one pair both ways, drops about
the share asked for, jitters within its bounds, yields to partitions, and is
gone after close. netem specs it cannot carry out are refused."""

from __future__ import annotations

import statistics

import pytest

from conftest import skip_unless_ci
from netns_harness import (CUT_TABLE, DELAY_TABLE, IP, LinkShape, NetnsError, parse_netem,
                           run)

# A held packet is never early; scheduling on a busy machine (two cores
# shared with builds) can make it late by several ms.
LATE_MS = 15.0
UNSHAPED_MS = 5.0


def received(rtts):
    return [r for r in rtts if r is not None]


def assert_rtt(rtts, want_ms: float, what: str) -> None:
    got = received(rtts)
    assert len(got) == len(rtts), f"{what}: {len(rtts) - len(got)} echoes lost: {rtts}"
    median = statistics.median(got)
    assert min(got) >= want_ms * 0.98, f"{what}: an echo came back early: {sorted(got)}"
    assert median <= want_ms + LATE_MS, f"{what}: median {median:.1f} ms, want {want_ms}"


def assert_unshaped(rtts, what: str) -> None:
    got = received(rtts)
    assert len(got) == len(rtts), f"{what}: echoes lost: {rtts}"
    assert statistics.median(got) < UNSHAPED_MS, f"{what}: {sorted(got)}"


def routes(net, member: str, table: int) -> str:
    """A member's routes in one table ('' also when the table is gone)."""
    ns = net.namespaces[net.index(member)]
    return run(IP, "-n", ns, "route", "show", "table", str(table), check=False).stdout.strip()


@pytest.fixture
def net(netns_factory):
    """Three members, shaped by the userspace delay link even where the
    kernel has netem; loss draws from a fixed seed."""
    n = netns_factory(3, kernel_netem=False, delay_seed=7)
    why = n.delay_link_unavailable()
    if why:
        skip_unless_ci(why)
    return n


def test_netem_delay_holds_everything_a_member_sends(net):
    s1, s2, s3 = net.server_ips
    assert_unshaped(net.ping("s1", s2), "s1 -> s2 before")
    net.netem("s1", "delay 40ms")
    assert_rtt(net.ping("s1", s2), 40, "s1 -> s2 (request held)")
    assert_rtt(net.ping("s2", s1), 40, "s2 -> s1 (reply held)")
    assert_rtt(net.ping_from_root(s1), 40, "root -> s1 (reply held)")
    assert_unshaped(net.ping("s2", s3), "s2 -> s3")
    assert_unshaped(net.ping_from_root(s2), "root -> s2")
    net.clear_netem("s1")
    assert_unshaped(net.ping("s1", s2), "s1 -> s2 after clear_netem")
    assert routes(net, "s1", DELAY_TABLE) == ""
    assert net.netem_on == []


def test_a_pair_delay_holds_both_ways_and_only_that_pair(net):
    s1, s2, s3 = net.server_ips
    net.delay("s1", "s2", 25)
    assert_rtt(net.ping("s1", s2), 50, "s1 -> s2")
    assert_rtt(net.ping("s2", s1), 50, "s2 -> s1")
    assert_unshaped(net.ping("s1", s3), "s1 -> s3")
    assert_unshaped(net.ping("s3", s2), "s3 -> s2")
    assert_unshaped(net.ping_from_root(s1), "root -> s1")
    # A member's netem covers its other peers; the pair keeps its own delay.
    net.netem("s1", "delay 10ms")
    assert_rtt(net.ping("s1", s3), 10, "s1 -> s3 under netem")
    assert_rtt(net.ping("s1", s2), 50, "s1 -> s2 under netem and the pair delay")
    net.clear_netem("s1")
    assert_rtt(net.ping("s1", s2), 50, "s1 -> s2 after clear_netem")
    net.clear_delay("s1", "s2")
    assert_unshaped(net.ping("s1", s2), "s1 -> s2 after clear_delay")
    assert routes(net, "s1", DELAY_TABLE) == routes(net, "s2", DELAY_TABLE) == ""


def test_loss_drops_about_the_share_asked_for(net):
    s1, s2, _ = net.server_ips
    net.netem("s1", "loss 25%")
    count = 200
    rtts = net.ping("s2", s1, count=count, interval=0.005)
    lost = rtts.count(None)
    # Binomial(200, 0.25): mean 50, sd 6.1.
    assert 30 <= lost <= 70, f"{lost} of {count} echo replies lost at 25% loss"
    stats = net.delay_stats()
    assert stats["dropped"].get(f"{s1}>{s2}") == lost, stats
    assert stats["passed"].get(f"{s1}>{s2}") == count - lost, stats
    net.netem("s1", "delay 20ms loss 10%")
    rtts = net.ping("s2", s1, count=100, interval=0.005)
    assert 2 <= rtts.count(None) <= 25, rtts
    got = received(rtts)
    assert min(got) >= 20 * 0.98 and statistics.median(got) <= 20 + LATE_MS, sorted(got)


def test_jitter_spreads_the_delay_within_its_bounds(net):
    _, s2, _ = net.server_ips
    net.netem("s1", "delay 30ms 10ms")
    got = received(net.ping("s1", s2, count=40))
    assert len(got) == 40
    assert min(got) >= 20 * 0.98, sorted(got)
    assert max(got) <= 40 + LATE_MS + 10, sorted(got)
    assert max(got) - min(got) >= 5, f"no jitter: {sorted(got)}"


def test_a_partition_wins_over_a_delay_and_heal_undoes_both(net):
    s1, s2, _ = net.server_ips
    net.netem("s1", "delay 20ms")
    net.delay("s2", "s3", 20)
    net.block("s1", "s2")
    assert received(net.ping("s1", s2, count=5, timeout=0.5)) == []
    assert_rtt(net.ping_from_root(s1), 20, "root -> s1 (s1's replies still held)")
    net.heal()
    assert_unshaped(net.ping("s1", s2), "s1 -> s2 after heal")
    assert_unshaped(net.ping("s2", net.server_ips[2]), "s2 -> s3 after heal")
    for member in net.names:
        assert routes(net, member, CUT_TABLE) == routes(net, member, DELAY_TABLE) == ""


def test_close_stops_the_forwarder_and_removes_the_delay_namespace(net):
    proc = net._forwarder.proc
    assert proc.poll() is None
    net.close()
    assert proc.returncode is not None, "the forwarder was not reaped"
    assert net.leftovers() == []


# ------------------------------------------------------ netem spec parsing
@pytest.mark.parametrize("spec, shape", [
    ("delay 50ms loss 10%", LinkShape(50.0, 0.0, 0.10)),
    ("delay 1s 100ms", LinkShape(1000.0, 100.0, 0.0)),
    ("delay 500us", LinkShape(0.5, 0.0, 0.0)),
    ("loss random 2.5%", LinkShape(0.0, 0.0, 0.025)),
    ("loss 5% delay 20ms 5ms", LinkShape(20.0, 5.0, 0.05)),
])
def test_netem_specs_the_delay_link_carries_out(spec, shape):
    assert parse_netem(spec) == shape


@pytest.mark.parametrize("spec, complaint", [
    ("rate 1mbit", "'rate' is not supported"),
    ("delay 50ms 10ms 25%", "correlations are not supported"),
    ("loss 10% 25%", "correlations are not supported"),
    ("delay 50ms distribution normal", "'distribution' is not supported"),
    ("loss 150%", "'150%' is not a percentage"),
    ("delay fast", "'fast' is not a time"),
    ("duplicate 1%", "'duplicate' is not supported"),
])
def test_netem_specs_the_delay_link_refuses(spec, complaint):
    with pytest.raises(NetnsError, match=complaint):
        parse_netem(spec)
