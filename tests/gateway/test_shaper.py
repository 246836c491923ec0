"""The throttle shaper: classes of a policy, marks of decisions, tc commands, and tc in a namespace."""

from __future__ import annotations

import random
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice.errors import ConfigError
from sluice.gateway.engine import GatewayEngine, mark_for
from sluice.gateway.rules import MARK_ALLOW, MARK_THROTTLE
from sluice.gateway.shaper import (
    MAX_THROTTLE_CLASSES,
    ShaperState,
    Shaping,
    ThrottleClass,
    install_shaper,
    parse_state,
    plan_install,
    plan_remove,
    read_state,
    remove_shaper,
    throttle_classes,
    throttle_mark,
    up_devices,
)
from sluice.policy import parse_policy
from sluice.policy.model import DEFAULT_RULE, Action, Decision, DefaultRule, Policy, Rule
from sluice.synth.payloads import tls_exchange
from sluice.synth.sessions import RawIpFraming, TcpSession
from tests.gateway.conftest import PY, sh

POLICY = """
[[rule]]
name = "blocked"
action = "block"
sni = "blocked.example"

[[rule]]
name = "slow"
action = "throttle"
rate_kbit = 4000
sni = "slow.example"

[[rule]]
name = "watched"
action = "throttle"
mode = "shadow"
rate_kbit = 64
sni = "watched.example"

[[rule]]
name = "slower"
action = "throttle"
rate_kbit = 1000
sni = "*.slower.example"

[default]
action = "throttle"
rate_kbit = 100000
"""


def _policy(text: str = POLICY) -> Policy:
    return parse_policy(text, "<test>")


# --- classes and marks ---------------------------------------------------------------------------


def test_each_throttle_rule_is_a_class_in_rule_order_default_last() -> None:
    classes = throttle_classes(_policy())
    assert list(classes) == ["slow", "watched", "slower", DEFAULT_RULE]
    assert [(c.index, c.rate_kbit, c.mark, c.classid) for c in classes.values()] == [
        (0, 4000, 0x400, "51ce:4"),
        (1, 64, 0x500, "51ce:5"),
        (2, 1000, 0x600, "51ce:6"),
        (3, 100000, 0x700, "51ce:7"),
    ]
    # burst: 10 ms at the rate, at least two full frames; quantum within HTB's quiet range
    assert [c.burst_bytes for c in classes.values()] == [5000, 3028, 3028, 125000]
    assert [c.quantum_bytes for c in classes.values()] == [50000, 1514, 12500, 200000]
    assert throttle_classes(_policy('[[rule]]\nname = "b"\naction = "block"\nsni = "x.example"\n')) == {}


def test_the_mark_byte_bounds_the_classes() -> None:
    last = ThrottleClass(MAX_THROTTLE_CLASSES - 1, "last", 1)
    assert MAX_THROTTLE_CLASSES == 252 and last.mark == 0xFF00 and last.classid == "51ce:ff"
    rules = tuple(Rule(f"r{i}", Action.THROTTLE, rate_kbit=100 + i) for i in range(MAX_THROTTLE_CLASSES))
    assert len(throttle_classes(Policy(rules))) == MAX_THROTTLE_CLASSES
    with pytest.raises(ConfigError, match="at most 252"):
        throttle_classes(Policy(rules, DefaultRule(Action.THROTTLE, rate_kbit=5)))
    with pytest.raises(ConfigError):
        ThrottleClass(MAX_THROTTLE_CLASSES, "x", 1)
    with pytest.raises(ConfigError):
        ThrottleClass(0, "x", 0)
    clash = Policy(
        (Rule(DEFAULT_RULE, Action.THROTTLE, rate_kbit=10),), DefaultRule(Action.THROTTLE, rate_kbit=5)
    )
    with pytest.raises(ConfigError, match="named"):
        throttle_classes(clash)


def _decision(engine: GatewayEngine, sni: str, port: int) -> Decision:
    """What the engine decides for a real TLS connection (synthesised with OpenSSL's ClientHello)."""
    ex = tls_exchange(sni, version="1.3", alpn=("h2",))
    s = TcpSession(
        ("10.9.0.2", port), ("10.9.1.2", 443), start_ts=1.0, rng=random.Random(1), framing=RawIpFraming()
    )
    for from_client, data in ex.messages:
        (s.client_send if from_client else s.server_send)(data)
    s.close()
    for _, frame in s.packets:
        v = engine.handle(frame)
        if v.decision is not None:
            return v.decision
    raise AssertionError(f"no decision for {sni}")


