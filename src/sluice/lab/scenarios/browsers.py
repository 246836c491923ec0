"""Benign page loads from real browsers: headless Chromium and Firefox ESR, fresh profile per session.

The browser loads the session site's ``index.html`` (eight images, plus a script that fetches a
random set of objects with XMLHttpRequest, computes each one's CRC-32 and length in the page and
reports them in the query of a last request) over HTTP/1.1,
HTTP/2 or HTTP/3 (caddy, forced with Chromium's ``--origin-to-force-quic-on`` or Firefox's Alt-Svc
test mapping).  The lab CA is trusted through an NSS database made for the session (Chromium's
``$HOME/.pki/nssdb``, Firefox's profile ``cert9.db``), so certificate checks stay on.  A session
counts when the server's log shows the page and every image served, with status 200, to the
client's address, and the page's report shows the fetched objects' bytes arrived intact (the
images alone do not prove it: a browser drops an image that does not decode).
"""

from __future__ import annotations

__all__ = ["Browsers"]

import json
import zlib
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qsl

from sluice.lab.httpd import read_server_log
from sluice.lab.scenario import PROTO, FlowRule, Outcome, Scenario, Session
from sluice.lab.scenarios.servers import resolve_in_client, start_web_server
from sluice.lab.topology import LabError

_PAGE = "index.html"
# ports browsers refuse to connect to (Chromium's and Firefox's restricted-port lists, above 1024)
_BLOCKED_PORTS = {1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666}
_BLOCKED_PORTS |= {6667, 6668, 6669, 6679, 6697, 10080}
_FIREFOX_PREFS = {
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.aboutwelcome.enabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "toolkit.telemetry.enabled": False,
    "app.update.enabled": False,
    "app.normandy.enabled": False,
    "extensions.update.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "network.dns.disableIPv6": True,
    "network.trr.mode": 5,
    "services.settings.server": "https://127.0.0.1:9/",
    "browser.region.network.url": "",
    "network.prefetch-next": False,
    "network.predictor.enabled": False,
    "security.OCSP.enabled": 0,
    # Firefox turns HTTP/3 off when the profile trusts a root it did not ship with
    "network.http.http3.disable_when_third_party_roots_found": False,
}


_REPORT = "report.txt"
# fetches objects synchronously (so the page's load event waits for them), then reports
# name=crc32-length for each in the query of a last request
_CHECK_JS = """<script>
(function () {
  var T = [];
  for (var n = 0; n < 256; n++) {
    var c = n;
    for (var k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320 ^ (c >>> 1) : c >>> 1;
    T[n] = c >>> 0;
  }
  function crc(s) {
    var c = 0xFFFFFFFF;
    for (var i = 0; i < s.length; i++) c = T[(c ^ s.charCodeAt(i)) & 0xFF] ^ (c >>> 8);
    return ((c ^ 0xFFFFFFFF) >>> 0).toString(16);
  }
  function get(u) {
    var x = new XMLHttpRequest();
    x.open("GET", u, false);
    x.overrideMimeType("text/plain; charset=x-user-defined");
    x.send();
    return x.status == 200 ? x.responseText : null;
  }
  var names = NAMES, parts = [];
  for (var i = 0; i < names.length; i++) {
    var s = get(names[i]);
    if (s !== null) parts.push(names[i] + "=" + crc(s) + "-" + s.length);
  }
  get("REPORT?" + parts.join("&"));
})();
</script>"""


def _make_page(s: Session) -> tuple[list[str], list[str]]:
    """Rewrite the site's page with the checking script; (images, objects the script fetches)."""
    root = s.site.root
    html = (root / _PAGE).read_text()
    images = [part.split('"', 1)[0] for part in html.split('src="')[1:]]
    objs = s.rng.sample(s.site.names("o"), s.rng.randrange(3, 9)) + s.rng.sample(s.site.names("t"), 2)
    if s.rng.random() < 0.5:
        objs.append(s.rng.choice(s.site.names("bulk")))
    s.params["xhr_objects"] = len(objs)
    script = _CHECK_JS.replace("NAMES", json.dumps(objs)).replace("REPORT", _REPORT)
    (root / _PAGE).write_text(html.replace("<title>lab</title>", "<title>lab</title>" + script, 1))
    return images, objs


def _nssdb(s: Session, db: Path) -> None:
    """A fresh NSS database at ``db`` that trusts the session's CA."""
    db.mkdir(parents=True, exist_ok=True)
    s.topo.run("client", ["certutil", "-N", "-d", f"sql:{db}", "--empty-password"])
    s.topo.run(
        "client", ["certutil", "-A", "-d", f"sql:{db}", "-n", "lab-ca", "-t", "C,,", "-i", str(s.ca.cert)]
    )


