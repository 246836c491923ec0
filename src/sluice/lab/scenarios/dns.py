"""DNS: unbound over UDP, TCP, TLS (DoT) and HTTPS (DoH); dnsmasq over UDP/TCP."""

from __future__ import annotations

__all__ = ["Dns"]

import re
import time
from typing import ClassVar

from sluice.lab.pki import random_hostname
from sluice.lab.scenario import PROTO, FlowRule, Outcome, Scenario, Session
from sluice.lab.topology import LabError

_ANSWER = re.compile(r"^(\S+)\.\s+\d+\s+IN\s+A\s+(\S+)$", re.MULTILINE)


class Dns(Scenario):
    """Queries for random names whose answers only the lab's server knows."""

    name = "dns"
    summary = "DNS: unbound Do53 UDP/TCP, DoT, DoH; dnsmasq Do53 (dig, kdig)"
    traffic_class = "benign"
    family = "dns"
    programs: ClassVar[dict[str, str]] = {
        "unbound": "unbound",
        "dig": "dnsutils",
        "kdig": "knot-dnsutils",
        "dnsmasq": "dnsmasq-base",
    }
    variants = ("udp", "tcp", "dot", "doh", "dnsmasq-udp", "dnsmasq-tcp")
    quick = True

    def run(self, s: Session, variant: str) -> Outcome:
        a, topo = s.addr, s.topo
        names: dict[str, str] = {}
        while len(names) < 40:
            ip = f"10.{s.rng.randrange(256)}.{s.rng.randrange(256)}.{s.rng.randrange(1, 255)}"
            names.setdefault(random_hostname(s.rng), ip)
        transport = variant.split("-")[-1]
        defaults = {"udp": 53, "tcp": 53, "dot": 853, "doh": 443}
        port = s.port("port", defaults[transport], 0.7)
        if variant.startswith("dnsmasq"):
            conf_lines = [f"address=/{n}/{ip}" for n, ip in names.items()]
            conf = s.file("dnsmasq.conf", "\n".join(conf_lines) + "\n")
            topo.spawn(
                "server",
                "dnsmasq",
                [
                    "dnsmasq",
                    "-k",
                    "-C",
                    str(conf),
                    "--no-resolv",
                    "--no-hosts",
                    f"--listen-address={a.server_ip}",
                    "--bind-interfaces",
                    f"--port={port}",
                    "--log-queries",
                    "--log-facility=-",
                    "--pid-file=",
                    "--user=root",
                ],
            )
            software = ["dnsmasq"]
        else:
            cert = s.ca.issue(s.hostname())
            extra = {
                "udp": [],
                "tcp": [],
                "dot": [f"tls-port: {port}"],
                "doh": [f"https-port: {port}", 'http-endpoint: "/dns-query"'],
            }[transport]
            lines = [
                f"interface: {a.server_ip}@{port}",
                f"port: {port}",
                *extra,
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
                f'tls-service-key: "{cert.key}"',
                f'tls-service-pem: "{cert.cert}"',
                'local-zone: "." refuse',
            ]
            for n, ip in names.items():
                lines += [f'local-zone: "{n}." static', f'local-data: "{n}. 300 IN A {ip}"']
            conf = s.file("unbound.conf", "server:\n" + "".join(f"  {x}\n" for x in lines))
            topo.spawn("server", "unbound", ["unbound", "-d", "-c", str(conf)])
            software = ["unbound"]
        topo.wait_port("server", port, "udp" if transport == "udp" else "tcp")
        got: dict[str, str] = {}
        queried = 0
        order = list(names)
        s.rng.shuffle(order)
        client_tool = "kdig" if transport in ("dot", "doh") else "dig"
        batches = []
        while order:
            k = s.rng.randrange(1, 8)
            batches.append(order[:k])
            order = order[k:]
        s.params["queries"] = len(names)
        for batch in batches:
            argv = [client_tool, f"@{a.server_ip}", "-p", str(port), "+noall", "+answer"]
            if transport == "tcp":
                argv.append("+tcp")
            elif transport == "dot":
                argv += [f"+tls-ca={s.ca.cert}", f"+tls-hostname={s.params['server_name']}"]
            elif transport == "doh":
                argv += [
                    "+https=/dns-query",
                    f"+tls-ca={s.ca.cert}",
                    f"+tls-hostname={s.params['server_name']}",
                ]
            argv += [f"{n}" for n in batch]
            r = topo.run("client", argv, check=False, timeout=20)
            queried += len(batch)
            got |= {m.group(1): m.group(2) for m in _ANSWER.finditer(r.stdout)}
            time.sleep(s.rng.uniform(0.0, 0.3))
        right = sum(1 for n, ip in names.items() if got.get(n) == ip)
        if queried == 0:
            raise LabError("lab.no_queries", "dns")
        family = {"udp": "dns", "tcp": "dns", "dot": "dot", "doh": "doh"}[transport]
        out = Outcome(
            rules=[
                FlowRule(
                    "carrier",
                    PROTO["udp" if transport == "udp" else "tcp"],
                    a.server_ip,
                    port,
                    "benign",
                    family,
                )
            ],
            software=[*software, client_tool],
            checks={"queries": queried, "answers_right": right},
        )
        if right < queried * 0.9:
            out.problems.append(f"only {right} of {queried} answers came back right")
        return out
