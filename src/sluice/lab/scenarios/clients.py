"""Benign HTTPS from many client stacks (the lab's "world variety"), one variant per stack.

A detector trained on one client's HTTPS (curl) must not call every other client's HTTPS a
tunnel, so these scenarios make the same kind of payload mix (:func:`sluice.lab.traffic.plan_mix`,
every download checked byte for byte, the server's log showing it served the client's address)
with command-line tools (:class:`Clients`) and with language runtimes and libraries
(:class:`LibClients`) against a server drawn from the session's generator (nginx, caddy, apache2
or the lab's Python server; HTTP/2 or not; TLS 1.3 or 1.2 only).  ``params.stack`` names the client
stack and ``params.impl`` the server, so evaluations can hold out one stack at a time.

The Java and Go clients are compiled once into ``$XDG_CACHE_HOME/sluice-lab`` (keyed by the
source's hash); the Node, Perl and Python clients run from source (:mod:`sluice.lab.webclients`,
``sluice/lab/clients/``).
"""

from __future__ import annotations

__all__ = ["Clients", "LibClients"]

import hashlib
import importlib.util
import os
import shlex
import shutil
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from sluice.lab.scenario import PROTO, FlowRule, Outcome, Scenario, Session, verify_web, which
from sluice.lab.scenarios.servers import SERVER_IMPLS, resolve_in_client, start_web_server
from sluice.lab.topology import LabError
from sluice.lab.traffic import (
    CURL_CFFI_TARGETS,
    ClientCommand,
    Fetch,
    plan_mix,
    run_mix,
    with_gap,
)

CLIENT_SOURCES = Path(__file__).resolve().parent.parent / "clients"
"""Node, Java, Perl and Go client sources."""
_build_lock = threading.Lock()


def build_cache() -> Path:
    """Where compiled lab clients are kept between sessions."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sluice-lab"


def built_client(lang: str) -> Path:
    """The compiled Go binary (``go``) or Java class directory (``java``), built on first use.

    Raises:
        LabError: the compiler failed.
    """
    src = CLIENT_SOURCES / ("fetch.go" if lang == "go" else "Fetch.java")
    cache = build_cache()
    dest = cache / f"{lang}-{hashlib.sha256(src.read_bytes()).hexdigest()[:12]}"
    with _build_lock:
        if dest.exists():
            return dest
        tmp = dest.with_name(f"{dest.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if lang == "go":
            argv = ["go", "build", "-trimpath", "-o", str(tmp / "fetch"), str(src)]
        else:
            argv = ["javac", "-d", str(tmp), str(src)]
        env = {**os.environ, "GOCACHE": str(cache / "gocache"), "GOPATH": str(cache / "gopath")}
        r = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600, env=env)
        if r.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise LabError("lab.build_failed", f"{' '.join(argv)}: {r.stderr.strip()[-400:]}")
        tmp.rename(dest)
    return dest


def _per_url(f: Fetch, one: Sequence[str], out_flag: str) -> list[list[str]]:
    return [[*one, out_flag, str(o), u] for u, o in zip(f.urls, f.outputs, strict=True)]


def _wget_like(prog: str, ca: Path, extra: Sequence[str]) -> ClientCommand:
    """wget/wget2: one run per step into a directory, renamed; one run per URL when interactive."""
    base = [prog, "-q", f"--ca-certificate={ca}", "--no-hsts", *extra]

    def make(f: Fetch) -> list[list[str]]:
        names = [u.rsplit("/", 1)[1] for u in f.urls]
        if f.gap_s > 0 or len(set(names)) < len(names):
            return _per_url(f, base, "-O")
        d = f.outputs[0].with_name(f.outputs[0].name + ".d")
        moves = [shlex.join(["mv", "-f", str(d / n), str(o)]) for n, o in zip(names, f.outputs, strict=True)]
        return [["sh", "-c", "; ".join([shlex.join([*base, "-P", str(d), *f.urls]), *moves])]]

    return make


def _aria2(ca: Path, concurrent: int) -> ClientCommand:
    """aria2c: a step's downloads from an input file, ``concurrent`` connections at once."""
    base = [
        "aria2c",
        "-q",
        f"--ca-certificate={ca}",
        "--allow-overwrite=true",
        "--auto-file-renaming=false",
        "--file-allocation=none",
        "--summary-interval=0",
        f"--max-concurrent-downloads={concurrent}",
        "--split=1",
    ]

    def make(f: Fetch) -> list[list[str]]:
        if f.gap_s > 0:
            return [
                [*base, "-d", str(o.parent), "-o", o.name, u] for u, o in zip(f.urls, f.outputs, strict=True)
            ]
        inp = f.outputs[0].with_name(f.outputs[0].name + ".aria2-input")
        inp.write_text(
            "".join(
                f"{u}\n  dir={o.parent}\n  out={o.name}\n" for u, o in zip(f.urls, f.outputs, strict=True)
            )
        )
        return [[*base, "-i", str(inp)]]

    return make


