"""`/v1/agent/members`, `join` and `force-leave` on a dev agent alone in
its LAN pool (test_lan_pool.py covers pools of several agents)."""

from __future__ import annotations


def test_members_lists_this_agent_in_consuls_shape(agent):
    members = agent.get("/v1/agent/members").json()
    assert len(members) == 1
    m = members[0]
    assert (m["Name"], m["Status"], m["Tags"]["role"], m["Tags"]["dc"]) == ("test-node", 1, "consul", "dc1")
    for field in ("Addr", "Port", "ProtocolMin", "ProtocolMax", "ProtocolCur",
                  "DelegateMin", "DelegateMax", "DelegateCur"):
        assert field in m
    wan = agent.get("/v1/agent/members?wan").json()
    assert [w["Name"] for w in wan] == ["test-node.dc1"]


def test_join_fails_with_a_reason_and_force_leave_knows_its_members(agent):
    r = agent.put("/v1/agent/join/127.0.0.2:8301")
    assert r.status_code == 500
    assert "Failed to join 127.0.0.2:8301" in r.text
    assert agent.put("/v1/agent/force-leave/test-node").status_code == 200
    r = agent.put("/v1/agent/force-leave/ghost")
    assert (r.status_code, r.text) == (500, "agent: No node found with name 'ghost'")
    assert agent.get("/v1/agent/join/x").status_code == 405
