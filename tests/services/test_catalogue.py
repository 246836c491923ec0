"""The service catalogue: the shipped file, the loader's refusals, and the indexed lookups."""

from __future__ import annotations

import fnmatch
import ipaddress
import tomllib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sluice.errors import ConfigError
from sluice.services import Catalogue, default_catalogue, load_catalogue, loads_catalogue
from sluice.services.catalogue_toml import DEFAULT_PATH, TAXONOMY_FAMILIES, build_catalogue

REGULATOR_TEN = (
    "nordvpn",
    "hidemyass",
    "hola",
    "openvpn",
    "vyprvpn",
    "expressvpn",
    "torguard",
    "ipvanish",
    "kaspersky-vpn",
    "vpnunlimited",
)
OTHERS = (
    *("protonvpn", "windscribe", "tunnelbear", "surfshark", "mullvad", "pia", "cloudflarewarp", "psiphon"),
    *(
        "lantern",
        "operavpn",
        "hotspotshield",
        "outline",
        "tailscale",
        "zerotier",
        "vpngate",
        "cyberghost",
        "tor",
    ),
)


def _doc() -> dict[str, Any]:
    return tomllib.loads(DEFAULT_PATH.read_text(encoding="utf-8"))


def test_shipped_catalogue_loads_with_every_named_service() -> None:
    cat = load_catalogue()
    ids = {s.id for s in cat.services}
    assert set(REGULATOR_TEN) <= ids and set(OTHERS) <= ids
    assert cat is not default_catalogue() and default_catalogue() is default_catalogue()
    for s in cat.services:
        if s.label == "vpn":
            assert s.family == f"commercial:{s.id}"
        assert all(r.source for r in s.ranges) and all(a.source for a in s.asns)
        if s.domains or s.names or s.cert_orgs:
            assert s.name_source, f"{s.id}: names without a source"
        else:
            assert s.note, f"{s.id}: no names, and no note saying why"
    for fam in ("psiphon", "lantern", "tor"):
        assert (cat.get(fam).label, cat.get(fam).family) == ("circumvention", fam)
    shared = {e.id for e in cat.shared_infra}
    assert {
        "cloudflare",
        "akamai",
        "aws",
        "google",
        "azure",
        "fastly",
        "digitalocean",
        "ovh",
        "hetzner",
        "m247",
    } <= shared
    assert all(r.source for e in cat.shared_infra for r in e.ranges)


@pytest.mark.parametrize(
    ("name", "service", "pattern"),
    [
        ("www.nordvpn.com", "nordvpn", "*.nordvpn.com"),
        ("NordVPN.com.", "nordvpn", "nordvpn.com"),
        ("s1.nordcdn.com", "nordvpn", "nordcdn.com"),
        ("it-mil-v086.prod.surfshark.com", "surfshark", "*.prod.surfshark.com"),
        ("derp10.tailscale.com", "tailscale", "derp*.tailscale.com"),
        ("controlplane.tailscale.com", "tailscale", "controlplane.tailscale.com"),
        ("login.tailscale.com", "tailscale", "login.tailscale.com"),
        ("pkgs.tailscale.com", "tailscale", "tailscale.com"),
        ("engage.cloudflareclient.com", "cloudflarewarp", "engage.cloudflareclient.com"),
        ("eu0.sec-tunnel.com", "operavpn", "*.sec-tunnel.com"),
        ("vpn-api.proton.me", "protonvpn", "vpn-api.proton.me"),
        ("node-de-01.protonvpn.net", "protonvpn", "protonvpn.net"),
        ("my.zerotier.com", "zerotier", "zerotier.com"),
        ("www.vpngate.net", "vpngate", "vpngate.net"),
        ("client.hola.org", "hola", "hola.org"),
        ("assets.windscribe.com", "windscribe", "windscribe.com"),
        ("www.tunnelbear.com", "tunnelbear", "tunnelbear.com"),
        ("psiphon3.com", "psiphon", "psiphon3.com"),
        ("www.torproject.org", "tor", "torproject.org"),
    ],
)
def test_names_match_their_service(name: str, service: str, pattern: str) -> None:
    m = default_catalogue().match_name(name, "dns")
    assert m is not None, name
    assert (m.service, m.pattern, m.what) == (service, pattern, "dns")
    assert m.source == default_catalogue().get(service).name_source
    assert m.observed == name.lower().rstrip(".")


