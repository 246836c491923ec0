"""Verdicts name the catalogue service: on made-up flows for each rule, and on nDPI's real captures."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from sluice.detect._service_names import NAME_CONFIDENCE, name_service
from sluice.detect.combiner import Combiner
from sluice.detect.verdict import DETECTABLE_CLASSES, Verdict
from sluice.flows.record import FlowRecord
from sluice.services import default_catalogue, loads_catalogue
from tests.detect.conftest import lab_label, lab_records, ndpi_records

HTTPS = "https-nginx-h2-tls13-s1-000"
WIREGUARD = "wireguard-psk-s1-001"


def _https(**meta: Any) -> FlowRecord:
    rec = next(r for r in lab_records(HTTPS) if r.meta.sni or r.meta.app == "tls")
    return replace(rec, meta=replace(rec.meta.copy(), **meta))


def _wireguard(server: str) -> FlowRecord:
    rec = next(r for r in lab_records(WIREGUARD) if lab_label(WIREGUARD, r))
    return replace(rec, server=server)


def test_a_flow_to_a_brand_site_names_the_service_below_a_fingerprint() -> None:
    combiner = Combiner()
    plain = combiner.judge(_https())
    assert (plain.label, plain.service) == ("benign", "")
    v = combiner.judge(_https(sni="www.nordvpn.com"))
    assert (v.label, v.family, v.service) == ("vpn", "commercial:nordvpn", "nordvpn")
    assert v.detector == "combiner:service" and v.confidence == NAME_CONFIDENCE["sni"] < 0.8
    ev = v.evidence[0]
    assert (ev.code, ev.feature, ev.observed) == ("service.name", "sni", "www.nordvpn.com")
    assert "*.nordvpn.com" in ev.reference and "source:" in ev.reference
    assert v.to_dict()["service"] == "nordvpn"
    off = Combiner(name_services=False).judge(_https(sni="www.nordvpn.com"))
    assert (off.label, off.service) == ("benign", "")


@pytest.mark.parametrize(
    ("meta", "service", "what"),
    [
        ({"http_host": "www.windscribe.com:80", "sni": ""}, "windscribe", "http_host"),
        ({"dns_query": "controlplane.tailscale.com", "sni": ""}, "tailscale", "dns"),
        ({"dns_answers": ("derp3.tailscale.com", "1.2.3.4"), "sni": ""}, "tailscale", "dns"),
        ({"cert_subject": "C=US, O=Private Internet Access, CN=x", "sni": ""}, "pia", "cert"),
        ({"cert_san": ("*.protonvpn.net",), "sni": ""}, "protonvpn", "cert"),
    ],
)
def test_every_name_field_can_name_the_service(meta: dict[str, Any], service: str, what: str) -> None:
    v = Combiner().judge(_https(**meta))
    assert v.service == service and v.label == "vpn"
    assert [e.feature for e in v.evidence if e.code == "service.name"] == [what]


def test_an_address_in_shared_infrastructure_never_names_alone() -> None:
    rec = _https(sni="")
    warp_addr = replace(rec, server="162.159.193.10")
    v = Combiner().judge(warp_addr)
    assert v.service == "" and v.label == "benign", "WARP's range lies in Cloudflare's: no naming by address"
    assert default_catalogue().shared("162.159.193.10") is not None


def test_a_fingerprint_and_an_address_that_agree_name_the_service() -> None:
    plain = Combiner().judge(_wireguard("198.51.100.7"))
    assert (plain.label, plain.family, plain.service) == ("vpn", "wireguard", "")
    v = Combiner().judge(_wireguard("162.159.193.10"))
    assert (v.label, v.family, v.service) == ("vpn", "commercial:cloudflarewarp", "cloudflarewarp")
    codes = [e.code for e in v.evidence]
    assert codes[-1] == "service.address" and any(c.startswith("wireguard.") for c in codes), codes
    assert "162.159.193.0/24" in v.evidence[-1].reference and "cloudflare.com" in v.evidence[-1].reference
    assert v.confidence >= plain.confidence


def test_a_dedicated_range_names_alone_and_a_disagreeing_protocol_does_not() -> None:
    text = """
