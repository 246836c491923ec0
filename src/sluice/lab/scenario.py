"""What a scenario is: programs it needs, variants, and a ``run`` that proves its traffic flowed.

A scenario's :meth:`Scenario.run` gets a :class:`Session` (topology that is up and captured, a
seeded random generator, a work directory, helpers for the web server and payload mixes), starts
the real programs, pushes traffic through them and returns an :class:`Outcome`: the rules that say
which flows are which class and family, the evidence of its checks, and how many payload bytes
the carrier flows must hold.  The runner writes labels only when the outcome has no problem and
the capture confirms the carrier bytes.
"""

from __future__ import annotations

__all__ = [
    "FlowRule",
    "InnerWeb",
    "Outcome",
    "Scenario",
    "Session",
    "transfer_checks",
    "verify_web",
    "which",
]

import os
import random
import shutil
import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal, TypeVar

from sluice.lab.labels import FiveTuple
from sluice.lab.pki import CHAINS, Issued, LabCA, random_hostname
from sluice.lab.topology import LabError, Role, Topology
from sluice.lab.traffic import (
    CURL_CFFI_TARGETS,
    ClientCommand,
    Site,
    TrafficReport,
    cffi_args,
    make_site,
    plan_mix,
    run_mix,
    served_from,
    with_gap,
)

T = TypeVar("T")
ParamValue = str | int | float | bool | list[str] | None
_EXTRA_PATH = ("/usr/sbin", "/sbin", "/usr/lib/ipsec")
PROTO = {"tcp": 6, "udp": 17, "icmp": 1}


def which(program: str) -> str | None:
    """Full path of ``program`` (also searching sbin and /usr/lib/ipsec), or ``None``."""
    path = os.environ.get("PATH", "") + os.pathsep + os.pathsep.join(_EXTRA_PATH)
    return shutil.which(program, path=path)


@dataclass(frozen=True, slots=True)
class FlowRule:
    """Flows to or from ``ip``:``port`` over ``proto`` are ``traffic_class``/``family``."""

    name: str
    """Rule name, copied into the label (``carrier``)."""
    proto: int
    """IP protocol number."""
    ip: str
    """Address of the server end."""
    port: int | None
    """Port of the server end; ``None`` matches any (ICMP, or any port of ``ip``)."""
    traffic_class: str
    """TAXONOMY.md class."""
    family: str
    """TAXONOMY.md family."""
    carrier: bool = True
    """Whether these flows carry the session's payload (checked against ``carried_bytes``)."""

    def matches(self, key: FiveTuple) -> bool:
        """Whether the flow ``key`` (either direction) falls under this rule."""
        if key.proto != self.proto:
            return False
        if key.dst == self.ip and (self.port is None or key.dport == self.port):
            return True
        return key.src == self.ip and (self.port is None or key.sport == self.port)


@dataclass(slots=True)
class Outcome:
    """What a scenario run produced."""

    rules: list[FlowRule]
    """Label rules, first match wins."""
    software: list[str]
    """Programs that ran (binary names; the runner looks up package versions)."""
    checks: dict[str, ParamValue] = field(default_factory=dict)
    """Evidence of the scenario's own checks (transfers, handshakes ...)."""
    problems: list[str] = field(default_factory=list)
    """Why the session does not count; empty when the scenario's checks passed."""
    carried_bytes: int = 0
    """Payload bytes that the carrier flows must at least hold in the capture."""


@dataclass(frozen=True, slots=True)
class InnerWeb:
    """The web server at the far end of a carrier, as the client's curl reaches it."""

    scheme: str
    """``http`` or ``https`` (session parameter ``inner``)."""
    url: str
    """Base URL for :meth:`Session.web_traffic`."""
    curl: list[str]
    """curl arguments it needs (CA file, ``--connect-to``); add the proxy's own."""
    log: Path
    """The server's request log (for :func:`verify_web`)."""
    port: int
    """Port the server listens on."""
    software: list[str]
    """Programs that serve it (``python3``, ``nginx``)."""