def test_decisions_get_their_rules_class_mark() -> None:
    pol = _policy()
    classes = throttle_classes(pol)
    eng = GatewayEngine(pol, decide_after=10)
    slow, watched = _decision(eng, "slow.example", 50000), _decision(eng, "watched.example", 50001)
    slower, other = _decision(eng, "a.slower.example", 50002), _decision(eng, "other.example", 50003)
    blocked = _decision(eng, "blocked.example", 50004)
    assert (slow.rule, slow.rate_kbit, other.rule) == ("slow", 4000, DEFAULT_RULE)
    assert throttle_mark(slow, classes) == 0x400
    assert throttle_mark(watched, classes) == MARK_ALLOW  # shadow: passes unshaped
    assert throttle_mark(slower, classes) == 0x600
    assert throttle_mark(other, classes) == 0x700
    assert throttle_mark(slow, {}) == MARK_ALLOW  # classes of another policy
    with pytest.raises(ValueError, match="not a throttle"):
        throttle_mark(blocked, classes)
    # the engine's mark_for: the class mark with the classes, class 0 without (the old behaviour)
    assert [mark_for(d, classes) for d in (slow, slower, other, watched)] == [0x400, 0x600, 0x700, MARK_ALLOW]
    assert mark_for(slower) == MARK_THROTTLE and mark_for(blocked, classes) == 0x200


# --- tc commands ----------------------------------------------------------------------------------


def _two() -> dict[str, ThrottleClass]:
    return {"slow": ThrottleClass(0, "slow", 4000), "slower": ThrottleClass(2, "slower", 1000)}


BPF_400 = "5,32 0 0 4294963220,84 0 0 65280,21 0 1 1024,6 0 0 4294967295,6 0 0 0"


def test_plan_on_a_fresh_device() -> None:
    cmds = [" ".join(c) for c in plan_install(ShaperState("g0", "noqueue 0:"), _two(), "fq_codel")]
    assert cmds == [
        "qdisc replace dev g0 root handle 51ce: htb default 0 direct_qlen 1000",
        "class replace dev g0 parent 51ce: classid 51ce:4 htb rate 4000kbit ceil 4000kbit"
        " burst 5000b cburst 5000b quantum 50000",
        "qdisc replace dev g0 parent 51ce:4 handle 4: fq_codel",
        "filter replace dev g0 parent 51ce: protocol all prio 1 handle 0x4 bpf bytecode"
        f" {BPF_400} classid 51ce:4",
        "class replace dev g0 parent 51ce: classid 51ce:6 htb rate 1000kbit ceil 1000kbit"
        " burst 3028b cburst 3028b quantum 12500",
        "qdisc replace dev g0 parent 51ce:6 handle 6: fq_codel",
        "filter replace dev g0 parent 51ce: protocol all prio 1 handle 0x6 bpf bytecode"
        " 5,32 0 0 4294963220,84 0 0 65280,21 0 1 1536,6 0 0 4294967295,6 0 0 0 classid 51ce:6",
    ]
    # the bytecode is one argument: mark & 0xff00 == 0x600 -> the filter's class
    assert plan_install(ShaperState("g0", ""), _two(), "pfifo")[-1][-3].count(",") == 5
    pfifo = plan_install(ShaperState("g0", ""), _two(), "pfifo")
    assert pfifo[2][-3:] == ["pfifo", "limit", "82"] and pfifo[5][-3:] == ["pfifo", "limit", "20"]
    assert plan_install(ShaperState("g0", ""), _two(), "sfq")[2][-3:] == ["sfq", "perturb", "10"]
    # no classes: only the root (everything passes through HTB's direct queue)
    root = "qdisc replace dev g0 root handle 51ce: htb default 0 direct_qlen 1000"
    assert [" ".join(c) for c in plan_install(ShaperState("g0", "mq 0:"), {}, "fq_codel")] == [root]


def test_plan_on_our_root_removes_stale_classes_and_keeps_the_root() -> None:
    state = ShaperState(
        "g1",
        "htb 51ce:",
        classes=frozenset({4, 5}),
        leaves=((4, "pfifo", "4:"), (5, "fq_codel", "5:")),
        filters=frozenset({4, 5}),
    )
    cmds = [" ".join(c) for c in plan_install(state, _two(), "fq_codel")]
    assert cmds[:3] == [
        "filter del dev g1 parent 51ce: prio 1 handle 0x5 bpf",  # the filter first: it holds the class
        "class del dev g1 classid 51ce:5",
        "class replace dev g1 parent 51ce: classid 51ce:4 htb rate 4000kbit ceil 4000kbit"
        " burst 5000b cburst 5000b quantum 50000",
    ]
    # class 4's leaf was a pfifo: a leaf of another kind cannot be replaced in place
    assert cmds[3:5] == [
        "qdisc del dev g1 parent 51ce:4 handle 4:",
        "qdisc replace dev g1 parent 51ce:4 handle 4: fq_codel",
    ]
    assert not any(c.startswith("qdisc replace dev g1 root") for c in cmds)
    assert [c.split()[:2] for c in cmds[5:]] == [
        ["filter", "replace"],
        *[[w, "replace"] for w in ("class", "qdisc", "filter")],
    ]
    assert plan_remove(state) == [["qdisc", "del", "dev", "g1", "root"]]
    assert plan_remove(ShaperState("g1", "htb 1:")) == []  # somebody else's HTB: left alone


