"""Namespaces for the gateway tests: client -- gateway -- server over veth pairs (root only)."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

CLI_IP, GW_CLI_IP, GW_SRV_IP, SRV_IP = "10.231.1.2", "10.231.1.1", "10.231.2.1", "10.231.2.2"
PY = sys.executable
_counter = itertools.count()


def need_gateway_env() -> None:
    """Skip unless root, with ip, iptables and netfilterqueue."""
    if os.geteuid() != 0:
        pytest.skip("gateway tests need root (network namespaces, netfilter); CI runs as root")
    for tool in ("ip", "iptables", "iptables-save", "ip6tables"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found (apt install iproute2 iptables)")
    try:
        import netfilterqueue  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        pytest.skip("netfilterqueue not installed (pip install NetfilterQueue; needs libnetfilter-queue-dev)")


def unique(tag: str) -> str:
    """A name no other test run uses now (pid and a counter)."""
    return f"sg{tag}{os.getpid() % 100000}x{next(_counter)}"


def sh(*args: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """Run a command, text output."""
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=timeout)


@dataclass
class Topo:
    """Three namespaces: ``cli`` (10.231.1.2) -- ``gw`` -- ``srv`` (10.231.2.2)."""

    cli: str
    gw: str
    srv: str

    def ex(self, ns: str, *args: str) -> list[str]:
        """A command line running ``args`` in namespace ``ns``."""
        return ["ip", "netns", "exec", ns, *args]


@pytest.fixture
def netns() -> Iterator[str]:
    """One fresh, empty network namespace."""
    need_gateway_env()
    name = unique("n")
    sh("ip", "netns", "add", name)
    try:
        yield name
    finally:
        sh("ip", "netns", "del", name, check=False)


@pytest.fixture
def topo() -> Iterator[Topo]:
    """Client, gateway and server namespaces, forwarding on the gateway."""
    need_gateway_env()
    base = unique("")
    t = Topo(f"{base}c", f"{base}g", f"{base}s")
    try:
        for ns in (t.cli, t.gw, t.srv):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", "c0", "netns", t.cli, "type", "veth", "peer", "name", "g0", "netns", t.gw)
        sh("ip", "link", "add", "g1", "netns", t.gw, "type", "veth", "peer", "name", "s0", "netns", t.srv)
        for ns, dev, addr in (
            (t.cli, "c0", CLI_IP),
            (t.gw, "g0", GW_CLI_IP),
            (t.gw, "g1", GW_SRV_IP),
            (t.srv, "s0", SRV_IP),
        ):
            sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", t.cli, "route", "add", "default", "via", GW_CLI_IP)
        sh("ip", "-n", t.srv, "route", "add", "default", "via", GW_SRV_IP)
        sh(*t.ex(t.gw, "sysctl", "-qw", "net.ipv4.ip_forward=1"))
        yield t
    finally:
        for ns in (t.cli, t.gw, t.srv):
            pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)
        for ns in (t.cli, t.gw, t.srv):
            sh("ip", "netns", "del", ns, check=False)


def wait_port(topo: Topo, ns: str, port: int, timeout: float = 10) -> None:
    """Wait until something listens on TCP ``port`` in ``ns``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        out = sh(*topo.ex(ns, "ss", "-Hltn", f"sport = :{port}"), check=False).stdout
        if out.strip():
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port} in {ns}")


def repo_root() -> Path:
    """The repository root."""
    return Path(__file__).resolve().parents[2]
