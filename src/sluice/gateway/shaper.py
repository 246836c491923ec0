"""Rate limits for throttled connections: an HTB class per throttle rule, chosen by the packet mark.

Theory of operation: a ``throttle`` decision marks its connection with its rule's class,
``MARK_THROTTLE + i * 0x100`` for throttle class ``i`` in ``0..251`` (the mark byte, bits
``0xff00``, is 4..255). The gateway's chain (:mod:`sluice.gateway.rules`) copies the conntrack
mark back onto every packet of a decided connection (``CONNMARK --restore-mark``), and on each
shaped device this module installs::

    root  htb, handle 51ce:, default 0            # unclassified: HTB's direct queue, unshaped
      class 51ce:<b>  htb rate=ceil=N kbit         # <b>: the mark byte (hex), one per class
        leaf <b>:     fq_codel | sfq | pfifo        # the first the kernel has
      filter prio 1 handle 0x<b>  bpf (mark & 0xff00 == <b> << 8) -> 51ce:<b>

The filter is a classic-BPF program (``cls_bpf``) reading the packet mark: it does what
``fw handle 0x<b>00/0xff00`` does, but works on kernels without ``cls_fw`` (and ``u32``'s
``mark`` key silently matches everything on kernels without ``CONFIG_CLS_U32_MARK``).

Each throttle rule is one class (in the order of the rules; a throttling default comes last),
so **every connection one rule throttles shares that rule's rate** on each device, and a
connection gets the rate in each direction on the device it leaves by: shaping is on egress,
so the gateway shapes every forwarding interface (downloads on the client-side device, uploads
on the server-side one). The rate counts whole frames (IP packets and the Ethernet header):
TCP payload gets about 95% of it with 1500-byte packets.

:func:`install_shaper` reads each device's qdiscs, plans the ``tc`` commands that turn them
into the wanted set (:func:`plan_install`, a pure function) and runs them in one ``tc -batch``:
running it again changes nothing, running it with other classes changes only those. The root
is ours when it is an HTB with handle ``51ce:``; :func:`remove_shaper` deletes only such a
root, which gives the device its default qdisc back.
"""

from __future__ import annotations

__all__ = [
    "LEAF_KINDS",
    "MAX_THROTTLE_CLASSES",
    "ROOT_HANDLE",
    "ShaperState",
    "Shaping",
    "ThrottleClass",
    "install_shaper",
    "parse_state",
    "plan_install",
    "plan_remove",
    "read_state",
    "remove_shaper",
    "throttle_classes",
    "throttle_mark",
    "up_devices",
]

import json
import math
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sluice.errors import ConfigError
from sluice.gateway.rules import MARK_ALLOW, MARK_MASK, MARK_THROTTLE
from sluice.policy.model import DEFAULT_RULE, Action, Decision, Mode, Policy

ROOT_HANDLE = "51ce:"
"""Handle of the shaper's root qdisc (how :func:`remove_shaper` knows the root is ours)."""
MAX_THROTTLE_CLASSES = (0xFF00 - MARK_THROTTLE) // 0x100 + 1
"""Throttle classes the mark byte can name (252: bytes 4..255)."""
LEAF_KINDS = ("fq_codel", "sfq", "pfifo")
"""Leaf qdiscs in order of preference (the first the kernel has is used)."""
DIRECT_QLEN = 1000
"""Packets HTB's direct queue (unshaped traffic) holds."""
BURST_S = 0.010
"""A class's burst: this long at its rate ..."""
MIN_BURST_BYTES = 2 * 1514
"""... but at least two full-size Ethernet frames."""
LEAF_QUEUE_S = 0.25
"""A ``pfifo`` leaf holds about this long at the class's rate (16..1000 full-size packets)."""
FILTER_PRIO = 1
"""Priority of the shaper's filters."""

_SKF_AD_MARK = (-0x1000 + 20) & 0xFFFFFFFF  # classic BPF: load skb->mark (SKF_AD_OFF + SKF_AD_MARK)
_MAJOR = int(ROOT_HANDLE[:-1], 16)