[catalogue]
version = 1
[[service]]
id = "acme"
brand = "Acme VPN"
class = "vpn"
family = "commercial:acme"
homepage = "https://acme.example"
protocols = ["openvpn"]
ranges = [{ cidr = "198.51.100.0/24", source = "test" }]
"""
    cat = loads_catalogue(text)
    combiner = Combiner(catalogue=cat)
    alone = combiner.judge(replace(_https(sni=""), server="198.51.100.9"))
    assert (alone.label, alone.family, alone.service) == ("vpn", "commercial:acme", "acme")
    assert alone.evidence[0].code == "service.address" and alone.evidence[0].observed == "198.51.100.9"
    wg = combiner.judge(_wireguard("198.51.100.9"))
    assert (wg.family, wg.service) == ("wireguard", ""), "Acme offers OpenVPN only: the service is not named"
    assert wg.evidence[-1].code == "service.address" and wg.evidence[-1].contribution == 0.0
    assert "not known to offer wireguard" in wg.evidence[-1].reason


def test_a_family_that_already_names_a_service_gets_it() -> None:
    v = Verdict(1, "k", "vpn", "commercial:tailscale", 0.9, 3, "x", "5")
    assert name_service(v, _https(sni=""), default_catalogue()).service == "tailscale"
    other = Verdict(1, "k", "vpn", "commercial:unlisted", 0.9, 3, "x", "5")
    assert name_service(other, _https(sni=""), default_catalogue()).service == ""


# --- nDPI's captures ---------------------------------------------------------------------------------

NAMED = {
    "opera-vpn.pcapng": "operavpn",
    "pia.pcap": "pia",
    "mullvad_dns.pcap": "mullvad",
    "tailscale.pcap": "tailscale",
}


def _judged(name: str) -> list[Verdict]:
    return [v for _, v in Combiner().judge_all(ndpi_records(name))]


@pytest.mark.corpus
@pytest.mark.parametrize("capture", sorted(NAMED))
def test_vpn_captures_name_their_service(capture: str) -> None:
    verdicts = _judged(capture)
    named = [v for v in verdicts if v.service]
    assert named, capture
    assert {v.service for v in named} == {NAMED[capture]}
    for v in named:
        assert v.label in DETECTABLE_CLASSES and v.family == f"commercial:{NAMED[capture]}"


@pytest.mark.corpus
def test_sites_capture_names_nordvpn_and_surfshark_by_name() -> None:
    by_service = {v.service: v for v in _judged("sites.pcapng") if v.service}
    assert set(by_service) == {"nordvpn", "surfshark"}
    nord = by_service["nordvpn"]
    assert nord.evidence[0].observed == "s1.nordcdn.com", "named by name although the address is Cloudflare's"
    assert by_service["surfshark"].evidence[0].reference.startswith("*.prod.surfshark.com")


@pytest.mark.corpus
def test_the_mullvad_dns_query_names_mullvad_at_dns_confidence() -> None:
    (v,) = [v for v in _judged("mullvad_dns.pcap") if v.service]
    assert v.confidence == NAME_CONFIDENCE["dns"]
    assert (v.evidence[0].feature, v.evidence[0].observed) == ("dns", "www.mullvad.net")


@pytest.mark.corpus
def test_forticlient_names_no_service() -> None:
    verdicts = _judged("forticlient.pcap")
    assert {v.service for v in verdicts} == {""}
    assert {v.family for v in verdicts} == {"fortinet"}


BENIGN = [
    "443-chrome.pcap",
    "google_ssl.pcap",
    "facebook.pcap",
    "443-safari.pcap",
    "443-curl.pcap",
    "chrome.pcap",
    "firefox.pcap",
    "instagram.pcap",
    "youtubeupload.pcap",
    "dropbox.pcap",
    "teams.pcap",
    "yandex.pcapng",
    "vk.pcapng",
    "dns.pcap",
    "doh.pcapng",
    "quic.pcap",
]


@pytest.mark.corpus
@pytest.mark.parametrize("capture", BENIGN)
def test_benign_captures_name_no_service(capture: str) -> None:
    named = [(v.flow_key, v.service, v.evidence[0].observed) for v in _judged(capture) if v.service]
    assert named == [], capture