def _lynx(f: Fetch) -> list[list[str]]:
    return [
        ["sh", "-c", f"lynx -source {shlex.quote(u)} > {shlex.quote(str(o))}"]
        for u, o in zip(f.urls, f.outputs, strict=True)
    ]


@dataclass(slots=True)
class ClientPlan:
    """How a variant's client runs."""

    stack: str
    """``params.stack``: client program and TLS library."""
    software: list[str]
    """Program names for the label."""
    command: ClientCommand | None = None
    """Commands of one step; ``None`` runs curl."""
    curl_args: list[str] = field(default_factory=list)
    """curl's arguments when ``command`` is ``None``."""
    env: Mapping[str, str] | None = None
    """Extra environment of the client commands."""


class _ClientScenario(Scenario):
    """A payload mix from one client stack per variant to a randomly chosen HTTPS server."""

    traffic_class = "benign"
    family = "tls"

    def client(self, s: Session, variant: str, ca: Path) -> ClientPlan:
        """The client of ``variant`` (may record parameters)."""
        raise NotImplementedError

    def run(self, s: Session, variant: str) -> Outcome:
        a = s.addr
        name = s.hostname()
        port = s.port("port", 443, 0.7)
        impl = s.choose("server", SERVER_IMPLS)
        h2 = impl != "python" and s.choose("server_h2", (True, True, False))
        tls12 = s.choose("server_tls", ("1.2+1.3", "1.2+1.3", "1.2")) == "1.2"
        srv = start_web_server(s, impl, name, port, h2=h2, tls12=tls12)
        resolve_in_client(s, {name: a.server_ip})
        plan = self.client(s, variant, s.ca.cert)
        s.identify(stack=plan.stack, impl=impl)
        actions = plan_mix(s.rng, s.site, s.duration_s)
        s.params["mix"] = [act.kind for act in actions]
        rep = run_mix(
            s.topo,
            actions,
            s.site,
            f"https://{name}:{port}",
            curl_args=plan.curl_args,
            timeout=30,
            client=plan.command,
            env=plan.env,
        )
        out = Outcome(
            rules=[FlowRule("carrier", PROTO["tcp"], a.server_ip, port, "benign", "tls")],
            software=[*srv.software, *plan.software],
        )
        out.checks["server_protocols"] = list(srv.protocols)
        verify_web(rep, out, srv.request_log(), [a.client_ip])
        return out


class Clients(_ClientScenario):
    """Command-line HTTPS clients: curl, wget, wget2, aria2, gnutls-cli, openssl s_client, lynx."""

    name = "clients"
    summary = "benign HTTPS from command-line clients (curl, wget, wget2, aria2, gnutls-cli, s_client, lynx)"
    programs: ClassVar[dict[str, str]] = {
        "nginx": "nginx-light",
        "caddy": "caddy",
        "apache2": "apache2",
        "wget": "wget",
        "wget2": "wget2",
        "aria2c": "aria2",
        "gnutls-cli": "gnutls-bin",
        "openssl": "openssl",
        "lynx": "lynx",
    }
    variants = ("curl", "wget", "wget2", "aria2", "gnutls-cli", "openssl-s_client", "lynx")

    def client(self, s: Session, variant: str, ca: Path) -> ClientPlan:
        if variant == "curl":  # Debian curl's defaults: TLS 1.3 and h2 when offered
            return ClientPlan("curl-openssl", ["curl"], curl_args=["--cacert", str(ca)])
        if variant == "wget":
            return ClientPlan("wget-gnutls", ["wget"], _wget_like("wget", ca, []))
        if variant == "wget2":
            threads = s.choose("wget2_threads", (1, 3, 5))
            return ClientPlan(
                "wget2-gnutls", ["wget2"], _wget_like("wget2", ca, [f"--max-threads={threads}"])
            )
        if variant == "aria2":
            conc = s.choose("aria2_concurrent", (2, 5, 8))
            return ClientPlan("aria2-gnutls", ["aria2c"], _aria2(ca, conc))
        if variant == "lynx":
            return ClientPlan("lynx-gnutls", ["lynx"], _lynx, env={"SSL_CERT_FILE": str(ca)})
        lib = "gnutls-cli" if variant == "gnutls-cli" else "openssl-cli"
        argv = [s.python, "-m", "sluice.lab.webclients", "--lib", lib, "--cafile", str(ca)]
        if s.choose("alpn", (True, False)):
            argv.append("--alpn")
        prog = "gnutls-cli" if lib == "gnutls-cli" else "openssl"
        stack = "gnutls-cli" if lib == "gnutls-cli" else "openssl-s_client"
        return ClientPlan(stack, [prog], with_gap(argv))


