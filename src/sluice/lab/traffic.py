"""Payload mixes: page loads, bulk downloads, interactive requests and idle gaps, with curl.

A session's web site (:func:`make_site`) is random files whose SHA-256 the lab knows; every
download is checked against it, so a transfer only counts when the exact bytes came back.
:func:`plan_mix` draws a sequence of actions from the session's random generator and
:func:`run_mix` runs them with curl in the client namespace (through whatever proxy or tunnel the
scenario set up).
"""

from __future__ import annotations

__all__ = [
    "CURL_CFFI_TARGETS",
    "Action",
    "ClientCommand",
    "Fetch",
    "Site",
    "TrafficReport",
    "cffi_args",
    "make_site",
    "plan_mix",
    "run_mix",
    "served_from",
    "with_gap",
]

import hashlib
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from sluice.lab.httpd import read_server_log
from sluice.lab.topology import LabError, Topology

MIX_KINDS = ("page", "bulk", "interactive", "idle")


@dataclass(frozen=True, slots=True)
class Site:
    """Files a lab web server serves, with their sizes and digests."""

    root: Path
    """Directory served."""
    files: dict[str, tuple[int, str]]
    """File name -> (size, sha256 hex)."""

    def names(self, prefix: str) -> list[str]:
        """File names starting with ``prefix`` (sorted)."""
        return sorted(n for n in self.files if n.startswith(prefix))


def make_site(root: Path, rng: random.Random, *, bulk_max: int = 2_000_000) -> Site:
    """Write a random site: ~30 small objects, 3 bulk files and an index page."""
    root.mkdir(parents=True, exist_ok=True)
    files: dict[str, tuple[int, str]] = {}
    sizes = {f"o{i:02d}.bin": rng.randrange(200, 60_000) for i in range(30)}
    sizes |= {f"bulk{i}.bin": rng.randrange(200_000, max(bulk_max, 200_001)) for i in range(3)}
    sizes |= {f"t{i:02d}.txt": rng.randrange(20, 600) for i in range(20)}
    for name, size in sizes.items():
        data = rng.randbytes(size)
        (root / name).write_bytes(data)
        files[name] = (size, hashlib.sha256(data).hexdigest())
    index = b"<!doctype html><title>lab</title>" + b"".join(
        f'<img src="{n}">'.encode() for n in sorted(sizes)[:8]
    )
    (root / "index.html").write_bytes(index)
    files["index.html"] = (len(index), hashlib.sha256(index).hexdigest())
    return Site(root, files)


@dataclass(frozen=True, slots=True)
class Action:
    """One step of a payload mix."""

    kind: str
    """``page``, ``bulk``, ``interactive`` or ``idle``."""
    files: tuple[str, ...] = ()
    """Files to fetch (one connection, in order)."""
    pause_s: float = 0.0
    """Idle time after the step (for ``interactive``: time between requests)."""


def plan_mix(rng: random.Random, site: Site, duration_s: float, *, bulk: bool = True) -> list[Action]:
    """A random mix that starts with a page load and (if ``bulk``) has a bulk download.

    ``bulk=False`` leaves bulk downloads out and loads pages of small text objects only, for
    slow carriers (ICMP, DNS tunnels).
    """
    weights = [rng.random() + 0.2 if bulk or k != "bulk" else 0.0 for k in MIX_KINDS]
    objs = site.names("o") if bulk else site.names("t")
    actions = [Action("page", ("index.html", *rng.sample(objs, rng.randrange(3, 9))))]
    if bulk:
        actions.append(Action("bulk", (rng.choice(site.names("bulk")),)))
    budget = duration_s - 1.0
    while budget > 0:
        kind = rng.choices(MIX_KINDS, weights)[0]
        if kind == "page":
            actions.append(Action(kind, tuple(rng.sample(objs, rng.randrange(2, 10)))))
            budget -= 0.4
        elif kind == "bulk":
            actions.append(Action(kind, (rng.choice(site.names("bulk")),)))
            budget -= 0.6
        elif kind == "interactive":
            n = rng.randrange(3, 10)
            gap = rng.uniform(0.05, 0.4)
            actions.append(Action(kind, tuple(rng.choices(site.names("t"), k=n)), gap))
            budget -= n * gap + 0.1
        else:
            pause = rng.uniform(0.3, 1.5)
            actions.append(Action(kind, (), pause))
            budget -= pause
    rng.shuffle(actions[1:])
    return actions