class Browsers(Scenario):
    """Chromium and Firefox ESR page loads over HTTP/1.1, HTTP/2 and HTTP/3."""

    name = "browsers"
    summary = "benign page loads from headless Chromium and Firefox ESR (h1, h2, h3; nginx, caddy, apache2)"
    traffic_class = "benign"
    family = "tls"
    programs: ClassVar[dict[str, str]] = {
        "chromium": "chromium",
        "firefox-esr": "firefox-esr",
        "certutil": "libnss3-tools",
        "nginx": "nginx-light",
        "caddy": "caddy",
        "apache2": "apache2",
    }
    variants = ("chromium-h2", "firefox-h2", "chromium-h1", "firefox-h1", "chromium-h3", "firefox-h3")

    def run(self, s: Session, variant: str) -> Outcome:
        browser, proto = variant.split("-")
        a, topo = s.addr, s.topo
        name = s.hostname()
        port = s.port("port", 443, 0.7)
        if port in _BLOCKED_PORTS:
            port = s.params["port"] = 443
        if proto == "h3":
            impl = s.choose("server", ("caddy",))
        elif proto == "h2":
            impl = s.choose("server", ("nginx", "caddy", "apache2"))
        else:
            impl = s.choose("server", ("nginx", "caddy", "apache2", "python"))
        tls12 = proto != "h3" and s.choose("server_tls", ("1.2+1.3", "1.2+1.3", "1.2")) == "1.2"
        srv = start_web_server(s, impl, name, port, h2=proto != "h1", h3=proto == "h3", tls12=tls12)
        resolve_in_client(s, {name: a.server_ip})
        s.identify(stack="chromium" if browser == "chromium" else "firefox", impl=impl)
        images, objs = _make_page(s)
        url = f"https://{name}:{port}/{_PAGE}"
        profile = s.workdir / f"{browser}-profile"
        if browser == "chromium":
            argv, env, software = self._chromium(s, profile, name, port, proto)
        else:
            argv, env, software = self._firefox(s, profile, name, port, proto)
        r = topo.run("client", [*argv, url], check=False, timeout=90, env=env)
        (s.workdir / f"{browser}.log").write_text(r.stdout[-20000:] + "\n--- stderr\n" + r.stderr[-20000:])
        rules = [FlowRule("carrier", PROTO["tcp"], a.server_ip, port, "benign", "tls")]
        if proto == "h3":
            rules.insert(0, FlowRule("carrier-quic", PROTO["udp"], a.server_ip, port, "benign", "quic"))
        out = Outcome(rules=rules, software=[*srv.software, *software])
        self._verify(s, out, srv.request_log(), r.returncode, proto, [_PAGE, *images], objs)
        return out

    @staticmethod
    def _chromium(
        s: Session, profile: Path, name: str, port: int, proto: str
    ) -> tuple[list[str], dict[str, str], list[str]]:
        home = profile / "home"
        _nssdb(s, home / ".pki" / "nssdb")
        argv = [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            "--metrics-recording-only",
            "--disable-features=DnsOverHttps,OptimizationHints,MediaRouter",
            f"--user-data-dir={profile / 'data'}",
            "--virtual-time-budget=8000",
            "--dump-dom",
        ]
        if proto == "h1":
            argv.append("--disable-http2")
        elif proto == "h3":
            argv += ["--enable-quic", f"--origin-to-force-quic-on={name}:{port}"]
        else:
            argv.append("--disable-quic")
        return argv, {"HOME": str(home)}, ["chromium"]

    @staticmethod
    def _firefox(
        s: Session, profile: Path, name: str, port: int, proto: str
    ) -> tuple[list[str], dict[str, str], list[str]]:
        _nssdb(s, profile)
        prefs: dict[str, object] = dict(_FIREFOX_PREFS)
        prefs["network.http.http2.enabled"] = proto != "h1"
        prefs["network.http.http3.enable"] = proto == "h3"
        if proto == "h3":
            prefs["network.http.http3.alt-svc-mapping-for-testing"] = f"{name};h3=:{port}"
        (profile / "user.js").write_text(
            "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in prefs.items())
        )
        shot = profile / "page.png"
        argv = [
            "firefox-esr",
            "--headless",
            "--no-remote",
            "--profile",
            str(profile),
            "--screenshot",
            str(shot),
        ]
        return argv, {"HOME": str(profile), "MOZ_HEADLESS": "1"}, ["firefox-esr"]

    @staticmethod
    def _verify(
        s: Session, out: Outcome, log: Path, rc: int, proto: str, page: list[str], objs: list[str]
    ) -> None:
        client = s.addr.client_ip
        recs = [r for r in read_server_log(log) if r.get("client") == client]
        if not recs:
            raise LabError("lab.no_server_requests", str(log))
        served = {str(r.get("path", "")).lstrip("/") for r in recs if r.get("status") == 200}
        protos: dict[str, int] = {}
        for rec in recs:
            if rec.get("proto"):
                protos[str(rec["proto"])] = protos.get(str(rec["proto"]), 0) + 1
        reports = [str(r["path"]).split("?", 1)[1] for r in recs if f"/{_REPORT}?" in str(r.get("path"))]
        reported = dict(parse_qsl(reports[-1])) if reports else {}
        good = []
        for name in objs:
            data = (s.site.root / name).read_bytes()
            if reported.get(name) == f"{zlib.crc32(data):x}-{len(data)}":
                good.append(name)
        carried = sum(s.site.files[n][0] for n in [*good, _PAGE])
        missing = [n for n in page if n not in served]
        out.checks |= {
            "browser_rc": rc,
            "page_objects_served": len(page) - len(missing),
            "fetched_verified": len(good),
            "fetched_failed": len(objs) - len(good),
            "payload_bytes": carried,
            "server_requests_via_carrier": len(recs),
        }
        if protos:
            out.checks["requests_by_proto"] = [f"{k}={v}" for k, v in sorted(protos.items())]
        out.carried_bytes = carried
        if missing:
            out.problems.append(f"server did not serve {missing} to {client}")
        if len(good) < len(objs):
            out.problems.append(f"page verified {len(good)} of {len(objs)} fetched objects: {reports[-1:]}")
        # with a real RTT Firefox sends its first requests over HTTP/2 while QUIC connects; the
        # rest must come over HTTP/3 (both flows are labeled: quic and tls)
        if proto == "h3" and protos.get("HTTP/3.0", 0) < (len(page) + len(objs)) // 2:
            out.problems.append(f"fewer than half of the requests came over HTTP/3: {protos}")