class Session:
    """Everything a scenario run gets: topology, randomness, files and helpers.

    Args:
        topo: the topology (up, capture running).
        rng: the session's random generator (seeded by seed, scenario, variant, index).
        duration_s: target length of the payload mix, seconds.
    """

    def __init__(
        self, topo: Topology, rng: random.Random, duration_s: float, pins: Mapping[str, str] | None = None
    ) -> None:
        self.topo = topo
        self.rng = rng
        self.duration_s = duration_s
        self.pins = dict(pins or {})
        """Parameters fixed by the run (``sluice lab run --set inner=https``): :meth:`choose`
        returns the option written so instead of drawing one."""
        self.addr = topo.addr
        self.workdir = topo.workdir
        self.params: dict[str, ParamValue] = {}
        self._site: Site | None = None
        self._ca: LabCA | None = None

    @property
    def python(self) -> str:
        """The interpreter running sluice (for :mod:`sluice.lab.httpd`)."""
        return sys.executable

    def choose(self, key: str, options: Sequence[T]) -> T:
        """Pick one of ``options`` and record it as parameter ``key``.

        The draw happens even when ``key`` is pinned, so the other parameters of a pinned
        session are the ones its seed gives unpinned.

        Raises:
            LabError: ``key`` is pinned to a value that is not one of ``options``.
        """
        value = self.rng.choice(list(options))
        if key in self.pins:
            named = [o for o in options if str(o) == self.pins[key]]
            if not named:
                choices = ", ".join(str(o) for o in options)
                raise LabError("lab.bad_pin", f"{key}={self.pins[key]} is not one of: {choices}")
            value = named[0]
        self.params[key] = value if isinstance(value, str | int | float | bool) else str(value)
        return value

    def identify(self, *, stack: str, impl: str) -> None:
        """Record which client stack made the traffic and which implementation carried it.

        ``stack`` names the client program and its TLS library (``curl-openssl``,
        ``chromium``, ``python-httpx``); ``impl`` names the implementation of the carrier
        protocol (``shadowsocks-libev``, ``v2ray``, ``pproxy``) or the server for direct
        benign traffic (``nginx``).  Evaluations hold out one stack or one implementation at a
        time (:mod:`sluice.detect.evaluate`), so every scenario should say both.
        """
        self.params["stack"] = self._inner_stack(stack)
        self.params["impl"] = impl

    def _inner_stack(self, stack: str) -> str:
        """``stack`` with curl replaced by the browser curl-cffi impersonates, when it fetches."""
        if self.params.get("inner_client") != "curl-cffi" or not stack.startswith("curl-openssl"):
            return stack
        return f"curl-cffi-{self.params['inner_browser']}" + stack.removeprefix("curl-openssl")

    def port(self, key: str, default: int, p_default: float = 0.3) -> int:
        """The program's default port with probability ``p_default``, else a random high port."""
        value = default if self.rng.random() < p_default else self.rng.randrange(1025, 60000)
        self.params[key] = value
        return value

    def file(self, name: str, text: str, mode: int = 0o644) -> Path:
        """Write a config file into the work directory."""
        p = self.workdir / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        p.chmod(mode)
        return p

    @property
    def site(self) -> Site:
        """The session's random web site (made on first use)."""
        if self._site is None:
            self._site = make_site(self.workdir / "www", self.rng)
        return self._site

    @property
    def ca(self) -> LabCA:
        """The session's certificate authority (made on first use)."""
        if self._ca is None:
            kt = self.choose("key_type", ("ec-p256", "ec-p384", "rsa-2048"))
            self._ca = LabCA(self.workdir / "pki", kt)
        return self._ca

    def hostname(self, key: str = "server_name") -> str:
        """A random server name, recorded as parameter ``key``."""
        name = random_hostname(self.rng)
        self.params[key] = name
        return name

    def server_cert(self, name: str, key: str = "chain") -> Issued:
        """A certificate for ``name`` with a drawn chain (parameter ``key``, one of
        :data:`~sluice.lab.pki.CHAINS`); a public-like leaf also names 1-6 other hosts."""
        chain = self.choose(key, CHAINS)
        others = (
            tuple(random_hostname(self.rng) for _ in range(self.rng.randint(1, 6))) if chain != "leaf" else ()
        )
        return self.ca.issue(name, chain=chain, alt_names=others)

    def start_httpd(
        self,
        bind: str,
        port: int = 8080,
        *,
        role: Role = "server",
        name: str = "httpd",
        tls: tuple[Path, Path] | None = None,
        tls_args: Sequence[str] = (),
        proto: Literal["tcp"] = "tcp",
    ) -> Path:
        """Start the lab web server on ``bind``:``port`` and return its request log."""
        log = self.workdir / f"{name}-requests.jsonl"
        argv = [
            self.python,
            "-m",
            "sluice.lab.httpd",
            "--bind",
            bind,
            "--port",
            str(port),
            "--root",
            str(self.site.root),
            "--log",
            str(log),
        ]
        if tls:
            argv += ["--cert", str(tls[0]), "--key", str(tls[1]), *tls_args]
        self.topo.spawn(role, name, argv)
        self.topo.wait_port(role, port, proto)
        return log

    def inner_web(
        self,
        bind: str,
        *,
        default_port: int = 8080,
        p_default: float = 0.3,
        reach: tuple[str, int] | None = None,
        inner: Sequence[str] = ("http", "https"),
    ) -> InnerWeb:
        """Start the web server a carrier leads to, plain HTTP or HTTPS (parameter ``inner``).

        With ``https`` the server has a certificate from the session's CA for a random name
        (parameter ``inner_name``; its chain, ``inner_chain``, is the root-signed leaf alone or
        a public site's 2-3 KB chain: :data:`~sluice.lab.pki.CHAINS`) and is either the lab
        server or nginx (``inner_server``); the URL keeps that name, so curl's TLS handshake
        (SNI, certificate check) runs end to end through the carrier, and ``--connect-to``
        sends the connection where the client reaches the server (the IP literal goes to a
        proxy, not the name: the lab has no DNS).

        Args:
            bind: address the server listens on (server namespace).
            default_port: plain HTTP's usual port here (HTTPS's is 443), parameter ``http_port``.
            p_default: probability of the usual port.
            reach: (host, port) the client connects to when that is not ``bind``:port (the
                local end of a port forward).
            inner: the choices; ``("http",)`` where the carrier can only forward plain HTTP.
        """
        scheme = self.choose("inner", inner)
        port = self.port("http_port", default_port if scheme == "http" else 443, p_default)
        host, cport = reach or (bind, port)
        if scheme == "http":
            log = self.start_httpd(bind, port)
            return InnerWeb(scheme, f"http://{host}:{cport}", [], log, port, ["python3"])
        name = self.hostname("inner_name")
        cert = self.server_cert(name, "inner_chain")
        tls = (cert.cert, cert.key)
        servers = ("python", "nginx") if which("nginx") else ("python",)
        if self.choose("inner_server", servers) == "nginx":
            from sluice.lab.nginx import start_nginx

            log = start_nginx(self, bind, port, tls=tls, http2=self.choose("inner_h2", (False, True)))
            software = ["nginx"]
        else:
            log = self.start_httpd(bind, port, tls=tls)
            software = ["python3"]
        curl = ["--cacert", str(self.ca.cert), "--connect-to", f"{name}:{port}:{host}:{cport}"]
        return InnerWeb(scheme, f"https://{name}:{port}", curl, log, port, software)

    def web_traffic(
        self,
        base_url: str,
        curl_args: Sequence[str] = (),
        *,
        bulk: bool = True,
        timeout: float = 20,
    ) -> TrafficReport:
        """Run a random payload mix against the site and record the mix in the parameters.

        To an HTTPS server behind a carrier (:meth:`inner_web` chose ``https``) the client is drawn
        too (parameter ``inner_client``): curl with OpenSSL, or curl-cffi impersonating a browser
        (``inner_browser``, ``impersonate``), so the handshake nested in the carrier is not always
        curl's (``params.stack`` then starts with ``curl-cffi-<browser>``).
        """
        actions = plan_mix(self.rng, self.site, self.duration_s, bulk=bulk)
        self.params["mix"] = [a.kind for a in actions]
        client = self._inner_client(curl_args, timeout)
        return run_mix(
            self.topo, actions, self.site, base_url, curl_args=curl_args, timeout=timeout, client=client
        )

    def _inner_client(self, curl_args: Sequence[str], timeout: float) -> ClientCommand | None:
        if self.params.get("inner") != "https":
            return None
        translated = cffi_args(curl_args)
        if translated is None or self.choose("inner_client", ("curl", "curl-cffi")) == "curl":
            return None
        browser = self.choose("inner_browser", tuple(CURL_CFFI_TARGETS))
        target = self.choose("impersonate", CURL_CFFI_TARGETS[browser])
        if "stack" in self.params:  # identified before the fetch (identify() applies it after)
            self.params["stack"] = self._inner_stack(str(self.params["stack"]))
        argv = [
            self.python,
            "-m",
            "sluice.lab.webclients",
            "--lib",
            "curl-cffi",
            "--impersonate",
            target,
            "--no-dns",
        ]
        return with_gap([*argv, "--timeout", str(timeout), *translated])


