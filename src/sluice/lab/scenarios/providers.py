"""Three made-up VPN providers in one session: ground truth for grouping endpoints into services.

``sluice services discover`` groups server endpoints that belong to one service (a shared
certificate, a name pattern, the same protocols and address range).  This scenario gives it a
capture where that grouping is known:

* **acme-vpn** (``*.acme-vpn.test``): OpenVPN over UDP and TCP (PKI, ``tls-auth``, TLS ≤ 1.2, so
  the provider's certificate crosses the wire in OpenVPN's control channel) and WireGuard
  (wireguard-go);
* **boreal-net** (``*.boreal-net.test``): WireGuard and Shadowsocks (AEAD); no certificate;
* **corvid-secure** (``*.corvid-secure.test``): OpenVPN over TCP (``tls-crypt``: the certificate
  is hidden), stunnel TLS tunnels (TLS ≤ 1.2: the certificate is in the clear, SNI is the
  server's name) and trojan-gfw (TLS 1.3: only the SNI shows).

Each provider has its own CA and **one** wildcard server certificate used by all its TLS-based
servers, its own /24 of public addresses (from 198.18.0.0/15, routed by the gateway to the
server namespace, where each address sits on ``s0``), 2–4 servers with names such as
``nl1.acme-vpn.test``, and one account (client certificate, WireGuard key, passwords) that the
client uses on every server.  The server namespace also runs a benign HTTPS site and the DNS
server (unbound) that the client's resolver uses for every name, provider names included, so the
capture has ordinary HTTPS and DNS flows that discovery must not propose.

The client visits every endpoint in a random order (a fresh client program each time: a new
flow), some of them twice, fetches a payload mix through the tunnel from a web server in the
server namespace, and checks every file's SHA-256 and that the web server saw the requests come
from the tunnel's far end (the client's tunnel address, or the loopback for proxies).

Variants: ``default`` — each endpoint is its server's own address and the provider's port;
``nat`` — the servers sit behind 1–2 front addresses per provider that forward ports
(``iptables DNAT`` in the server namespace): endpoints of one front address differ by port
(``front:1194``, ``front:1195`` …) and the daemons listen on private backend addresses that the
capture never shows.  WireGuard servers always listen on a private port behind a DNAT (every
wireguard-go socket binds the wildcard address, so two servers cannot share a port).

Ground truth: ``params["providers"]`` (see :func:`_ground_truth`) and ``params["benign"]``.
"""

from __future__ import annotations

__all__ = ["VpnProviders"]

import hashlib
import json
import re
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, cast

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from sluice.lab.httpd import read_server_log
from sluice.lab.pki import KEY_TYPES, Issued, LabCA, random_hostname
from sluice.lab.scenario import PROTO, FlowRule, InnerWeb, Outcome, ParamValue, Scenario, Session
from sluice.lab.scenarios.shadowsocks import AEAD_CIPHERS
from sluice.lab.topology import LabError, Proc
from sluice.lab.traffic import TrafficReport, plan_mix, run_mix

_UAPI_DIR = Path("/var/run/wireguard")
_WG_ENV = {"WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1"}
_COUNTRIES = ("nl", "de", "us", "uk", "se", "ch", "sg", "jp", "fr", "ca", "es", "pl")

# kind -> (transport, class, family, default port, program that carries it)
_KINDS: dict[str, tuple[str, str, str, int, str]] = {
    "openvpn-udp": ("udp", "vpn", "openvpn", 1194, "openvpn"),
    "openvpn-tcp": ("tcp", "vpn", "openvpn", 443, "openvpn"),
    "wireguard": ("udp", "vpn", "wireguard", 51820, "wireguard-go"),
    "shadowsocks": ("tcp", "circumvention", "shadowsocks", 8388, "shadowsocks-libev"),
    "stunnel": ("tcp", "tunnel", "stunnel", 443, "stunnel4"),
    "trojan": ("tcp", "circumvention", "trojan", 443, "trojan-gfw"),
}


@dataclass(frozen=True, slots=True)
class _ProviderSpec:
    name: str
    """``acme-vpn``; the domain is ``<name>.test``."""
    org: str
    """Organisation in the CA's name."""
    kinds: tuple[str, ...]
    """Protocols it offers (keys of ``_KINDS``)."""
    servers: tuple[int, int]
    """Inclusive range of its server count."""
    name_format: str
    """Server label: ``{cc}`` country, ``{n}`` number."""
    openvpn_tls: str = "tls-auth"
    """``tls-auth`` (control channel in the clear) or ``tls-crypt``."""


