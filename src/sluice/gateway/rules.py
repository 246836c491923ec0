"""The netfilter rules of the inline gateway (iptables, nft backend; the kernel has no ``nft queue``).

Theory of operation: one chain (``SLUICE`` by default) in the ``filter`` table, jumped to from the
top of ``FORWARD``, for IPv4 (``iptables``) and IPv6 (``ip6tables``)::

    -m mark ! --mark 0/MASK -j CONNMARK --save-mark --nfmask MASK --ctmask MASK   # verdict just given
    -m connmark --mark DROP/MASK -j DROP
    -p tcp -m connmark --mark RESET/MASK -j REJECT --reject-with tcp-reset
    -m connmark --mark RESET/MASK -j REJECT --reject-with icmp-port-unreachable
    -m connmark ! --mark 0/MASK -j CONNMARK --restore-mark --nfmask MASK --ctmask MASK
    -m connmark ! --mark 0/MASK -j RETURN                  # decided: allow, log, throttle
    -m connbytes --connbytes 0:N --connbytes-dir both --connbytes-mode packets
        -j NFQUEUE --queue-num Q [--queue-bypass]           # the first N packets of the rest

With several worker processes (``RuleSet.queues`` > 1) the last rule is ``-j NFQUEUE
--queue-balance Q:Q+W-1``: the kernel picks the queue from a hash of the packet's addresses and
protocol, ordered so that both directions of a connection (and every fragment) land on the same
queue (``hash_v4``/``hash_v6`` in ``include/net/netfilter/nf_queue.h``; ports are not hashed, so
every connection between two hosts goes to one queue).

The gateway gives its verdict by setting the packet mark and ``repeat``: the packet runs the hook
again, the first rule copies the mark into the conntrack mark, and the kernel applies it to the
rest of the connection without asking userspace again. Every packet of a decided connection that
passes gets the conntrack mark back as its packet mark (``--restore-mark``): the shaper's filters
(:mod:`sluice.gateway.shaper`) classify throttled packets by it. ``--queue-bypass`` decides what
happens to undecided packets when no process listens on the queue: accepted (fail-open) or
dropped (fail-closed). Connections already decided keep their conntrack mark either way.

:func:`setup` replaces whatever the chain held (so it is idempotent and changes options in place);
:func:`teardown` removes the jump and the chain and does nothing when they are absent.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_CHAIN",
    "DEFAULT_PACKETS",
    "MARK_ALLOW",
    "MARK_DROP",
    "MARK_MASK",
    "MARK_RESET",
    "MARK_THROTTLE",
    "RuleSet",
    "is_installed",
    "setup",
    "teardown",
]

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from sluice.errors import ConfigError

DEFAULT_CHAIN = "SLUICE"
"""Name of the chain the gateway owns."""
DEFAULT_PACKETS = 12
"""Packets of each connection (both directions) sent to userspace."""
MARK_MASK = 0xFF00
"""Bits of the packet and conntrack marks the gateway uses (others are left alone)."""
MARK_ALLOW = 0x0100
"""Decided: pass (allow, log, shadow decisions)."""
MARK_DROP = 0x0200
"""Decided: drop every packet."""
MARK_RESET = 0x0300
"""Decided: refuse (TCP RST, ICMP port unreachable)."""
MARK_THROTTLE = 0x0400
"""Decided: pass, rate-limited: throttle class ``i`` is ``MARK_THROTTLE + i * 0x100`` (bytes 4..255;
the classes and the shaper are :mod:`sluice.gateway.shaper`'s, not installed by :func:`setup`)."""

_FAMILIES = (("iptables", "icmp-port-unreachable"), ("ip6tables", "icmp6-port-unreachable"))


@dataclass(frozen=True, slots=True)
class RuleSet:
    """What :func:`setup` installs."""

    queue: int
    """NFQUEUE number (0-65535); the first of ``queues``."""
    bypass: bool = False
    """True: fail-open (``--queue-bypass``); False: fail-closed."""
    packets: int = DEFAULT_PACKETS
    """Packets of each connection (both directions) sent to the queue."""
    chain: str = DEFAULT_CHAIN
    """The gateway's chain."""
    parent: str = "FORWARD"
    """Built-in chain that jumps to it."""
    queues: int = 1
    """Queues ``queue .. queue + queues - 1`` balanced by the kernel (one per worker process)."""

    def __post_init__(self) -> None:
        if not 0 <= self.queue <= 65535:
            raise ConfigError("queue", f"must be 0-65535, not {self.queue}")
        if not 1 <= self.queues <= 64 or self.queue + self.queues > 65536:
            raise ConfigError("workers", f"1-64 queues from {self.queue} up to 65535, not {self.queues}")
        if not 1 <= self.packets <= 1_000_000:
            raise ConfigError("packets", f"must be 1-1000000, not {self.packets}")
        if (
            not self.chain
            or len(self.chain) > 28
            or not self.chain.replace("-", "").replace("_", "").isalnum()
        ):
            raise ConfigError("chain", f"bad chain name {self.chain!r}")

    def rules(self, reject_with: str) -> list[list[str]]:
        """The chain's rules as iptables arguments (after ``-A CHAIN``)."""
        mask = f"{MARK_MASK:#x}"
        drop, reset = f"{MARK_DROP:#x}/{mask}", f"{MARK_RESET:#x}/{mask}"
        last = self.queue + self.queues - 1
        queue = (
            f"-j NFQUEUE --queue-balance {self.queue}:{last}"
            if self.queues > 1
            else f"-j NFQUEUE --queue-num {self.queue}"
        ) + (" --queue-bypass" if self.bypass else "")
        lines = [
            f"-m mark ! --mark 0/{mask} -j CONNMARK --save-mark --nfmask {mask} --ctmask {mask}",
            f"-m connmark --mark {drop} -j DROP",
            f"-p tcp -m connmark --mark {reset} -j REJECT --reject-with tcp-reset",
            f"-m connmark --mark {reset} -j REJECT --reject-with {reject_with}",
            f"-m connmark ! --mark 0/{mask} -j CONNMARK --restore-mark --nfmask {mask} --ctmask {mask}",
            f"-m connmark ! --mark 0/{mask} -j RETURN",
            f"-m connbytes --connbytes 0:{self.packets} --connbytes-dir both"
            f" --connbytes-mode packets {queue}",
        ]
        return [line.split() for line in lines]


def _prefix(netns: str | None) -> list[str]:
    return ["ip", "netns", "exec", netns] if netns else []


def _run(cmd: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        res = subprocess.run(list(cmd), capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError as exc:
        raise ConfigError("iptables", f"{cmd[0]} not found: {exc}") from None
    if check and res.returncode != 0:
        raise ConfigError("iptables", f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}")
    return res


def _tools(ipv6: bool) -> list[tuple[str, str]]:
    fams = list(_FAMILIES if ipv6 else _FAMILIES[:1])
    for tool, _ in fams:
        if shutil.which(tool) is None:
            raise ConfigError("iptables", f"{tool} not found (install the iptables package)")
    return fams


def setup(rs: RuleSet, *, netns: str | None = None, ipv6: bool = True) -> None:
    """Install (or replace) the gateway's chain and the jump to it; idempotent.

    Args:
        rs: the rules.
        netns: run in this network namespace (``ip netns exec``); None: the current one.
        ipv6: also install the IPv6 rules.

    Raises:
        ConfigError: iptables is missing or refused a rule.
    """
    pre = _prefix(netns)
    for tool, reject_with in _tools(ipv6):
        ipt = [*pre, tool, "-w", "-t", "filter"]
        if _run([*ipt, "-n", "-L", rs.chain], check=False).returncode != 0:
            _run([*ipt, "-N", rs.chain])
        _run([*ipt, "-F", rs.chain])
        for rule in rs.rules(reject_with):
            _run([*ipt, "-A", rs.chain, *rule])
        if _run([*ipt, "-C", rs.parent, "-j", rs.chain], check=False).returncode != 0:
            _run([*ipt, "-I", rs.parent, "1", "-j", rs.chain])


def teardown(
    *, chain: str = DEFAULT_CHAIN, parent: str = "FORWARD", netns: str | None = None, ipv6: bool = True
) -> None:
    """Remove the jump and the chain (nothing happens when they are absent); idempotent.

    Raises:
        ConfigError: iptables is missing or refused to remove the chain.
    """
    pre = _prefix(netns)
    for tool, _ in _tools(ipv6):
        ipt = [*pre, tool, "-w", "-t", "filter"]
        for _ in range(64):  # every jump, should there be several
            if _run([*ipt, "-D", parent, "-j", chain], check=False).returncode != 0:
                break
        if _run([*ipt, "-n", "-L", chain], check=False).returncode == 0:
            _run([*ipt, "-F", chain])
            _run([*ipt, "-X", chain])


def is_installed(*, chain: str = DEFAULT_CHAIN, parent: str = "FORWARD", netns: str | None = None) -> bool:
    """Whether the IPv4 jump to the chain is in place."""
    ipt = [*_prefix(netns), "iptables", "-w", "-t", "filter"]
    return _run([*ipt, "-C", parent, "-j", chain], check=False).returncode == 0
