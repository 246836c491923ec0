"""Certificates from captures: a mirror that presents the blocked site's certificate is tied to it.

The capture is sluice's own: real TLS 1.2 handshakes (OpenSSL in memory-BIO mode through
:func:`sluice.synth.payloads.tls_exchange`) with certificates issued by :class:`sluice.lab.pki.LabCA`,
each replayed in a TCP connection (:class:`sluice.synth.sessions.TcpSession`) and written with
:class:`sluice.io.pcap_writer.PcapWriter`.  Every server has its own address, so the only link
between the blocked site and its mirror is the certificate.
"""

from __future__ import annotations

import json
import random
import ssl
from pathlib import Path

import pytest
from click.testing import CliRunner

from sluice.cli.main import cli
from sluice.io.pcap_writer import PcapWriter
from sluice.lab.pki import Issued, LabCA
from sluice.mirrors.discover import find_candidates, read_observed_traffic
from sluice.synth.payloads import tls_exchange
from sluice.synth.sessions import TcpSession

SEED = "fonbet.test"
MIRROR = "qz81mx.online"  # nothing in the name ties it to the seed
LOOKALIKE = "fonbet-zerkalo.test"  # the name does; its certificate is its own
UNRELATED = "flowers-shop.test"  # neither


def _context(issued: Issued) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(issued.cert, issued.key)
    return ctx


def _capture(tmp_path: Path) -> Path:
    ca = LabCA(tmp_path / "ca")
    seed_cert = ca.issue(SEED)
    servers = [  # (name asked for, certificate served, server address)
        (SEED, seed_cert, "198.51.100.10"),
        (MIRROR, seed_cert, "203.0.113.77"),
        (LOOKALIKE, ca.issue(LOOKALIKE), "203.0.113.90"),
        (UNRELATED, ca.issue(UNRELATED), "192.0.2.55"),
    ]
    frames = []
    for i, (name, cert, addr) in enumerate(servers):
        ex = tls_exchange(name, version="1.2", server_context=_context(cert))
        assert ex.version == "TLSv1.2"
        s = TcpSession(("10.1.0.2", 50000 + i), (addr, 443), start_ts=1.0 + i, rng=random.Random(i))
        for from_client, data in ex.messages:
            (s.client_send if from_client else s.server_send)(data)
        s.close()
        frames += [(ts, s.linktype, fr) for ts, fr in s.packets]
    path = tmp_path / "tls.pcap"
    with path.open("wb") as fh:
        w = PcapWriter(fh, frames[0][1], snaplen=0xFFFF)
        for ts, _, fr in sorted(frames):
            w.write(ts, fr)
    return path


def test_mirror_sharing_the_seeds_certificate_is_found(tmp_path: Path) -> None:
    obs, traffic = read_observed_traffic([_capture(tmp_path)])
    assert {SEED, MIRROR, LOOKALIKE, UNRELATED} <= set(traffic.certs)
    (seen,) = traffic.certs[MIRROR]
    assert seen.san == (SEED,) and seen.subject == f"CN={SEED}" and "Lab Root CA" in seen.issuer
    found = {c.domain: c for c in find_candidates([SEED], obs, certs=traffic.certs)}
    m = found[MIRROR]
    f = m.traits.function
    assert f.holds and m.how == "certificate"
    ev = f.values["shared_certificates"]
    assert isinstance(ev, list) and ev[0]["match"] == "same SAN set"
    assert ev[0]["san"] == [SEED] and ev[0]["subject"] == f"CN={SEED}" and ev[0]["seen_for"] == MIRROR
    assert not f.values.get("shared_addresses")  # the certificate is the only link
    assert UNRELATED not in found
    look = found[LOOKALIKE]  # found by name, not tied by its own certificate
    assert look.how == "substring" and "shared_certificates" not in look.traits.function.values
    assert not look.traits.function.holds
    # without the certificates, the mirror is not found at all
    assert MIRROR not in {c.domain for c in find_candidates([SEED], obs)}


