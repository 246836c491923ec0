"""Community ID v1 against the spec's published baseline vectors and the ``communityid`` package."""

from __future__ import annotations

import random

import pytest

from sluice.io.community_id import community_id

# community-id-spec, baseline/baseline_deflt.json (seed 0): proto, saddr, daddr, sport, dport, id
BASELINE = [
    (58, "fe80::200:86ff:fe05:80da", "fe80::260:97ff:fe07:69ea", 135, 136, "1:dGHyGvjMfljg6Bppwm3bg0LO8TY="),
    (58, "fe80::260:97ff:fe07:69ea", "fe80::200:86ff:fe05:80da", 136, 135, "1:dGHyGvjMfljg6Bppwm3bg0LO8TY="),
    (58, "3ffe:501:1800:2345::2", "3ffe:507:0:1:200:86ff:fe05:80da", 3, 0, "1:2ObVBgIn28oZvibYZhZMBgh7WdQ="),
    (58, "fe80::200:86ff:fe05:80da", "ff02::2", 133, 134, "1:hO+sN4H+MG5MY/8hIrXPqc4ZQz0="),
    (1, "192.168.0.89", "192.168.0.1", 8, 0, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="),
    (1, "192.168.0.1", "192.168.0.89", 0, 8, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="),
    (1, "10.0.0.1", "10.0.0.2", 11, 0, "1:YHxtAirCG//0OzkcVAukqKQN9xM="),
    (6, "2001:470:e5bf:dead:4957:2174:e82c:4887", "2607:f8b0:400c:c03::1a", 63943, 25,
     "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4="),
    (132, "192.168.170.8", "192.168.170.56", 7, 7, "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs="),
    (6, "128.232.110.120", "66.35.250.204", 34855, 80, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
    (6, "66.35.250.204", "128.232.110.120", 80, 34855, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
    (17, "192.168.1.52", "8.8.8.8", 54585, 53, "1:d/FP5EW3wiY1vCndhwleRRKHowQ="),
    (17, "8.8.8.8", "192.168.1.52", 53, 54585, "1:d/FP5EW3wiY1vCndhwleRRKHowQ="),
    (46, "10.1.12.1", "10.1.12.2", None, None, "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw="),
    (46, "10.1.12.2", "10.1.12.1", None, None, "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw="),
]  # fmt: skip


@pytest.mark.parametrize(("proto", "saddr", "daddr", "sport", "dport", "expected"), BASELINE)
def test_spec_baseline(
    proto: int, saddr: str, daddr: str, sport: int | None, dport: int | None, expected: str
) -> None:
    assert community_id(proto, saddr, daddr, sport, dport) == expected


def test_bytes_addresses_and_errors() -> None:
    assert (
        community_id(6, bytes([128, 232, 110, 120]), bytes([66, 35, 250, 204]), 34855, 80) == BASELINE[9][5]
    )
    with pytest.raises(ValueError, match="families"):
        community_id(6, "10.0.0.1", "::1", 1, 2)
    with pytest.raises(ValueError, match="seed"):
        community_id(6, "10.0.0.1", "10.0.0.2", 1, 2, seed=70000)
    with pytest.raises(ValueError, match="needs ports"):
        community_id(6, "10.0.0.1", "10.0.0.2")


def _random_addr(rng: random.Random, v6: bool) -> str:
    import ipaddress

    if v6:
        return str(ipaddress.IPv6Address(rng.getrandbits(128)))
    return str(ipaddress.IPv4Address(rng.getrandbits(32)))


def test_agrees_with_communityid_package() -> None:
    """The maintained implementation on PyPI gives the same values, seeds included."""
    communityid = pytest.importorskip("communityid")
    rng = random.Random(18)
    for _ in range(400):
        v6 = rng.random() < 0.3
        proto = rng.choice((6, 17, 132, 1, 58, 47))
        if proto == 1 and v6:
            proto = 58
        if proto == 58 and not v6:
            proto = 1
        src, dst = _random_addr(rng, v6), _random_addr(rng, v6)
        if rng.random() < 0.1:
            dst = src  # equal addresses: ordered by port
        seed = rng.choice((0, 1, 65535, rng.getrandbits(16)))
        cid = communityid.CommunityID(seed=seed)
        if proto in (1, 58):
            itype = rng.choice((0, 3, 8, 11, 128, 129, 133, 135, 136))
            code = rng.randrange(4)
            tpl = (communityid.FlowTuple.make_icmp if proto == 1 else communityid.FlowTuple.make_icmp6)(
                src, dst, itype, code
            )
            mine = community_id(proto, src, dst, itype, code, seed=seed)
        elif proto == 47:
            tpl = communityid.FlowTuple(proto, src, dst)
            mine = community_id(proto, src, dst, seed=seed)
        else:
            sport, dport = rng.getrandbits(16), rng.getrandbits(16)
            tpl = communityid.FlowTuple(proto, src, dst, sport, dport)
            mine = community_id(proto, src, dst, sport, dport, seed=seed)
        assert mine == cid.calc(tpl), (proto, src, dst, seed)