class Scenario(ABC):
    """A family of lab sessions (one module per family under :mod:`sluice.lab.scenarios`)."""

    name: ClassVar[str]
    """Registry name (``openvpn``)."""
    summary: ClassVar[str]
    """One line for ``sluice lab list``."""
    traffic_class: ClassVar[str]
    """TAXONOMY.md class of the carrier flows."""
    family: ClassVar[str]
    """TAXONOMY.md family of the carrier flows."""
    programs: ClassVar[dict[str, str]]
    """Binaries the scenario needs -> Debian package that has them."""
    variants: ClassVar[tuple[str, ...]] = ("default",)
    """Variants; session ``i`` runs ``variants[i % len(variants)]`` unless one is asked for."""
    quick: ClassVar[bool] = False
    """Part of the quick subset the test suite runs."""

    def missing(self) -> list[str]:
        """Binaries of :attr:`programs` that are not installed."""
        return [p for p in self.programs if which(p) is None]

    def packages(self) -> list[str]:
        """Debian packages of :attr:`programs`."""
        return sorted(set(self.programs.values()))

    @abstractmethod
    def run(self, s: Session, variant: str) -> Outcome:
        """Start the programs, move traffic, check it, and say which flows are which.

        Raises:
            LabError: a program did not come up or a step failed.
        """