def test_cli_reads_certificates_from_the_capture(tmp_path: Path) -> None:
    cap = _capture(tmp_path)
    r = CliRunner().invoke(cli, ["mirrors", "candidates", SEED, "--observed", str(cap), "--json"])
    assert r.exit_code == 0, r.output
    rows = {x["domain"]: x for x in map(json.loads, r.output.splitlines())}
    fn = rows[MIRROR]["traits"]["function"]
    assert fn["holds"] and fn["shared_certificates"][0]["match"] == "same SAN set"
    assert UNRELATED not in rows


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_flow_logs_carry_the_certificates(tmp_path: Path, fmt: str) -> None:
    """The capture turned into a flow log by ``sluice flows`` gives the same link."""
    log = tmp_path / f"flows.{fmt}"
    r = CliRunner().invoke(cli, ["flows", str(_capture(tmp_path)), "--format", fmt, "--out", str(log)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["mirrors", "candidates", SEED, "--observed", str(log), "--json"])
    assert r.exit_code == 0, r.output
    rows = {x["domain"]: x for x in map(json.loads, r.output.splitlines())}
    ev = rows[MIRROR]["traits"]["function"]["shared_certificates"]
    assert ev[0]["match"] == "same SAN set" and ev[0]["san"] == [SEED]
    assert UNRELATED not in rows


def test_certificate_naming_the_seed_and_crowded_certificates() -> None:
    from sluice.mirrors.infra import MAX_CERT_DOMAINS, cert_links, crowded_certs
    from sluice.registry.impact import TrafficCert

    own = TrafficCert("CN=fonbet.test", "CN=CA", ("fonbet.test",))
    multi = TrafficCert("CN=abc.online", "CN=Other CA", ("*.fonbet.test", "abc.online"))
    other = TrafficCert("CN=shop.test", "CN=CA", ("shop.test",))
    links = cert_links("www.fonbet.test", [own], [multi], set())
    assert [x.match for x in links] == ["names the blocked site"]
    assert cert_links("fonbet.test", [own], [other], set()) == []
    cdn = TrafficCert("CN=sni.cdn.example", "CN=CDN CA", ("sni.cdn.example",))
    certs = {f"site{i}.example": {cdn} for i in range(MAX_CERT_DOMAINS + 1)} | {"fonbet.test": {cdn}}
    crowded = crowded_certs(certs)
    assert crowded == {cdn}
    assert cert_links("fonbet.test", [cdn], [cdn], crowded) == []


def test_cert_index_agrees_with_the_pairwise_rule() -> None:
    from sluice.mirrors.infra import CertIndex, cert_links
    from sluice.registry.impact import TrafficCert

    seed_cert = TrafficCert("CN=fonbet.test", "CN=CA", ("fonbet.test", "www.fonbet.test"))
    certs = {
        "fonbet.test": {seed_cert},
        "a.online": {seed_cert},  # same SAN set
        "b.online": {TrafficCert("CN=fonbet.test", "CN=CA", ("b.online",))},  # same issuer+subject
        "c.online": {TrafficCert("CN=fonbet.test", "CN=Other", ("c.online",))},  # another issuer
        "d.online": {TrafficCert("CN=d.online", "CN=CA", ("*.test", "d.online"))},  # names it
        "e.online": {TrafficCert("CN=e.online", "CN=CA", ("e.online",))},
        "f.online": {TrafficCert("", "", ("fonbet.test", "f.online"))},  # names it, no subject
    }
    index = CertIndex(certs)
    for seed in ("fonbet.test", "www.fonbet.test", "e.online"):
        mine = certs.get(seed, set())
        pairwise = {
            n: got
            for n, cs in certs.items()
            if n != seed and (got := cert_links(seed, mine, cs, index.crowded))
        }
        assert index.links(seed) == pairwise
    assert set(index.links("fonbet.test")) == {"a.online", "b.online", "d.online", "f.online"}
