"""sluice against nDPI's expected outputs on the shared corpus (real captures).

Prints the agreement rate on server names (TLS/QUIC SNI, DNS query, HTTP Host, SSH banner) and
the flow-count agreement; fails if either drops below what this version reached.
"""

from __future__ import annotations

import collections
import contextlib
import ipaddress

import pytest

from sluice.batch.flows import batch_flows
from sluice.flows.table import FlowConfig

from .ndpi_out import NDPI, captures, read_ndpi_out

pytestmark = pytest.mark.corpus

IN_SCOPE = ("TLS", "QUIC", "DNS", "HTTP", "SSH", "MDNS", "LLMNR")
# nDPI's offline reader does not end idle flows: compare counts without timeouts
NO_TIMEOUTS = FlowConfig(idle_timeout_s=1e12, active_timeout_s=1e12)
MIN_NAME_AGREEMENT = 0.97
MIN_COUNT_AGREEMENT = 0.98


def _norm(ep: tuple[str, int]) -> tuple[str, int]:
    addr, port = ep
    with contextlib.suppress(ValueError):
        addr = str(ipaddress.ip_address(addr))
    return addr, port


@pytest.fixture(scope="module")
def corpus() -> list[tuple[str, list, list]]:  # type: ignore[type-arg]
    if not NDPI.is_dir():
        pytest.skip(f"../shared not present: {NDPI} missing")
    out = []
    for cap in captures():
        expected = cap.with_name(cap.name + ".out")
        if expected.exists():
            out.append((cap.name, read_ndpi_out(expected), batch_flows(str(cap), NO_TIMEOUTS).records))
    return out


def test_server_names_agree_with_ndpi(corpus) -> None:  # type: ignore[no-untyped-def]
    total = agree = 0
    misses = []
    for name, expected, records in corpus:
        by_ep = collections.defaultdict(list)
        for r in records:
            by_ep[frozenset(((r.client, r.client_port), (r.server, r.server_port)))].append(r)
        for f in expected:
            base = f.proto.split("/")[-1].split(".")[0]
            if not f.hostname or base not in IN_SCOPE:
                continue
            total += 1
            cands = by_ep.get(frozenset((_norm(f.a), _norm(f.b))), [])
            names = set()
            for r in cands:
                names |= {r.meta.server_name.lower(), r.meta.ssh_client.lower(), r.meta.ssh_server.lower()}
            if f.hostname.lower() in names:
                agree += 1
            else:
                misses.append(
                    f"{name} {f.l4} {f.a}<->{f.b} {f.proto} nDPI={f.hostname!r} "
                    f"sluice={sorted(n for n in names if n)}"
                )
    rate = agree / total
    print(f"\nnDPI server-name agreement: {agree}/{total} = {rate:.2%}")
    for m in misses:
        print("  disagree:", m)
    assert total > 800
    assert rate >= MIN_NAME_AGREEMENT


def test_flow_counts_agree_with_ndpi(corpus) -> None:  # type: ignore[no-untyped-def]
    same = sum(1 for _n, e, r in corpus if len(e) == len(r))
    differ = [(n, len(e), len(r)) for n, e, r in corpus if len(e) != len(r)]
    print(f"\nflow counts equal on {same}/{len(corpus)} captures; differ: {differ}")
    assert same / len(corpus) >= MIN_COUNT_AGREEMENT
    # where they differ, never by more than a few flows per capture
    assert all(abs(a - b) <= 8 for _n, a, b in differ)