_PROVIDERS = (
    _ProviderSpec("acme-vpn", "Acme VPN", ("openvpn-udp", "openvpn-tcp", "wireguard"), (3, 4), "{cc}{n}"),
    _ProviderSpec("boreal-net", "Boreal Networks", ("wireguard", "shadowsocks"), (2, 3), "{cc}-{n:02d}"),
    _ProviderSpec(
        "corvid-secure",
        "Corvid Secure",
        ("openvpn-tcp", "stunnel", "stunnel", "trojan"),
        (3, 4),
        "{cc}{n}-gw",
        "tls-crypt",
    ),
)


@dataclass(slots=True)
class _Endpoint:
    provider: str
    kind: str
    name: str
    """DNS name of the server (resolves to ``public_ip``)."""
    public_ip: str
    public_port: int
    listen_ip: str
    listen_port: int
    index: int
    """Running number (interface and process names)."""
    inner_net: str = ""
    """First three octets of the tunnel's /24 (OpenVPN, WireGuard)."""
    wg_pub: str = ""
    """WireGuard server public key."""

    @property
    def transport(self) -> str:
        return _KINDS[self.kind][0]

    @property
    def label(self) -> str:
        """``ip:port/proto`` as the gateway's capture shows it."""
        return f"{self.public_ip}:{self.public_port}/{self.transport}"


@dataclass(slots=True)
class _Provider:
    spec: _ProviderSpec
    prefix: str
    """First three octets of its public /24."""
    ca: LabCA
    cert: Issued
    """The wildcard server certificate all its TLS servers use."""
    client: Issued
    """The client certificate of the account (OpenVPN)."""
    servers: list[tuple[str, str, str]] = field(default_factory=list)
    """(name, public address, backend address) per server."""
    endpoints: list[_Endpoint] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)

    @property
    def domain(self) -> str:
        return f"{self.spec.name}.test"

    def cert_sha256(self) -> str:
        der = x509.load_pem_x509_certificate(self.cert.cert.read_bytes()).public_bytes(Encoding.DER)
        return hashlib.sha256(der).hexdigest()


class _Nets:
    """Distinct random /24 prefixes (``a.b.c``) for public ranges, tunnels and backends."""

    def __init__(self, s: Session) -> None:
        self.rng = s.rng
        a = s.addr
        self.used = {".".join(ip.split(".")[:3]) for ip in (a.client_ip, a.server_ip)} | {a.inner_prefix}

    def take(self, first: str) -> str:
        while True:
            if first == "198":
                p = f"198.{self.rng.choice((18, 19))}.{self.rng.randrange(256)}"
            else:
                p = f"10.{self.rng.randrange(1, 255)}.{self.rng.randrange(256)}"
            if p not in self.used:
                self.used.add(p)
                return p


def _wg(*args: str, stdin: str | None = None) -> str:
    r = subprocess.run(["wg", *args], input=stdin, capture_output=True, text=True, check=True)
    return r.stdout.strip()


def _wait_listen(s: Session, ip: str, port: int, transport: str, timeout: float = 10) -> None:
    """Wait until something listens on ``ip``:``port`` in the server namespace."""
    flag = "-Hltn" if transport == "tcp" else "-Hlun"
    pat = re.compile(rf"(^|\s){re.escape(ip)}:{port}\s")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pat.search(s.topo.run("server", ["ss", flag], check=False).stdout):
            return
        time.sleep(0.05)
    raise LabError("lab.port_timeout", f"{transport}/{ip}:{port} in server after {timeout}s")