@dataclass(frozen=True, slots=True)
class ThrottleClass:
    """One throttle class: the connections one rule throttles, sharing its rate."""

    index: int
    """Class number, 0..251 (the order of the throttle rules)."""
    rule: str
    """The rule's name (``(default)`` for the policy's default)."""
    rate_kbit: int
    """Rate (and ceiling) in kbit/s (1000 bit/s), whole frames counted."""

    def __post_init__(self) -> None:
        if not 0 <= self.index < MAX_THROTTLE_CLASSES:
            raise ConfigError(
                "shaper", f"throttle class {self.index} is not in 0..{MAX_THROTTLE_CLASSES - 1}"
            )
        if self.rate_kbit <= 0:
            raise ConfigError(
                "shaper", f"rule {self.rule!r}: rate_kbit must be positive, not {self.rate_kbit}"
            )

    @property
    def mark(self) -> int:
        """The packet and conntrack mark bits (within ``MARK_MASK``) of this class."""
        return MARK_THROTTLE + self.index * 0x100

    @property
    def minor(self) -> int:
        """The mark byte, used as the HTB class minor, the leaf's handle and the filter's handle."""
        return self.mark >> 8

    @property
    def classid(self) -> str:
        """The HTB class id (``51ce:4`` for class 0)."""
        return f"{ROOT_HANDLE}{self.minor:x}"

    @property
    def burst_bytes(self) -> int:
        """HTB burst and cburst: :data:`BURST_S` at the rate, at least :data:`MIN_BURST_BYTES`."""
        return max(MIN_BURST_BYTES, math.ceil(self.rate_kbit * 1000 / 8 * BURST_S))

    @property
    def quantum_bytes(self) -> int:
        """HTB quantum (its default, rate / 10, kept in the range the kernel does not warn about)."""
        return min(200_000, max(1514, self.rate_kbit * 1000 // 8 // 10))


def throttle_classes(policy: Policy) -> dict[str, ThrottleClass]:
    """The throttle classes of a policy, keyed by rule name.

    Every ``throttle`` rule, in the order of the rules and whatever its mode (so that switching
    a rule between shadow and enforce does not renumber the others), gets its own class; a
    throttling default comes last, keyed :data:`~sluice.policy.model.DEFAULT_RULE`. Every
    connection one rule throttles shares the rule's rate.

    Raises:
        ConfigError: more than :data:`MAX_THROTTLE_CLASSES` throttle rules, or a rule named like
            the default when the default throttles too.
    """
    named = [(r.name, r.rate_kbit) for r in policy.rules if r.action is Action.THROTTLE]
    if policy.default.action is Action.THROTTLE:
        if any(name == DEFAULT_RULE for name, _ in named):
            raise ConfigError(
                "shaper", f"a throttle rule is named {DEFAULT_RULE!r} and the default throttles"
            )
        named.append((DEFAULT_RULE, policy.default.rate_kbit))
    if len(named) > MAX_THROTTLE_CLASSES:
        raise ConfigError(
            "shaper", f"{len(named)} throttle rules; the mark byte names at most {MAX_THROTTLE_CLASSES}"
        )
    return {name: ThrottleClass(i, name, rate) for i, (name, rate) in enumerate(named)}


def throttle_mark(decision: Decision, classes: Mapping[str, ThrottleClass]) -> int:
    """The mark of a throttle decision: its rule's class's.

    A decision that is not enforced (shadow mode, dry run) passes: :data:`MARK_ALLOW`. So does one
    whose rule has no class in ``classes`` (they were not made from the deciding policy).

    Raises:
        ValueError: the decision's action is not ``throttle``.
    """
    if decision.action is not Action.THROTTLE:
        raise ValueError(f"not a throttle decision: {decision.action.value}")
    if decision.mode is Mode.SHADOW or not decision.enforced:
        return MARK_ALLOW
    cls = classes.get(decision.rule)
    return MARK_ALLOW if cls is None else cls.mark


@dataclass(frozen=True, slots=True)
class ShaperState:
    """What a device holds, as far as the shaper is concerned (see :func:`parse_state`)."""

    device: str
    """The device."""
    root: str
    """Kind and handle of its root qdisc (``htb 51ce:``, ``noqueue 0:``; "" when none is shown)."""
    classes: frozenset[int] = frozenset()
    """Minors of the HTB classes under our root."""
    leaves: tuple[tuple[int, str, str], ...] = ()
    """Leaf qdiscs of those classes: (class minor, kind, handle)."""
    filters: frozenset[int] = frozenset()
    """Handles of the BPF filters at :data:`FILTER_PRIO` under our root."""

    @property
    def ours(self) -> bool:
        """True when the root qdisc is the shaper's."""
        return self.root == f"htb {ROOT_HANDLE}"


_QDISC = re.compile(r"^qdisc (\S+) ([0-9a-f]+:)\s+(?:root|parent (\S+))", re.M)
_CLASS = re.compile(rf"^class htb {ROOT_HANDLE}([0-9a-f]+) ", re.M)
_FILTER = re.compile(
    rf"^filter parent {ROOT_HANDLE} .*\bpref {FILTER_PRIO} bpf .*\bhandle 0x([0-9a-f]+) ", re.M
)


def parse_state(device: str, qdiscs: str, classes: str, filters: str) -> ShaperState:
    """The state of a device from ``tc qdisc show``, ``tc class show`` and ``tc filter show``."""
    root, leaves = "", []
    for kind, handle, parent in _QDISC.findall(qdiscs):
        if not parent:
            root = f"{kind} {handle}"
        elif parent.startswith(ROOT_HANDLE) and parent != ROOT_HANDLE:
            leaves.append((int(parent[len(ROOT_HANDLE) :], 16), kind, handle))
    if root != f"htb {ROOT_HANDLE}":
        return ShaperState(device, root)
    return ShaperState(
        device,
        root,
        frozenset(int(m, 16) for m in _CLASS.findall(classes)),
        tuple(sorted(leaves)),
        frozenset(int(h, 16) for h in _FILTER.findall(filters)),
    )


def _bytecode(mark: int) -> str:
    """Classic BPF: ``mark & MARK_MASK == mark`` -> the filter's class, else no match."""
    prog = [
        (0x20, 0, 0, _SKF_AD_MARK),
        (0x54, 0, 0, MARK_MASK),
        (0x15, 0, 1, mark),
        (6, 0, 0, 0xFFFFFFFF),
        (6, 0, 0, 0),
    ]
    return ",".join([str(len(prog)), *(f"{c} {jt} {jf} {k}" for c, jt, jf, k in prog)])


def _leaf_args(kind: str, cls: ThrottleClass) -> str:
    if kind == "sfq":
        return "perturb 10"
    if kind == "pfifo":
        packets = int(cls.rate_kbit * 1000 / 8 * LEAF_QUEUE_S / 1514)
        return f"limit {min(1000, max(16, packets))}"
    return ""


def plan_install(state: ShaperState, classes: Mapping[str, ThrottleClass], leaf: str) -> list[list[str]]:
    """The ``tc`` commands (without ``tc``) that give ``state.device`` exactly these classes.

    Args:
        state: what the device holds now (:func:`read_state`).
        classes: the throttle classes (:func:`throttle_classes`); none: only the root.
        leaf: the leaf qdisc kind, one of :data:`LEAF_KINDS`.
    """
    if leaf not in LEAF_KINDS:
        raise ConfigError("shaper", f"leaf qdisc {leaf!r} is not one of {', '.join(LEAF_KINDS)}")
    _check_device(state.device)
    dev, root = state.device, ROOT_HANDLE
    want = sorted(classes.values(), key=lambda c: c.index)
    cmds: list[str | list[str]] = []
    if not state.ours:
        cmds.append(f"qdisc replace dev {dev} root handle {root} htb default 0 direct_qlen {DIRECT_QLEN}")
    else:
        minors = {c.minor for c in want}
        for h in sorted(state.filters - minors):
            cmds.append(f"filter del dev {dev} parent {root} prio {FILTER_PRIO} handle {h:#x} bpf")
        for m in sorted(state.classes - minors):
            cmds.append(f"class del dev {dev} classid {root}{m:x}")
    leaves = {m: (kind, handle) for m, kind, handle in state.leaves} if state.ours else {}
    for c in want:
        rate, burst, handle = f"{c.rate_kbit}kbit", f"{c.burst_bytes}b", f"{c.minor:x}:"
        cmds.append(
            f"class replace dev {dev} parent {root} classid {c.classid} htb rate {rate} ceil {rate}"
            f" burst {burst} cburst {burst} quantum {c.quantum_bytes}"
        )
        old = leaves.get(c.minor)
        if old is not None and old[1] == handle and old[0] != leaf:  # ours, of another kind
            cmds.append(f"qdisc del dev {dev} parent {c.classid} handle {handle}")
        cmds.append(
            f"qdisc replace dev {dev} parent {c.classid} handle {handle} {leaf} {_leaf_args(leaf, c)}"
        )
        filt = (
            f"filter replace dev {dev} parent {root} protocol all prio {FILTER_PRIO} handle {c.minor:#x} bpf"
        )
        cmds.append([*filt.split(), "bytecode", _bytecode(c.mark), "classid", c.classid])
    return [c.split() if isinstance(c, str) else c for c in cmds]


def plan_remove(state: ShaperState) -> list[list[str]]:
    """The ``tc`` commands that remove the shaper (none when the root is not ours)."""
    return [["qdisc", "del", "dev", state.device, "root"]] if state.ours else []


def _prefix(netns: str | None) -> list[str]:
    return ["ip", "netns", "exec", netns] if netns else []


def _need_tc() -> None:
    if shutil.which("tc") is None:
        raise ConfigError("shaper", "tc not found (install the iproute2 package); throttling needs it")


def _check_device(dev: str) -> None:
    if not dev or len(dev) > 15 or any(c.isspace() or c in "/:" for c in dev):
        raise ConfigError("shaper", f"bad device name {dev!r}")


def _tc(args: Sequence[str], netns: str | None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [*_prefix(netns), "tc", *args]
    try:
        return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError as exc:
        raise ConfigError("shaper", f"{cmd[0]} not found: {exc}") from None


def read_state(device: str, *, netns: str | None = None) -> ShaperState:
    """What ``device`` holds now.

    Raises:
        ConfigError: ``tc`` is missing or the device does not exist.
    """
    _need_tc()
    _check_device(device)
    texts = []
    for what in ("qdisc", "class", "filter"):
        res = _tc([what, "show", "dev", device], netns)
        if res.returncode != 0:
            raise ConfigError("shaper", f"tc {what} show dev {device} failed: {res.stderr.strip()}")
        texts.append(res.stdout)
    return parse_state(device, *texts)


class _UnknownQdisc(Exception):
    pass


def _apply(cmds: list[list[str]], netns: str | None) -> None:
    if not cmds:
        return
    res = _tc(["-batch", "-"], netns, "".join(shlex.join(c) + "\n" for c in cmds))
    if res.returncode == 0:
        return
    err = res.stderr.strip()
    if "qdisc kind is unknown" in err:
        raise _UnknownQdisc(err)
    failed = re.search(r"Command failed -:(\d+)", err)
    line = (
        f" (tc {shlex.join(cmds[int(failed.group(1)) - 1])})"
        if failed and int(failed.group(1)) <= len(cmds)
        else ""
    )
    raise ConfigError(
        "shaper", f"tc refused a command{line}: {err.splitlines()[0] if err else res.returncode}"
    )


_leaf_found: list[str] = []  # the kernel's first usable leaf kind, once known


def install_shaper(
    devices: Sequence[str],
    classes: Mapping[str, ThrottleClass],
    *,
    netns: str | None = None,
    leaf: str | None = None,
) -> str:
    """Install (or update) the shaper on each device; idempotent.

    Args:
        devices: the devices (shaping is on egress: give every forwarding interface).
        classes: the throttle classes (:func:`throttle_classes`); empty: only the root, every
            packet passes unshaped.
        netns: run in this network namespace (``ip netns exec``); None: the current one.
        leaf: the leaf qdisc; None: the first of :data:`LEAF_KINDS` the kernel has.

    Returns:
        The leaf qdisc kind used.

    Raises:
        ConfigError: ``tc`` is missing, a device does not exist, or tc refused a command.
    """
    _need_tc()
    kinds = [leaf] if leaf else (_leaf_found[:1] or list(LEAF_KINDS))
    for kind in kinds:
        try:
            for dev in devices:
                _apply(plan_install(read_state(dev, netns=netns), classes, kind), netns)
        except _UnknownQdisc:
            continue
        if leaf is None and classes:
            _leaf_found[:] = [kind]
        return kind
    raise ConfigError("shaper", f"the kernel has none of the qdiscs {', '.join(kinds)} (for the leaves)")


def remove_shaper(devices: Sequence[str], *, netns: str | None = None) -> None:
    """Remove the shaper from each device, which gets its default qdisc back; idempotent.

    A root qdisc that is not the shaper's is left alone.

    Raises:
        ConfigError: ``tc`` is missing, a device does not exist, or tc refused the removal.
    """
    if not devices:
        return
    _need_tc()
    for dev in devices:
        try:
            _apply(plan_remove(read_state(dev, netns=netns)), netns)
        except _UnknownQdisc as exc:  # pragma: no cover - a delete names no kind
            raise ConfigError("shaper", str(exc)) from None


def up_devices(*, netns: str | None = None) -> list[str]:
    """The network devices that are up, loopback excepted (those the shaper shapes by default).

    Raises:
        ConfigError: ``ip`` is missing or failed.
    """
    cmd = [*_prefix(netns), "ip", "-j", "link", "show"]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError as exc:
        raise ConfigError("shaper", f"{cmd[0]} not found: {exc}") from None
    if res.returncode != 0:
        raise ConfigError("shaper", f"ip link show failed: {res.stderr.strip()}")
    links = json.loads(res.stdout or "[]")
    return [
        str(link["ifname"])
        for link in links
        if "UP" in link.get("flags", ()) and link.get("link_type") != "loopback"
    ]


class Shaping:
    """The shaper of a running gateway: installed for a policy, updated when its classes change.

    Args:
        devices: the devices to shape; empty: every device that is up (loopback excepted), found
            when a policy first has throttle classes.
        netns: the network namespace (None: the current one).
        report: where messages go (one line each).
    """

    def __init__(
        self,
        devices: Sequence[str] = (),
        *,
        netns: str | None = None,
        report: Callable[[str], None] = print,
    ) -> None:
        self.devices = list(devices)
        self.netns = netns
        self._report = report
        self.classes: dict[str, ThrottleClass] | None = None
        """The classes installed (None: nothing installed yet)."""

    def apply(self, policy: Policy) -> bool:
        """Install the shaper for the policy's classes unless they are installed; True when it did.

        Raises:
            ConfigError: as :func:`install_shaper` (the classes then count as not installed).
        """
        classes = throttle_classes(policy)
        if classes == self.classes or (not classes and not self.devices):
            return False
        if not self.devices:
            self.devices = up_devices(netns=self.netns)
            self._report(f"sluice gateway: shaping {', '.join(self.devices) or 'no device'} (no --shape-dev)")
        self.classes = None
        leaf = install_shaper(self.devices, classes, netns=self.netns)
        self.classes = classes
        rates = ", ".join(f"{c.rule!r} {c.rate_kbit} kbit/s" for c in classes.values())
        what = f"throttle classes {rates} ({leaf} leaves)" if classes else "no throttle class"
        self._report(f"sluice gateway: shaper on {', '.join(self.devices) or 'no device'}: {what}")
        return True