class LibClients(_ClientScenario):
    """HTTPS from language runtimes and libraries: Python, Node.js, Java, Perl, Go, curl-impersonate."""

    name = "client-libs"
    summary = (
        "benign HTTPS from libraries: Python urllib/httpx/aiohttp, "
        "curl-cffi (chrome/firefox/safari; h2, or h1 only), Node.js, Java HttpClient, Perl LWP, Go net/http"
    )
    programs: ClassVar[dict[str, str]] = {
        "nginx": "nginx-light",
        "caddy": "caddy",
        "apache2": "apache2",
        "node": "nodejs",
        "java": "openjdk-17-jre-headless",
        "javac": "openjdk-17-jdk-headless",
        "lwp-request": "libwww-perl",
        "go": "golang-go",
    }
    variants = (
        "python-urllib",
        "httpx-h1",
        "httpx-h2",
        "aiohttp",
        "curl-cffi-chrome",
        "curl-cffi-firefox",
        "curl-cffi-safari",
        "node",
        "java",
        "perl",
        "go",
        "curl-cffi-h1",  # last: session i of an older run still draws variants[i % 11]
    )
    _PY_MODULES = ("httpx", "h2", "aiohttp", "curl_cffi")

    def missing(self) -> list[str]:
        """Binaries, the Perl HTTPS module and the Python libraries (``pip install .[lab]``) missing."""
        out = super().missing()
        out += [f"python:{m}" for m in self._PY_MODULES if importlib.util.find_spec(m) is None]
        probe = ["perl", "-MLWP::Protocol::https", "-e1"]
        if which("perl") and subprocess.run(probe, capture_output=True, check=False).returncode:
            out.append("perl:LWP::Protocol::https")
        return out

    def packages(self) -> list[str]:
        """Debian packages, with the one that gives LWP its HTTPS."""
        return sorted({*super().packages(), "liblwp-protocol-https-perl"})

    def client(self, s: Session, variant: str, ca: Path) -> ClientPlan:
        py = [s.python, "-m", "sluice.lab.webclients", "--cafile", str(ca), "--timeout", "25"]
        if variant == "python-urllib":
            return ClientPlan("python-urllib", ["python3"], with_gap([*py, "--lib", "urllib"]))
        if variant.startswith("httpx"):
            h2 = ["--http2"] if variant == "httpx-h2" else []
            return ClientPlan("python-httpx", ["python3"], with_gap([*py, "--lib", "httpx", *h2]))
        if variant == "aiohttp":
            conns = s.choose("aiohttp_connections", (2, 4, 6))
            argv = [*py, "--lib", "aiohttp", "--connections", str(conns)]
            return ClientPlan("python-aiohttp", ["python3"], with_gap(argv))
        if variant.startswith("curl-cffi"):
            # curl-cffi-h1: a browser's handshake with HTTP/2 disabled (HTTP/1.1 GETs), browser drawn
            h1 = variant == "curl-cffi-h1"
            browser = s.choose("browser", tuple(CURL_CFFI_TARGETS)) if h1 else variant.rsplit("-", 1)[1]
            target = s.choose("impersonate", CURL_CFFI_TARGETS[browser])
            argv = [*py, "--lib", "curl-cffi", "--impersonate", target, *(["--http1"] if h1 else [])]
            return ClientPlan(f"curl-cffi-{browser}", ["python3"], with_gap(argv))
        if variant == "node":
            api = s.choose("node_api", ("https", "fetch"))
            argv = ["node", str(CLIENT_SOURCES / "fetch.mjs"), "--cafile", str(ca), "--api", api]
            return ClientPlan("node-openssl", ["node"], with_gap(argv), env={"NODE_EXTRA_CA_CERTS": str(ca)})
        if variant == "java":
            ver = s.choose("java_http", ("2", "1.1"))
            classes = built_client("java")
            argv = ["java", "-XX:TieredStopAtLevel=1", "-cp", str(classes), "Fetch", "--cafile", str(ca)]
            return ClientPlan("java-httpclient-jsse", ["java"], with_gap([*argv, "--http", ver]))
        if variant == "perl":
            argv = ["perl", str(CLIENT_SOURCES / "fetch.pl"), "--cafile", str(ca)]
            return ClientPlan("perl-lwp-openssl", ["perl", "lwp-request"], with_gap(argv))
        if variant == "go":
            h1 = s.choose("go_http", ("h2", "h1")) == "h1"
            argv = [str(built_client("go") / "fetch"), "--cafile", str(ca), *(["--http1"] if h1 else [])]
            return ClientPlan("go-nethttp", ["go"], with_gap(argv))
        raise LabError("lab.unknown_variant", variant)