# as iproute2 6.1's tc printed them for a shaper with one class and a pfifo leaf
QDISCS = """qdisc htb 51ce: root refcnt 3 r2q 10 default 0 direct_packets_stat 1 direct_qlen 1000
qdisc pfifo 4: parent 51ce:4 limit 82p
"""
CLASSES = "class htb 51ce:4 root leaf 4: prio 0 rate 4Mbit ceil 4Mbit burst 5000b cburst 5000b \n"
FILTERS = f"""filter parent 51ce: protocol all pref 1 bpf chain 0 
filter parent 51ce: protocol all pref 1 bpf chain 0 handle 0x4 flowid 51ce:4 not_in_hw bytecode '{BPF_400}'
"""  # noqa: W291


def test_parse_state_of_tc_output() -> None:
    st = parse_state("g0", QDISCS, CLASSES, FILTERS)
    assert st == ShaperState("g0", "htb 51ce:", frozenset({4}), ((4, "pfifo", "4:"),), frozenset({4}))
    assert st.ours
    # plan from it: nothing to delete, the same commands as on a fresh device minus the root
    fresh = plan_install(ShaperState("g0", ""), {"slow": ThrottleClass(0, "slow", 4000)}, "pfifo")
    assert plan_install(st, {"slow": ThrottleClass(0, "slow", 4000)}, "pfifo") == fresh[1:]
    mq = "qdisc mq 0: root \nqdisc fq_codel 0: parent :1 limit 10240p flows 1024\n"
    assert parse_state("eth0", mq, "", "") == ShaperState("eth0", "mq 0:")
    assert not parse_state("eth0", "qdisc htb 1: root refcnt 2 r2q 10 default 0x10\n", CLASSES, FILTERS).ours


def test_bad_leaf_and_device_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="leaf"):
        plan_install(ShaperState("g0", ""), _two(), "netem")
    for dev in ("", "a b", "x" * 16, "a/b"):
        with pytest.raises(ConfigError, match="device"):
            plan_install(ShaperState(dev, ""), _two(), "pfifo")


def test_missing_tc_is_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="tc not found"):
        install_shaper(["g0"], _two())
    with pytest.raises(ConfigError, match="tc not found"):
        remove_shaper(["g0"])
    remove_shaper([])  # nothing to remove: tc is not needed


# --- tc in a namespace (root) --------------------------------------------------------------------


