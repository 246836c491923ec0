"""The gateway's netfilter rules in a fresh namespace: setup and teardown are idempotent."""

from __future__ import annotations

import pytest

from sluice.errors import ConfigError
from sluice.gateway.rules import RuleSet, is_installed, setup, teardown
from tests.gateway.conftest import sh


def _save(ns: str, tool: str = "iptables-save") -> str:
    return sh("ip", "netns", "exec", ns, tool, "-t", "filter").stdout


def _ours(text: str, chain: str = "SLUICE") -> list[str]:
    return [line for line in text.splitlines() if chain in line]


def test_setup_twice_then_teardown_twice(netns: str) -> None:
    rs = RuleSet(queue=7, bypass=True, packets=10)
    setup(rs, netns=netns)
    first = _save(netns)
    setup(rs, netns=netns)
    second = _save(netns)
    assert _ours(first) == _ours(second)
    lines = _ours(second)
    assert lines.count("-A FORWARD -j SLUICE") == 1
    chain = [x for x in lines if x.startswith("-A SLUICE")]
    assert len(chain) == 7
    queue = [x for x in lines if "NFQUEUE" in x]
    assert len(queue) == 1
    assert "--connbytes 0:10" in queue[0] and "--queue-num 7" in queue[0] and "--queue-bypass" in queue[0]
    assert any("CONNMARK --save-mark" in x for x in lines)
    # decided connections get the conntrack mark back on every packet (the shaper classifies by it),
    # then leave the chain
    restore = [i for i, x in enumerate(chain) if "CONNMARK --restore-mark" in x]
    assert len(restore) == 1 and "--nfmask 0xff00 --ctmask 0xff00" in chain[restore[0]]
    assert "! --mark 0x0/0xff00" in chain[restore[0]] and chain[restore[0] + 1].endswith("-j RETURN")
    assert any("--reject-with tcp-reset" in x for x in lines)
    six = _ours(_save(netns, "ip6tables-save"))
    assert "-A FORWARD -j SLUICE" in six and any("icmp6-port-unreachable" in x for x in six)
    assert is_installed(netns=netns)

    teardown(netns=netns)
    assert _ours(_save(netns)) == []
    assert _ours(_save(netns, "ip6tables-save")) == []
    assert not is_installed(netns=netns)
    teardown(netns=netns)  # nothing to remove: no error
    assert _ours(_save(netns)) == []


def test_setup_switches_fail_open_to_fail_closed_in_place(netns: str) -> None:
    setup(RuleSet(queue=3, bypass=True), netns=netns, ipv6=False)
    setup(RuleSet(queue=4, bypass=False), netns=netns, ipv6=False)
    lines = _ours(_save(netns))
    queue = [x for x in lines if "NFQUEUE" in x]
    assert len(queue) == 1 and "--queue-num 4" in queue[0] and "--queue-bypass" not in queue[0]
    assert lines.count("-A FORWARD -j SLUICE") == 1
    # other rules of the table are left alone
    sh("ip", "netns", "exec", netns, "iptables", "-A", "FORWARD", "-p", "udp", "--dport", "9", "-j", "DROP")
    teardown(netns=netns, ipv6=False)
    rest = _save(netns)
    assert _ours(rest) == [] and "--dport 9 -j DROP" in rest


def test_own_chain_name(netns: str) -> None:
    setup(RuleSet(queue=1, chain="SLUICE-T"), netns=netns, ipv6=False)
    assert is_installed(chain="SLUICE-T", netns=netns) and not is_installed(netns=netns)
    teardown(chain="SLUICE-T", netns=netns, ipv6=False)
    assert _ours(_save(netns), "SLUICE-T") == []


@pytest.mark.parametrize(
    "kwargs", [{"queue": -1}, {"queue": 65536}, {"queue": 0, "packets": 0}, {"queue": 0, "chain": "a b"}]
)
def test_bad_rule_sets_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        RuleSet(**kwargs)  # type: ignore[arg-type]


def test_workers_balance_queues_and_back(netns: str) -> None:
    """--workers N: one NFQUEUE rule balancing queues Q..Q+N-1; setup is still idempotent and
    going back to one worker restores --queue-num."""
    rs = RuleSet(queue=5, bypass=True, queues=3)
    setup(rs, netns=netns)
    setup(rs, netns=netns)
    for tool in ("iptables-save", "ip6tables-save"):
        lines = _ours(_save(netns, tool))
        assert lines.count("-A FORWARD -j SLUICE") == 1
        assert len([x for x in lines if x.startswith("-A SLUICE")]) == 7
        (queue,) = [x for x in lines if "NFQUEUE" in x]
        assert "--queue-balance 5:7" in queue and "--queue-bypass" in queue and "--queue-num" not in queue
    setup(RuleSet(queue=5, bypass=False), netns=netns, ipv6=False)
    (queue,) = [x for x in _ours(_save(netns)) if "NFQUEUE" in x]
    assert "--queue-num 5" in queue and "balance" not in queue and "bypass" not in queue
    teardown(netns=netns)
    teardown(netns=netns)
    assert _ours(_save(netns)) == [] and _ours(_save(netns, "ip6tables-save")) == []


@pytest.mark.parametrize(
    "kwargs", [{"queue": 0, "queues": 0}, {"queue": 65535, "queues": 2}, {"queue": 0, "queues": 65}]
)
def test_bad_worker_counts_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="workers"):
        RuleSet(**kwargs)  # type: ignore[arg-type]