@pytest.mark.parametrize(
    "name",
    [
        "nordvpn.com.evil.example",
        "notnordvpn.com",
        "proton.me",
        "mail.proton.me",
        "kaspersky.com",
        "www.opera.com",
        "tailscale.com.example",
        "com",
        "",
        "..",
        "a" * 300,
        "1.2.3.4",
        "bad name.com",
        "www.google.com",
    ],
)
def test_other_names_match_nothing(name: str) -> None:
    assert default_catalogue().match_name(name) is None


def test_certificate_names_and_organisation() -> None:
    cat = default_catalogue()
    subject = (
        "C=US, ST=CA, L=LosAngeles, O=Private Internet Access, OU=Private Internet Access, CN=newjersey402"
    )
    m = cat.match_cert(subject, ("newjersey402",))
    assert m is not None and (m.service, m.what, m.pattern) == ("pia", "cert", "O=Private Internet Access")
    by_san = cat.match_cert("CN=unrelated.example", ("foo.example", "*.nordvpn.com"))
    assert by_san is not None and (by_san.service, by_san.what) == ("nordvpn", "cert")
    assert cat.match_cert("C=US, O=Private Internet Access Fans, CN=x", ()) is None
    assert cat.match_cert("O=Fortinet, CN=FWF60E4Q16012050", ()) is None


def test_addresses_and_shared_infrastructure() -> None:
    cat = default_catalogue()
    warp = cat.match_address("162.159.193.7")
    assert warp is not None and (warp.service, warp.what, warp.pattern) == (
        "cloudflarewarp",
        "address",
        "162.159.193.0/24",
    )
    assert "developers.cloudflare.com" in warp.source
    assert warp.shared is not None and warp.shared.id == "cloudflare", (
        "WARP's ingress lies inside Cloudflare's"
    )
    v6 = cat.match_address("2606:4700:d0::a29f:c001")
    assert v6 is not None and v6.pattern == "2606:4700:d0::/48" and v6.shared is not None
    for ip, shared in (
        ("104.16.156.111", "cloudflare"),
        ("18.196.71.179", "aws"),
        ("142.250.74.78", "google"),
        ("151.101.1.69", "fastly"),
        ("2606:4700::6810:9c6f", "cloudflare"),
    ):
        infra = cat.shared(ip)
        assert infra is not None and infra.id == shared, ip
        assert infra.source and ipaddress.ip_address(ip) in ipaddress.ip_network(infra.cidr)
        assert cat.match_address(ip) is None
    for nothing in ("10.0.0.1", "192.168.1.1", "::1", "not an address", ""):
        assert cat.shared(nothing) is None and cat.match_address(nothing) is None


def test_longest_prefix_wins_and_empty_catalogues_answer_nothing() -> None:
    text = _minimal(
        ranges='ranges = [{ cidr = "10.0.0.0/8", source = "s8" }, { cidr = "10.1.0.0/16", source = "s16" }]'
    )
    cat = loads_catalogue(text)
    m = cat.match_address("10.1.2.3")
    assert m is not None and (m.pattern, m.source) == ("10.1.0.0/16", "s16")
    m8 = cat.match_address("10.2.0.1")
    assert m8 is not None and m8.pattern == "10.0.0.0/8" and m8.shared is None
    empty = Catalogue([])
    assert empty.match_address("10.0.0.1") is None and empty.shared("10.0.0.1") is None
    assert empty.match_name("nordvpn.com") is None


def test_find_by_id_brand_or_name() -> None:
    cat = default_catalogue()
    assert cat.find("nordvpn") is cat.get("nordvpn")
    assert cat.find("NordVPN") is cat.get("nordvpn")
    assert cat.find("us1234.nordvpn.com") is cat.get("nordvpn")
    assert cat.find("nothing-like-it") is None
    with pytest.raises(KeyError):
        cat.get("nothing-like-it")


# --- the index gives what a plain loop over every pattern would give ----------------------------------


def _reference(cat: Catalogue, name: str) -> set[str]:
    """Services whose domain or glob matches, by a loop over every pattern."""
    out = set()
    for s in cat.services:
        if any(name == d or name.endswith("." + d) for d in s.domains):
            out.add(s.id)
        if any(fnmatch.fnmatchcase(name, g) for g in s.names):
            out.add(s.id)
    return out


_LABELS = st.sampled_from(
    ["www", "derp1", "derp", "api", "nordvpn", "com", "tailscale", "prod", "surfshark", "sec-tunnel", "eu0",
     "proton", "me", "vpn-api", "net", "org", "hola", "x", "controlplane", "cloudflareclient", "engage"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_LABELS, min_size=1, max_size=5))