def transfer_checks(rep: TrafficReport, out: Outcome, *, min_ok: int = 1) -> None:
    """Copy a traffic report into an outcome's checks and problems."""
    out.checks["transfers_ok"] = rep.ok
    out.checks["transfers_failed"] = rep.failed
    out.checks["payload_bytes"] = rep.bytes_ok
    out.carried_bytes = max(out.carried_bytes, rep.bytes_ok)
    if rep.ok < min_ok:
        out.problems.append(f"only {rep.ok} transfers verified: {rep.errors[:3]}")
    if rep.failed:
        out.checks["errors"] = rep.errors[:5]


def verify_web(
    rep: TrafficReport,
    out: Outcome,
    server_log: Path,
    clients: Sequence[str],
    *,
    min_ok: int = 1,
) -> None:
    """Check a payload mix: verified downloads, and the server saw them come from ``clients``.

    ``clients`` are the addresses the requests must arrive from when they went through the
    tunnel or proxy (its inner address, the proxy's loopback ...), so a request that bypassed
    it does not count.
    """
    transfer_checks(rep, out, min_ok=min_ok)
    try:
        inside, other = served_from(server_log, clients)
    except LabError as e:  # say why the client got nowhere, not only where the log is
        raise LabError(e.reason, f"{e.detail}; client: {' | '.join(rep.errors[:2])}") from e
    out.checks["server_requests_via_carrier"] = inside
    out.checks["server_requests_other"] = other
    if inside < rep.ok:
        out.problems.append(f"server saw {inside} requests from {list(clients)}, client got {rep.ok}")