@dataclass(slots=True)
class TrafficReport:
    """What the client got, checked byte for byte."""

    ok: int = 0
    """Transfers whose content matched the site."""
    failed: int = 0
    """Transfers that failed or returned other bytes."""
    bytes_ok: int = 0
    """Payload bytes of the good transfers."""
    files_ok: list[str] = field(default_factory=list)
    """Names of the good transfers, in order."""
    errors: list[str] = field(default_factory=list)
    """Short descriptions of what failed."""


@dataclass(frozen=True, slots=True)
class Fetch:
    """One step of a payload mix for a client other than curl: URLs in order, where each must land."""

    kind: str
    """The action's kind (``page``, ``bulk``, ``interactive``)."""
    urls: tuple[str, ...]
    """URLs to fetch, in order."""
    outputs: tuple[Path, ...]
    """File each URL's body must be written to (same order)."""
    gap_s: float
    """Pause between requests (``interactive``), 0 otherwise."""
    timeout: float
    """Seconds the step may take."""


ClientCommand = Callable[[Fetch], Sequence[Sequence[str]]]
"""Makes the commands of one step; :func:`run_mix` runs them in the client namespace, in order,
``gap_s`` apart (a client that can pause between requests itself returns one command)."""


def _url_pairs(f: Fetch) -> list[str]:
    """``URL OUT URL OUT …`` of one step."""
    return [x for u, o in zip(f.urls, f.outputs, strict=True) for x in (u, str(o))]


def with_gap(argv: Sequence[str]) -> ClientCommand:
    """A client that takes ``--gap S URL OUT ...`` itself (:mod:`sluice.lab.webclients`)."""

    def make(f: Fetch) -> list[list[str]]:
        return [[*argv, "--gap", f"{f.gap_s:.3f}", *_url_pairs(f)]]

    return make


CURL_CFFI_TARGETS = {
    "chrome": ("chrome120", "chrome124", "chrome131", "chrome136", "chrome142"),
    "firefox": ("firefox133", "firefox135", "firefox144"),
    "safari": ("safari170", "safari180", "safari184", "safari260"),
}
"""curl-cffi's impersonation targets per browser the lab draws from."""

_PROXY_FLAGS = {"--socks5-hostname": "socks5h", "--socks5": "socks5", "-x": "", "--proxy": ""}
_SAME_FLAGS = {"--connect-to": "--connect-to", "--resolve": "--resolve", "--interface": "--interface"}


def cffi_args(curl_args: Sequence[str]) -> list[str] | None:
    """The :mod:`sluice.lab.webclients` options (``--lib curl-cffi``) that do what ``curl_args``
    do — CA file, proxy and its user, ``--connect-to``, ``--resolve``, ``--interface`` — or
    ``None`` when one of them has no counterpart (the caller then keeps curl): an option curl-cffi
    lacks, or ``--connect-to`` through an HTTP proxy."""
    out: list[str] = []
    proxy, user = "", ""
    it = iter(curl_args)
    for flag in it:
        if flag == "--proxytunnel":  # curl-cffi tunnels https:// through an HTTP proxy itself
            continue
        value = next(it, None)
        if value is None:
            return None
        if flag == "--cacert":
            out += ["--cafile", value]
        elif flag in _SAME_FLAGS:
            out += [_SAME_FLAGS[flag], value]
        elif flag in _PROXY_FLAGS:
            scheme = _PROXY_FLAGS[flag]
            proxy = f"{scheme}://{value}" if scheme else value
        elif flag == "--proxy-user":
            name, _, secret = value.partition(":")
            user = f"{quote(name, safe='')}:{quote(secret, safe='')}@"
        else:
            return None
    if proxy:
        scheme, sep, rest = proxy.partition("://")
        if "--connect-to" in out:
            # curl-cffi emulates --connect-to with --resolve, which only a client that resolves
            # names itself applies: SOCKS5 with local resolution; an HTTP proxy resolves CONNECT's
            # name on its side (no DNS in the lab), so that case keeps curl
            if scheme not in ("socks5", "socks5h"):
                return None
            scheme = "socks5"
        out += ["--proxy", f"{scheme}{sep}{user}{rest}" if sep else f"http://{user}{proxy}"]
    return out if "--cafile" in out else None