@example(["derp", "tailscale", "com"])
@example(["a", "prod", "surfshark", "com"])
def test_index_agrees_with_a_loop_over_every_pattern(labels: list[str]) -> None:
    cat = default_catalogue()
    name = ".".join(labels)
    m = cat.match_name(name)
    expected = _reference(cat, name)
    if not expected:
        assert m is None, name
    else:
        assert m is not None and m.service in expected, (name, expected)


# --- refusals ------------------------------------------------------------------------------------------

A = "catalogue.service[acme]"
_HEAD = '[catalogue]\nversion = 1\n\n[[service]]\nid = "acme"\nbrand = "Acme VPN"\nclass = "vpn"\n'


_SHARED = '[[shared]]\nid = "{id}"\noperator = "X"\nkind = "{kind}"\n'


def _minimal(**fields: str) -> str:
    base = {
        "family": 'family = "commercial:acme"',
        "homepage": 'homepage = "https://acme.example"',
        "domains": 'domains = ["acme.example"]',
        "name_source": 'name_source = "the brand\'s site"',
        "protocols": 'protocols = ["openvpn"]',
        "ranges": "",
    }
    base.update(fields)
    return _HEAD + "\n".join(v for v in base.values() if v) + "\n"


def test_minimal_document_loads() -> None:
    cat = loads_catalogue(_minimal())
    assert [s.id for s in cat.services] == ["acme"]
    assert cat.match_name("www.acme.example") is not None


@pytest.mark.parametrize(
    ("text", "option", "words"),
    [
        ("[catalogue\n", "catalogue", "not TOML"),
        ("[catalogue]\nversion = 2\n", "catalogue.catalogue.version", "version 1"),
        ("[catalogue]\nversion = true\n", "catalogue.catalogue.version", "version 1"),
        ("version = 1\n", "catalogue.version", "unknown field"),
        ("service = 3\n[catalogue]\nversion = 1\n", "catalogue.service", "must be a list"),
        ("[catalogue]\nversion = 1\nservice = 3\n", "catalogue.catalogue.service", "unknown field"),
        ("service = [1]\n[catalogue]\nversion = 1\n", "catalogue.service[#0]", "must be a table"),
        (_minimal(family='family = "commercial:other"'), A + ".family", "not valid"),
        (_minimal(family='family = "tor"'), A + ".family", "not valid"),
        (_minimal(family=""), A + ".family", "missing"),
        (_minimal(homepage='homepage = "acme.example"'), A + ".homepage", "URL"),
        (_minimal(protocols='protocols = ["lightway"]'), A + ".protocols[0]", "taxonomy"),
        (_minimal(protocols='protocols = "openvpn"'), A + ".protocols", "must be a list"),
        (_minimal(domains='domains = ["com"]'), A + ".domains[0]", "two labels"),
        (_minimal(domains='domains = ["bad name.example"]'), A + ".domains[0]", "not a domain"),
        (_minimal(domains='domains = ["10.0.0.1"]'), A + ".domains[0]", "two labels"),
        (_minimal(domains='domains = [""]'), A + ".domains[0]", "non-empty"),
        (_minimal(domains='names = ["*.com"]'), A + ".names[0]", "literal domain"),
        (_minimal(domains='names = ["vpn*"]'), A + ".names[0]", "literal domain"),
        (_minimal(domains='names = ["a?.acme.example"]'), A + ".names[0]", "only"),
        (_minimal(name_source=""), A + ".name_source", "missing"),
        (
            _minimal(ranges='ranges = [{ cidr = "10.0.0.1/8", source = "x" }]'),
            A + ".ranges[0].cidr",
            "host bits",
        ),
        (
            _minimal(ranges='ranges = [{ cidr = "300.0.0.0/8", source = "x" }]'),
            A + ".ranges[0].cidr",
            "not a network",
        ),
        (
            _minimal(ranges='ranges = [{ cidr = "10.0.0.0/8" }]'),
            A + ".ranges[0].source",
            "missing",
        ),
        (
            _minimal(ranges='ranges = [{ cidr = "10.0.0.0/8", source = "x", owner = "y" }]'),
            A + ".ranges[0].owner",
            "unknown field",
        ),
        (_minimal(ranges='asns = [{ asn = 0, source = "x" }]'), A + ".asns[0].asn", "AS number"),
        (_minimal(ranges='asns = [{ asn = "AS1", source = "x" }]'), A + ".asns[0].asn", "AS number"),
        (_minimal(ranges='asns = [{ asn = 1 }]'), A + ".asns[0].source", "missing"),
        (_minimal(ranges='colour = "red"'), A + ".colour", "unknown field"),
        (_minimal() + _HEAD.split("\n\n", 1)[1] + 'family = "commercial:acme"\nhomepage = "https://a.example"\n',
         A + ".id", "duplicate"),
        (
            _minimal() + '[[service]]\nid = "b"\nbrand = "B"\nclass = "vpn"\nfamily = "commercial:b"\n'
            'homepage = "https://b.example"\ndomains = ["acme.example"]\nname_source = "x"\n',
            "catalogue.service[b].domains",
            "also acme's",
        ),
        (_minimal() + _SHARED.format(id="acme", kind="cdn"), "catalogue.shared[acme].id", "duplicate"),
        (_minimal() + _SHARED.format(id="cdn", kind="isp"), "catalogue.shared[cdn].kind", "one of"),
        (_HEAD.replace('id = "acme"', 'id = "Acme VPN"'), "catalogue.service[Acme VPN].id", "lower-case"),
        (_HEAD.replace('class = "vpn"', 'class = "benign"'), A + ".class", "one of"),
    ],
)  # fmt: skip
def test_bad_documents_are_refused_with_entry_and_field(text: str, option: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        loads_catalogue(text, "test.toml")
    assert err.value.option == option, str(err.value)
    assert words in str(err.value)


def test_missing_or_unreadable_file(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match=r"catalogue\.path"):
        load_catalogue(tmp_path / "absent.toml")
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00junk")
    with pytest.raises(ConfigError, match="catalogue"):
        load_catalogue(binary)


# --- fuzzing: nothing but ConfigError, ever -----------------------------------------------------------

_TOKENS = st.sampled_from(
    ["[catalogue]", "[[service]]", "[[shared]]", "version = 1", "version = 2", 'id = "x"', 'id = 3',
     'class = "vpn"', 'class = "proxy"', 'family = "commercial:x"', 'family = "relay"', 'brand = ""',
     'homepage = "https://x.example"', 'domains = ["x.example", "*"]', 'names = ["*.x.example", "**"]',
     "ranges = [{ cidr = \"1.2.3.0/24\", source = \"s\" }]", "ranges = [{ cidr = 5 }]", "ranges = [[]]",
     "asns = [{ asn = 99999999999, source = \"s\" }]", "asns = [1]", "protocols = [\"ssh\", 1]",
     'cert_orgs = ["O"]', 'name_source = "n"', 'kind = "cdn"', 'operator = "o"', "note = 1.5", "x = {}",
     "= =", '"', "[", "]", "\n", "service = []", "shared = {}", "catalogue = 1", "reviewed = 2026-01-01"]
)  # fmt: skip


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_TOKENS, max_size=30), st.text(max_size=20))
@example(["[catalogue]", "version = 1", "[[service]]", 'id = "x"', "ranges = [[]]"], "")
def test_fuzzed_documents_only_ever_raise_config_error(tokens: list[str], noise: str) -> None:
    text = "\n".join(tokens) + "\n" + noise
    try:
        cat = loads_catalogue(text)
    except ConfigError as exc:
        assert exc.option.startswith("catalogue")
        return
    for s in cat.services:
        cat.match_name(f"www.{s.domains[0]}" if s.domains else "x.example")