@pytest.fixture
def veth(netns: str) -> Iterator[str]:
    """A namespace with veth x0 (10.77.0.1/24, up) whose peer 10.77.0.2 has a permanent neighbour entry."""
    if shutil.which("tc") is None:
        pytest.skip("tc not found (apt install iproute2)")
    ex = ["ip", "netns", "exec", netns]
    sh(*ex, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
    sh(*ex, "ip", "link", "add", "x0", "type", "veth", "peer", "name", "x1")
    sh(*ex, "ip", "addr", "add", "10.77.0.1/24", "dev", "x0")
    sh(*ex, "ip", "link", "set", "x0", "up")
    sh(*ex, "ip", "link", "set", "x1", "up")
    sh(
        *ex,
        "ip",
        "neigh",
        "replace",
        "10.77.0.2",
        "lladdr",
        "02:00:00:00:00:02",
        "dev",
        "x0",
        "nud",
        "permanent",
    )
    yield netns


def _tc_show(ns: str, dev: str = "x0") -> str:
    ex = ["ip", "netns", "exec", ns, "tc"]
    return "".join(sh(*ex, what, "show", "dev", dev).stdout for what in ("qdisc", "class", "filter"))


def test_install_is_idempotent_and_remove_restores_the_default(veth: str) -> None:
    default = sh("ip", "netns", "exec", veth, "tc", "qdisc", "show", "dev", "x0").stdout
    leaf = install_shaper(["x0", "x1"], _two(), netns=veth)
    first = _tc_show(veth)
    assert install_shaper(["x0", "x1"], _two(), netns=veth) == leaf
    assert _tc_show(veth) == first
    assert "qdisc htb 51ce: root" in first and "class htb 51ce:4 " in first and "class htb 51ce:6 " in first
    assert (
        "rate 4Mbit ceil 4Mbit" in first and "flowid 51ce:6" in first and f"{leaf} 6: parent 51ce:6" in first
    )
    state = read_state("x0", netns=veth)
    assert state.ours and state.classes == {4, 6} and state.filters == {4, 6}
    assert state.leaves == ((4, leaf, "4:"), (6, leaf, "6:"))

    # other classes: class 6 goes (filter first), class 4 changes rate, class 5 comes
    changed = {"slow": ThrottleClass(0, "slow", 8000), "mid": ThrottleClass(1, "mid", 2000)}
    install_shaper(["x0"], changed, netns=veth)
    after = read_state("x0", netns=veth)
    assert after.classes == {4, 5} and after.filters == {4, 5} and {m for m, _, _ in after.leaves} == {4, 5}
    assert "rate 8Mbit ceil 8Mbit" in _tc_show(veth) and "51ce:6" not in _tc_show(veth)

    remove_shaper(["x0", "x1"], netns=veth)
    assert sh("ip", "netns", "exec", veth, "tc", "qdisc", "show", "dev", "x0").stdout == default
    assert not read_state("x1", netns=veth).ours
    remove_shaper(["x0", "x1"], netns=veth)  # nothing to remove: no error
    with pytest.raises(ConfigError, match="nope0"):
        install_shaper(["nope0"], _two(), netns=veth)
    assert sorted(up_devices(netns=veth)) == ["x0", "x1"]  # lo is down here, and loopback anyway


SEND = """
import socket, sys
for mark in map(lambda m: int(m, 0), sys.argv[1:]):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
    for _ in range(3):
        s.sendto(b"x" * 100, ("10.77.0.2", 9))
    s.close()
"""


def _class_packets(ns: str) -> dict[str, int]:
    out = sh("ip", "netns", "exec", ns, "tc", "-s", "class", "show", "dev", "x0").stdout
    counts, cls = {}, ""
    for line in out.splitlines():
        if line.startswith("class htb "):
            cls = line.split()[2]
        elif line.strip().startswith("Sent ") and cls:
            counts[cls] = int(line.split()[3])
    return counts


def test_packets_go_to_the_class_their_mark_byte_names(veth: str) -> None:
    install_shaper(["x0"], _two(), netns=veth)
    marks = ["0x400", "0x600", "0x600", "0x10400", "0x4ff", "0x100", "0x4", "0x500"]
    sent = subprocess.run(
        ["ip", "netns", "exec", veth, PY, "-c", SEND, *marks],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert sent.returncode == 0, sent.stderr
    # 0x400, 0x10400 and 0x4ff (bits outside 0xff00 are not ours) -> 51ce:4; 0x600 twice -> 51ce:6;
    # 0x100 (allow), 0x4 (4 in the wrong byte) and 0x500 (no such class here) -> HTB's direct queue
    assert _class_packets(veth) == {"51ce:4": 9, "51ce:6": 6}
    qd = sh("ip", "netns", "exec", veth, "tc", "-s", "qdisc", "show", "dev", "x0").stdout
    assert "direct_packets_stat 9" in qd


def test_shaping_follows_the_policy(veth: str) -> None:
    said: list[str] = []
    shaping = Shaping(["x0"], netns=veth, report=said.append)
    assert shaping.apply(_policy()) and len(said) == 1 and "'slow' 4000 kbit/s" in said[0]
    assert not shaping.apply(_policy())  # same classes: nothing to do
    assert read_state("x0", netns=veth).classes == {4, 5, 6, 7}
    assert shaping.apply(_policy(POLICY.replace("4000", "3000")))
    assert "rate 3Mbit" in _tc_show(veth)
    # a policy without throttle rules leaves only the root; with no device given, nothing is shaped
    assert shaping.apply(_policy('[[rule]]\nname = "b"\naction = "block"\nsni = "x.example"\n'))
    assert read_state("x0", netns=veth).ours and read_state("x0", netns=veth).classes == frozenset()
    auto = Shaping(netns=veth, report=said.append)
    assert not auto.apply(_policy('[[rule]]\nname = "b"\naction = "block"\nsni = "x.example"\n'))
    assert auto.apply(_policy()) and sorted(auto.devices) == ["x0", "x1"] and "(no --shape-dev)" in said[-2]
    assert read_state("x1", netns=veth).classes == {4, 5, 6, 7}