def _client(
    topo: Topology,
    client: ClientCommand,
    act: Action,
    base_url: str,
    outdir: Path,
    timeout: float,
    env: Mapping[str, str] | None,
) -> tuple[list[tuple[str, Path, str]], str]:
    stamp = time.monotonic_ns()
    outs = [(name, outdir / f"{stamp}-{i}-{name}", "") for i, name in enumerate(act.files)]
    gap = act.pause_s if act.kind == "interactive" else 0.0
    fetch = Fetch(
        act.kind,
        tuple(f"{base_url.rstrip('/')}/{name}" for name in act.files),
        tuple(p for _, p, _ in outs),
        gap,
        timeout,
    )
    errs = []
    for i, argv in enumerate(client(fetch)):
        if i:
            time.sleep(gap)
        r = topo.run("client", argv, check=False, timeout=timeout + 5, env=env)
        if r.returncode != 0 or r.stderr.strip():
            errs.append(f"{argv[0]} rc {r.returncode}: {r.stderr.strip()[-200:]}")
    return outs, " | ".join(errs)


def _curl(
    topo: Topology,
    base_url: str,
    files: Sequence[str],
    outdir: Path,
    curl_args: Sequence[str],
    rate_per_min: int | None,
    timeout: float,
) -> tuple[list[tuple[str, Path, str]], str]:
    argv = [
        "curl",
        "-sS",
        "--max-time",
        str(int(timeout)),
        *curl_args,
        "-w",
        "%{http_code} %{size_download}\\n",
    ]
    if rate_per_min:
        argv += ["--rate", f"{rate_per_min}/m"]
    outs = []
    for i, name in enumerate(files):
        out = outdir / f"{time.monotonic_ns()}-{i}-{name}"
        argv += ["-o", str(out), f"{base_url.rstrip('/')}/{name}"]
        outs.append((name, out, ""))
    r = topo.run("client", argv, check=False, timeout=timeout + 5)
    return outs, r.stderr.strip()


def run_mix(
    topo: Topology,
    actions: Iterable[Action],
    site: Site,
    base_url: str,
    *,
    curl_args: Sequence[str] = (),
    timeout: float = 20,
    client: ClientCommand | None = None,
    env: Mapping[str, str] | None = None,
) -> TrafficReport:
    """Run ``actions`` with curl (or ``client``) in the client namespace and check every download.

    Args:
        topo: topology the client runs in.
        actions: from :func:`plan_mix`.
        site: the files the server serves.
        base_url: URL the files are under, as the client reaches them.
        curl_args: extra curl arguments (proxy, CA file, TLS options ...).
        timeout: per curl run (per step of ``client``), seconds.
        client: makes the commands of each step instead of curl (``curl_args`` is then unused).
        env: extra environment of ``client``'s commands.
    """
    rep = TrafficReport()
    outdir = topo.workdir / "downloads"
    outdir.mkdir(exist_ok=True)
    for act in actions:
        if act.kind == "idle":
            time.sleep(act.pause_s)
            continue
        rate = int(60 / act.pause_s) if act.kind == "interactive" and act.pause_s > 0 else None
        if client is None:
            outs, err = _curl(topo, base_url, act.files, outdir, curl_args, rate, timeout)
        else:
            outs, err = _client(topo, client, act, base_url, outdir, timeout, env)
        for name, path, _ in outs:
            size, digest = site.files[name]
            try:
                data = path.read_bytes()
                path.unlink()
            except FileNotFoundError:
                data = None
            if data is not None and len(data) == size and hashlib.sha256(data).hexdigest() == digest:
                rep.ok += 1
                rep.bytes_ok += size
                rep.files_ok.append(name)
            else:
                rep.failed += 1
                got = "nothing" if data is None else f"{len(data)} bytes"
                rep.errors.append(f"{act.kind} {name}: got {got} {err[-160:]}")
    return rep


def served_from(log: Path, clients: Iterable[str]) -> tuple[int, int]:
    """Requests with status 200 in a server log: (from ``clients``, from anywhere else).

    Raises:
        LabError: the log has no request at all.
    """
    allowed = set(clients)
    recs = [r for r in read_server_log(log) if r.get("status") == 200]
    if not recs:
        raise LabError("lab.no_server_requests", str(log))
    inside = sum(1 for r in recs if r.get("client") in allowed)
    return inside, len(recs) - inside