class VpnProviders(Scenario):
    """Three made-up VPN providers, several servers each, visited in turn, plus benign flows."""

    name = "vpn-providers"
    summary = (
        "3 made-up VPN providers (OpenVPN, WireGuard, Shadowsocks, stunnel, trojan), 2-4 servers each, "
        "shared wildcard certs; ground truth for service discovery"
    )
    traffic_class = "vpn"
    family = "openvpn"  # every session has OpenVPN; each flow is labeled with its own family
    programs: ClassVar[dict[str, str]] = {
        "openvpn": "openvpn",
        "wireguard-go": "wireguard-go",
        "wg": "wireguard-tools",
        "ss-server": "shadowsocks-libev",
        "ss-local": "shadowsocks-libev",
        "stunnel4": "stunnel4",
        "trojan": "trojan",
        "unbound": "unbound",
        "dig": "dnsutils",
    }
    variants = ("default", "nat")
    max_rtt_ms: ClassVar[float] = 80.0
    """Many OpenVPN/TLS handshakes in turn: a cap keeps a session under a minute."""

    def run(self, s: Session, variant: str) -> Outcome:
        a = s.addr
        nets = _Nets(s)
        nat = variant == "nat"
        # the web server every carrier leads to (any address of the server namespace); a random
        # high port so that it never collides with a provider's or the benign site's port
        inner = s.inner_web("0.0.0.0", default_port=80, p_default=0.0)  # noqa: S104 (lab namespace)
        used_tcp, used_udp = {inner.port, 443, 53}, {53}
        providers = [self._provider(s, spec, nets) for spec in _PROVIDERS]
        count = 0
        for p in providers:
            count = self._plan_endpoints(s, p, nets, nat, count)
        eps = [ep for p in providers for ep in p.endpoints]
        for ep in eps:
            if ep.transport == "tcp" and ep.listen_port == inner.port:
                ep.listen_port += 1  # (the inner server binds the wildcard address)
            (used_tcp if ep.transport == "tcp" else used_udp).add(ep.listen_port)
        for ep in eps:  # wireguard-go binds the wildcard address: a private port behind a DNAT
            if ep.kind == "wireguard":
                ep.listen_port = s.rng.randrange(20000, 60000)
                while ep.listen_port in used_udp:
                    ep.listen_port = s.rng.randrange(20000, 60000)
                used_udp.add(ep.listen_port)
        self._addresses(s, providers, nat)
        benign_name, dns_names = self._dns(s, providers)
        benign_cert = s.ca.issue(benign_name)
        benign_log = s.start_httpd(
            a.server_ip, 443, name="benign-httpd", tls=(benign_cert.cert, benign_cert.key)
        )
        for p in providers:
            for ep in p.endpoints:
                self._start_server(s, p, ep, nets)
        for p in providers:
            for ep in p.endpoints:
                if ep.kind == "wireguard":
                    s.topo.wait_port("server", ep.listen_port, "udp")
                else:
                    _wait_listen(s, ep.listen_ip, ep.listen_port, ep.transport)

        # the visits: every endpoint once in a random order, then some a second time
        all_eps = [ep for p in providers for ep in p.endpoints]
        order = list(all_eps)
        s.rng.shuffle(order)
        again = s.rng.sample(all_eps, k=min(len(all_eps), s.rng.randrange(2, 5)))
        order += again
        s.params["visit_order"] = [ep.label for ep in order]
        by_name = {p.spec.name: p for p in providers}
        impls = sorted({_KINDS[ep.kind][4] for ep in all_eps})
        s.identify(
            stack="curl-openssl via openvpn, wireguard-go, ss-local, stunnel4 and trojan clients",
            impl="+".join(impls),
        )
        out = Outcome(rules=[], software=[])
        visits: list[dict[str, Any]] = []
        total = TrafficReport()
        benign_ok = benign_reqs = 0
        benign_every = s.rng.randrange(3, 6)
        benign_ok, benign_reqs = self._benign(s, benign_name, benign_log, dns_names, benign_ok, benign_reqs)
        for n, ep in enumerate(order):
            rep, mix, inside = self._visit(s, by_name[ep.provider], ep, inner, n)
            total.ok += rep.ok
            total.failed += rep.failed
            total.bytes_ok += rep.bytes_ok
            total.errors += rep.errors
            visits.append(
                {
                    "endpoint": ep.label,
                    "provider": ep.provider,
                    "protocol": ep.kind,
                    "mix": mix,
                    "transfers_ok": rep.ok,
                    "transfers_failed": rep.failed,
                    "server_requests_via_carrier": inside,
                }
            )
            if rep.ok < 1 or rep.failed:
                out.problems.append(
                    f"{ep.label} ({ep.kind}): {rep.ok} ok, {rep.failed} failed {rep.errors[:2]}"
                )
            if inside < rep.ok:
                out.problems.append(
                    f"{ep.label}: server saw {inside} requests via the carrier, client got {rep.ok}"
                )
            if (n + 1) % benign_every == 0:
                benign_ok, benign_reqs = self._benign(
                    s, benign_name, benign_log, dns_names, benign_ok, benign_reqs
                )
        s.params["visits"] = cast(ParamValue, visits)
        s.params["mix"] = [k for v in visits for k in v["mix"]]
        s.params["providers"] = cast(ParamValue, _ground_truth(providers))
        s.params["benign"] = cast(
            ParamValue,
            {
                "endpoints": [f"{a.server_ip}:443/tcp", f"{a.server_ip}:53/udp"],
                "names": [benign_name],
            },
        )
        out.checks |= {
            "visits": len(visits),
            "endpoints": len(all_eps),
            "transfers_ok": total.ok,
            "transfers_failed": total.failed,
            "payload_bytes": total.bytes_ok,
            "server_requests_via_carrier": sum(v["server_requests_via_carrier"] for v in visits),
            "benign_transfers_ok": benign_ok,
            "benign_server_requests": benign_reqs,
        }
        out.carried_bytes = total.bytes_ok
        if benign_ok < 1 or benign_reqs < benign_ok:
            out.problems.append(f"benign HTTPS: {benign_ok} transfers, {benign_reqs} requests seen")
        for p in providers:
            for ep in p.endpoints:
                _, cls, fam, _, _ = _KINDS[ep.kind]
                out.rules.append(
                    FlowRule(
                        f"carrier:{p.spec.name}", PROTO[ep.transport], ep.public_ip, ep.public_port, cls, fam
                    )
                )
        out.rules += [
            FlowRule("benign-https", PROTO["tcp"], a.server_ip, 443, "benign", "tls", carrier=False),
            FlowRule("benign-dns", PROTO["udp"], a.server_ip, 53, "benign", "dns", carrier=False),
            FlowRule("benign-dns", PROTO["tcp"], a.server_ip, 53, "benign", "dns", carrier=False),
        ]
        progs = {
            "openvpn": ["openvpn"],
            "wireguard": ["wireguard-go", "wg"],
            "shadowsocks": ["ss-server", "ss-local"],
            "stunnel": ["stunnel4"],
            "trojan": ["trojan"],
        }
        used_progs = {prog for ep in all_eps for prog in progs[ep.kind.split("-")[0]]}
        out.software = [*sorted(used_progs), "unbound", "dig", "curl", *inner.software]
        return out

    # -- set-up ------------------------------------------------------------------------------

    @staticmethod
    def _provider(s: Session, spec: _ProviderSpec, nets: _Nets) -> _Provider:
        slug = spec.name.replace("-", "_")
        ca = LabCA(
            s.workdir / "providers" / spec.name,
            s.choose(f"{slug}_key_type", KEY_TYPES),
            f"{spec.org} Root CA",
        )
        cert = ca.issue(f"*.{spec.name}.test")
        client = ca.issue(f"client-{secrets.token_hex(4)}", server=False)
        p = _Provider(spec, nets.take("198"), ca, cert, client)
        p.settings["openvpn_tls"] = spec.openvpn_tls
        return p

    @staticmethod
    def _plan_endpoints(s: Session, p: _Provider, nets: _Nets, nat: bool, count: int) -> int:
        """Servers, their names and addresses, and which protocols each one offers."""
        spec, rng = p.spec, s.rng
        slug = spec.name.replace("-", "_")
        n_servers = rng.randint(*spec.servers)
        hosts = rng.sample(range(2, 254), n_servers)
        countries = rng.sample(_COUNTRIES, n_servers)
        fronts = [f"{p.prefix}.{h}" for h in hosts[: rng.choice((1, 2))]] if nat else []
        backend_net = nets.take("10") if nat else ""
        for i in range(n_servers):
            label = spec.name_format.format(cc=countries[i], n=rng.randrange(1, 10))
            public = fronts[i % len(fronts)] if nat else f"{p.prefix}.{hosts[i]}"
            backend = f"{backend_net}.{i + 2}" if nat else public
            p.servers.append((f"{label}.{p.domain}", public, backend))
        # each protocol on at least one server, some servers offer a second one
        ports = {k: s.port(f"{slug}_{k.replace('-', '_')}_port", _KINDS[k][3], 0.6) for k in set(spec.kinds)}
        # kind -> required: every protocol on at least one server, every server offers one
        offers: list[dict[str, bool]] = [{} for _ in range(n_servers)]
        first = list(range(n_servers))
        rng.shuffle(first)
        for j, kind in enumerate(spec.kinds):
            offers[first[j % n_servers]][kind] = True
        for off in offers:
            if not off:
                off[rng.choice(spec.kinds)] = True
            elif rng.random() < 0.3:
                off.setdefault(rng.choice(spec.kinds), False)
        front_used: set[tuple[str, str, int]] = set()
        for i, off in enumerate(offers):
            name, public, backend = p.servers[i]
            taken: set[tuple[str, int]] = set()
            for kind in sorted(off, key=lambda k: (not off[k], k)):
                transport, port = _KINDS[kind][0], ports[kind]
                if (transport, port) in taken:
                    if not off[kind]:
                        continue  # an extra that would share a port (OpenVPN TCP and stunnel on 443)
                    while (transport, port) in taken:  # a required one moves to another port
                        port = rng.randrange(1025, 60000)
                taken.add((transport, port))
                # behind a front address: the provider's port, then the next free ones
                pub_port = port
                while (public, transport, pub_port) in front_used:
                    pub_port += 1
                front_used.add((public, transport, pub_port))
                count += 1
                p.endpoints.append(_Endpoint(spec.name, kind, name, public, pub_port, backend, port, count))
        return count

    @staticmethod
    def _addresses(s: Session, providers: list[_Provider], nat: bool) -> None:
        """Public /24s routed by the gateway to the server; addresses and DNATs in the server."""
        topo, a = s.topo, s.addr
        for p in providers:
            topo.run("gateway", ["ip", "route", "add", f"{p.prefix}.0/24", "via", a.server_ip, "dev", "g1"])
            ips = {ip for _, pub, back in p.servers for ip in (pub, back)}
            for ip in sorted(ips):
                topo.run("server", ["ip", "addr", "add", f"{ip}/32", "dev", "s0"])
            for ep in p.endpoints:
                if (ep.public_ip, ep.public_port) == (ep.listen_ip, ep.listen_port):
                    continue
                topo.run(
                    "server",
                    [
                        "iptables",
                        "-w",
                        "-t",
                        "nat",
                        "-A",
                        "PREROUTING",
                        "-d",
                        ep.public_ip,
                        "-p",
                        ep.transport,
                        "--dport",
                        str(ep.public_port),
                        "-j",
                        "DNAT",
                        "--to-destination",
                        f"{ep.listen_ip}:{ep.listen_port}",
                    ],
                )

    @staticmethod
    def _dns(s: Session, providers: list[_Provider]) -> tuple[str, list[str]]:
        """unbound on the server (every name of the session), the client's only resolver."""
        a, topo = s.addr, s.topo
        benign_name = s.hostname("benign_name")
        names = {name: pub for p in providers for name, pub, _ in p.servers}
        names[benign_name] = a.server_ip
        others: list[str] = []
        while len(others) < 8:
            n = random_hostname(s.rng)
            if n not in names:
                names[n] = f"10.{s.rng.randrange(256)}.{s.rng.randrange(256)}.{s.rng.randrange(1, 255)}"
                others.append(n)
        lines = [
            f"interface: {a.server_ip}@53",
            "access-control: 0.0.0.0/0 allow",
            'username: ""',
            'chroot: ""',
            f'directory: "{s.workdir}"',
            'pidfile: ""',
            "use-syslog: no",
            'logfile: ""',
            "verbosity: 1",
            "do-ip6: no",
            "do-daemonize: no",
            'local-zone: "." refuse',
        ]
        for n, ip in names.items():
            lines += [f'local-zone: "{n}." static', f'local-data: "{n}. 300 IN A {ip}"']
        conf = s.file("unbound.conf", "server:\n" + "".join(f"  {x}\n" for x in lines))
        topo.spawn("server", "unbound", ["unbound", "-d", "-c", str(conf)])
        # the client resolves through it (ip netns exec bind-mounts /etc/netns/<ns>/*)
        d = Path("/etc/netns") / topo.ns["client"]
        d.mkdir(parents=True, exist_ok=True)
        (d / "hosts").write_text("127.0.0.1 localhost\n")
        (d / "resolv.conf").write_text(f"nameserver {a.server_ip}\noptions timeout:2 attempts:2\n")
        topo.on_down(lambda: shutil.rmtree(d, ignore_errors=True))
        topo.wait_port("server", 53, "udp")
        return benign_name, others

    def _start_server(self, s: Session, p: _Provider, ep: _Endpoint, nets: _Nets) -> None:
        topo = s.topo
        if ep.kind.startswith("openvpn"):
            ep.inner_net = nets.take("10")
            argv = [
                "openvpn",
                "--dev",
                f"ovs{ep.index}",
                "--dev-type",
                "tun",
                "--disable-dco",
                "--verb",
                "3",
                "--local",
                ep.listen_ip,
                "--port",
                str(ep.listen_port),
                "--proto",
                "udp" if ep.transport == "udp" else "tcp-server",
                "--server",
                f"{ep.inner_net}.0",
                "255.255.255.0",
                "--topology",
                "subnet",
                "--keepalive",
                "1",
                "10",
                "--duplicate-cn",
                "--ca",
                str(p.ca.cert),
                "--cert",
                str(p.cert.cert),
                "--key",
                str(p.cert.key),
                "--dh",
                "none",
                *self._openvpn_common(s, p, server=True),
            ]
            topo.spawn("server", f"openvpn-server-{ep.index}", argv)
        elif ep.kind == "wireguard":
            ep.inner_net = nets.take("10")
            ifn = f"w{ep.index:x}{topo.tag}"
            topo.on_down((_UAPI_DIR / f"{ifn}.sock").unlink)
            priv = _wg("genkey")
            ep.wg_pub = _wg("pubkey", stdin=priv)
            key = s.file(f"wg-{ep.index}.key", priv + "\n", 0o600)
            topo.spawn("server", f"wireguard-go-server-{ep.index}", ["wireguard-go", "-f", ifn], env=_WG_ENV)
            self._wait_uapi(ifn)
            topo.run(
                "server",
                [
                    "wg",
                    "set",
                    ifn,
                    "listen-port",
                    str(ep.listen_port),
                    "private-key",
                    str(key),
                    "peer",
                    self._wg_client(s, p)[1],
                    "allowed-ips",
                    f"{ep.inner_net}.2/32",
                ],
            )
            topo.run("server", ["ip", "addr", "add", f"{ep.inner_net}.1/24", "dev", ifn])
            topo.run("server", ["ip", "link", "set", ifn, "mtu", str(p.settings["wg_mtu"]), "up"])
        elif ep.kind == "shadowsocks":
            method, pw = self._ss(s, p)
            argv = ["ss-server", "-s", ep.listen_ip, "-p", str(ep.listen_port), "-k", pw, "-m", method]
            topo.spawn("server", f"ss-server-{ep.index}", argv)
        elif ep.kind == "stunnel":
            conf = (
                f"foreground = yes\npid =\n[vpn]\naccept = {ep.listen_ip}:{ep.listen_port}\n"
                f"connect = 127.0.0.1:{self._inner_port(s)}\ncert = {p.cert.cert}\nkey = {p.cert.key}\n"
                "sslVersionMax = TLSv1.2\n"
            )
            path = s.file(f"stunnel-srv-{ep.index}.conf", conf)
            topo.spawn("server", f"stunnel-server-{ep.index}", ["stunnel4", str(path)])
        elif ep.kind == "trojan":
            tconf = {
                "run_type": "server",
                "local_addr": ep.listen_ip,
                "local_port": ep.listen_port,
                "remote_addr": "127.0.0.1",
                "remote_port": self._inner_port(s),
                "password": [self._trojan_pw(p)],
                "log_level": 1,
                "ssl": {"cert": str(p.cert.cert), "key": str(p.cert.key), "alpn": ["http/1.1"]},
            }
            path = s.file(f"trojan-srv-{ep.index}.json", json.dumps(tconf))
            topo.spawn("server", f"trojan-server-{ep.index}", ["trojan", "-c", str(path)])

    @staticmethod
    def _inner_port(s: Session) -> int:
        return int(cast(int, s.params["http_port"]))

    # provider-wide settings and secrets (one account per provider), drawn on first use

    @staticmethod
    def _openvpn_common(s: Session, p: _Provider, *, server: bool) -> list[str]:
        st = p.settings
        if "data_ciphers" not in st:
            st["data_ciphers"] = s.rng.choice(("AES-256-GCM", "AES-128-GCM", "CHACHA20-POLY1305"))
            kind = p.spec.openvpn_tls
            key = p.ca.dir / f"{kind}.key"
            subprocess.run(
                ["openvpn", "--genkey", "tls-crypt" if kind == "tls-crypt" else "secret", str(key)],
                check=True,
                capture_output=True,
            )
            p.secrets["openvpn_key"] = str(key)
        out = ["--data-ciphers", str(st["data_ciphers"])]
        if p.spec.openvpn_tls == "tls-crypt":
            out += ["--tls-crypt", p.secrets["openvpn_key"]]
        else:
            # TLS 1.2 at most: the certificate crosses the wire in the clear (inside OpenVPN's framing)
            out += [
                "--tls-auth",
                p.secrets["openvpn_key"],
                "0" if server else "1",
                "--tls-version-max",
                "1.2",
            ]
        return out

    @staticmethod
    def _wg_client(s: Session, p: _Provider) -> tuple[str, str]:
        if "wg_client_key" not in p.secrets:
            priv = _wg("genkey")
            p.secrets["wg_client_key"] = str(s.file(f"wg-client-{p.spec.name}.key", priv + "\n", 0o600))
            p.secrets["wg_client_pub"] = _wg("pubkey", stdin=priv)
            p.settings["wg_mtu"] = s.rng.choice((1420, 1420, 1380, 1280))
            p.settings["wg_keepalive"] = s.rng.choice((0, 15, 25))
        return p.secrets["wg_client_key"], p.secrets["wg_client_pub"]

    @staticmethod
    def _ss(s: Session, p: _Provider) -> tuple[str, str]:
        if "ss_method" not in p.settings:
            p.settings["ss_method"] = s.rng.choice(AEAD_CIPHERS)
            p.secrets["ss_password"] = secrets.token_urlsafe(s.rng.randrange(8, 24))
        return str(p.settings["ss_method"]), p.secrets["ss_password"]

    @staticmethod
    def _trojan_pw(p: _Provider) -> str:
        return p.secrets.setdefault("trojan_password", secrets.token_urlsafe(12))

    @staticmethod
    def _wait_uapi(ifn: str) -> None:
        deadline = time.monotonic() + 10
        while not (_UAPI_DIR / f"{ifn}.sock").exists():
            if time.monotonic() > deadline:
                raise LabError("lab.start_timeout", f"wireguard-go UAPI socket {ifn} did not appear")
            time.sleep(0.05)

    # -- traffic -----------------------------------------------------------------------------

    def _visit(
        self, s: Session, p: _Provider, ep: _Endpoint, web: InnerWeb, n: int
    ) -> tuple[TrafficReport, list[str], int]:
        """Connect a fresh client to ``ep``, run a short mix through it, disconnect."""
        topo = s.topo
        procs: list[Proc] = []
        ifn = ""
        try:
            if ep.kind.startswith("openvpn"):
                ifn = f"ovc{n}"
                argv = [
                    "openvpn",
                    "--client",
                    "--dev",
                    ifn,
                    "--dev-type",
                    "tun",
                    "--disable-dco",
                    "--verb",
                    "3",
                    "--remote",
                    ep.name,
                    str(ep.public_port),
                    "--proto",
                    "udp" if ep.transport == "udp" else "tcp-client",
                    "--nobind",
                    *(["--explicit-exit-notify", "1"] if ep.transport == "udp" else []),
                    "--ca",
                    str(p.ca.cert),
                    "--cert",
                    str(p.client.cert),
                    "--key",
                    str(p.client.key),
                    "--remote-cert-tls",
                    "server",
                    "--verify-x509-name",
                    p.cert.name,
                    "name",
                    *self._openvpn_common(s, p, server=False),
                ]
                name = f"openvpn-client-{n}"
                procs.append(topo.spawn("client", name, argv))
                topo.wait_log(name, "Initialization Sequence Completed", timeout=20)
                r = topo.run("client", ["ip", "-4", "-o", "addr", "show", "dev", ifn])
                m = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", r.stdout)
                if not m:
                    raise LabError("lab.no_address", f"openvpn client {ifn}: {r.stdout!r}")
                host, via = f"{ep.inner_net}.1", [m.group(1)]
                url, curl = self._direct(web, host)
            elif ep.kind == "wireguard":
                ifn = f"v{n:x}{topo.tag}"
                topo.on_down((_UAPI_DIR / f"{ifn}.sock").unlink)
                key, _ = self._wg_client(s, p)
                procs.append(
                    topo.spawn("client", f"wireguard-go-client-{n}", ["wireguard-go", "-f", ifn], env=_WG_ENV)
                )
                self._wait_uapi(ifn)
                keepalive = int(p.settings["wg_keepalive"])
                topo.run(
                    "client",
                    [
                        "wg",
                        "set",
                        ifn,
                        "private-key",
                        key,
                        "peer",
                        ep.wg_pub,
                        "endpoint",
                        f"{ep.name}:{ep.public_port}",
                        "allowed-ips",
                        f"{ep.inner_net}.0/24",
                        "persistent-keepalive",
                        str(keepalive) if keepalive else "off",
                    ],
                )
                topo.run("client", ["ip", "addr", "add", f"{ep.inner_net}.2/24", "dev", ifn])
                topo.run("client", ["ip", "link", "set", ifn, "mtu", str(p.settings["wg_mtu"]), "up"])
                host, via = f"{ep.inner_net}.1", [f"{ep.inner_net}.2"]
                url, curl = self._direct(web, host)
            else:
                lport = s.rng.randrange(1025, 60000)
                while lport == web.port:
                    lport = s.rng.randrange(1025, 60000)
                via = ["127.0.0.1"]
                if ep.kind == "shadowsocks":
                    method, pw = self._ss(s, p)
                    argv = ["ss-local", "-s", ep.name, "-p", str(ep.public_port), "-b", "127.0.0.1"]
                    argv += ["-l", str(lport), "-k", pw, "-m", method]
                    procs.append(topo.spawn("client", f"ss-local-{n}", argv))
                    url, curl = self._direct(web, "127.0.0.1")
                    curl = ["--socks5-hostname", f"127.0.0.1:{lport}", *curl]
                elif ep.kind == "stunnel":
                    conf = (
                        f"foreground = yes\npid =\n[vpn]\nclient = yes\naccept = 127.0.0.1:{lport}\n"
                        f"connect = {ep.name}:{ep.public_port}\nCAfile = {p.ca.cert}\nverifyChain = yes\n"
                        f"checkHost = {ep.name}\nsni = {ep.name}\n"
                    )
                    path = s.file(f"stunnel-cli-{n}.conf", conf)
                    procs.append(topo.spawn("client", f"stunnel-client-{n}", ["stunnel4", str(path)]))
                    url, curl = self._direct(web, "127.0.0.1", lport)
                else:
                    conf_d = {
                        "run_type": "client",
                        "local_addr": "127.0.0.1",
                        "local_port": lport,
                        "remote_addr": ep.name,
                        "remote_port": ep.public_port,
                        "password": [self._trojan_pw(p)],
                        "log_level": 1,
                        "ssl": {"verify": True, "cert": str(p.ca.cert), "sni": ep.name, "alpn": ["http/1.1"]},
                    }
                    path = s.file(f"trojan-cli-{n}.json", json.dumps(conf_d))
                    procs.append(topo.spawn("client", f"trojan-client-{n}", ["trojan", "-c", str(path)]))
                    url, curl = self._direct(web, "127.0.0.1")
                    curl = ["--socks5-hostname", f"127.0.0.1:{lport}", *curl]
                topo.wait_port("client", lport)
            before = len(read_server_log(web.log))
            dur = s.duration_s * s.rng.uniform(0.3, 0.6)
            actions = plan_mix(s.rng, s.site, dur, bulk=s.rng.random() < 0.35)
            rep = run_mix(topo, actions, s.site, url, curl_args=curl)
            if ep.kind == "wireguard":
                shown = topo.run("client", ["wg", "show", ifn, "latest-handshakes"]).stdout.split()
                if len(shown) < 2 or shown[1] == "0":
                    raise LabError("lab.no_handshake", f"wireguard {ep.label}: {shown}")
            time.sleep(0.05)
            new = read_server_log(web.log)[before:]
            inside = sum(1 for r in new if r.get("status") == 200 and r.get("client") in via)
            return rep, [act.kind for act in actions], inside
        finally:
            for proc in procs:
                proc.stop()

    @staticmethod
    def _direct(web: InnerWeb, host: str, port: int | None = None) -> tuple[str, list[str]]:
        """URL and curl arguments for the inner web server reached at ``host``:``port``."""
        cport = port or web.port
        if web.scheme == "http":
            return f"http://{host}:{cport}", []
        name = web.url.split("//", 1)[1].rsplit(":", 1)[0]
        curl = ["--cacert", web.curl[web.curl.index("--cacert") + 1]]
        return web.url, [*curl, "--connect-to", f"{name}:{web.port}:{host}:{cport}"]

    @staticmethod
    def _benign(s: Session, name: str, log: Path, others: list[str], ok: int, reqs: int) -> tuple[int, int]:
        """Ordinary flows: a DNS lookup or two and an HTTPS page from the benign site."""
        topo, a = s.topo, s.addr
        for q in s.rng.sample(others, s.rng.randrange(1, 3)):
            topo.run("client", ["dig", f"@{a.server_ip}", "+short", q], check=False, timeout=10)
        before = len(read_server_log(log))
        actions = plan_mix(s.rng, s.site, 1.0, bulk=False)[:1]
        rep = run_mix(topo, actions, s.site, f"https://{name}", curl_args=["--cacert", str(s.ca.cert)])
        new = read_server_log(log)[before:]
        seen = sum(1 for r in new if r.get("status") == 200 and r.get("client") == a.client_ip)
        return ok + rep.ok, reqs + seen