_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _mutations() -> st.SearchStrategy[Callable[[dict[str, Any]], None]]:
    def setter(section: str, index: int, key: str, value: object) -> Callable[[dict[str, Any]], None]:
        def apply(doc: dict[str, Any]) -> None:
            entries = doc[section]
            entries[index % len(entries)][key] = value

        return apply

    keys = st.sampled_from(
        ["id", "brand", "class", "family", "homepage", "protocols", "domains", "names", "cert_orgs", "asns",
         "ranges", "note", "name_source", "operator", "kind", "zz"]
    )  # fmt: skip
    return st.builds(setter, st.sampled_from(["service", "shared"]), st.integers(0, 40), keys, _VALUES)


@settings(max_examples=300, deadline=None)
@given(st.lists(_mutations(), min_size=1, max_size=4))
def test_mutated_shipped_document_only_ever_raises_config_error(
    mutations: list[Callable[[dict[str, Any]], None]],
) -> None:
    doc = _doc()
    for mutate in mutations:
        mutate(doc)
    try:
        build_catalogue(doc, "mutated")
    except ConfigError as exc:
        assert exc.option.startswith("catalogue.")


def test_protocol_words_are_the_taxonomys() -> None:
    assert "wireguard" in TAXONOMY_FAMILIES["vpn"] and "shadowsocks" in TAXONOMY_FAMILIES["circumvention"]
    for s in default_catalogue().services:
        for p in s.protocols:
            assert any(p in fams for fams in TAXONOMY_FAMILIES.values())