def _ground_truth(providers: list[_Provider]) -> dict[str, Any]:
    """``params["providers"]``: per provider its endpoints as the gateway sees them, and more.

    ``endpoints``: ``"<ip>:<port>/<tcp|udp>"``; ``names``: its servers' DNS names;
    ``cert_sha256``: SHA-256 of the DER of the shared server certificate (``None`` when the
    provider has no TLS-based server); ``servers``: one entry per endpoint with its name,
    protocol, label family, SNI the client sent (``None`` where the protocol carries none),
    whether the certificate is in the clear on the wire, and the backend address:port the
    daemon listens on (differs from the endpoint behind a DNAT).
    """
    out: dict[str, Any] = {}
    for p in providers:
        tls = [ep for ep in p.endpoints if ep.kind not in ("wireguard", "shadowsocks")]
        servers = []
        for ep in p.endpoints:
            _, cls, fam, _, impl = _KINDS[ep.kind]
            clear = ep.kind == "stunnel" or (
                ep.kind.startswith("openvpn") and p.spec.openvpn_tls == "tls-auth"
            )
            servers.append(
                {
                    "endpoint": ep.label,
                    "name": ep.name,
                    "protocol": ep.kind,
                    "class": cls,
                    "family": fam,
                    "impl": impl,
                    "sni": ep.name if ep.kind in ("stunnel", "trojan") else None,
                    "cert_in_clear": clear,
                    "backend": f"{ep.listen_ip}:{ep.listen_port}/{ep.transport}",
                }
            )
        out[p.spec.name] = {
            "endpoints": [ep.label for ep in p.endpoints],
            "names": [name for name, _, _ in p.servers],
            "cert_sha256": p.cert_sha256() if tls else None,
            "cert_subject": f"CN={p.cert.name}" if tls else None,
            "ca_subject": f"CN={p.spec.org} Root CA",
            "domain": p.domain,
            "prefix": f"{p.prefix}.0/24",
            "protocols": sorted({ep.kind for ep in p.endpoints}),
            "settings": dict(p.settings),
            "servers": servers,
        }
    return out
