"""The review queue: propose, accept, reject, with audit; on SQLite and a real PostgreSQL server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sluice.registry.matcher import Matcher
from sluice.registry.model import AuditAction, Kind, Proposal, ProposalState, RegistryError
from sluice.registry.proposals import accept, get_proposal, propose, proposed_matcher, reject
from sluice.registry.stores import RegistryStore

from .conftest import PgServer

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
T1 = datetime(2025, 3, 2, 9, 30, tzinfo=UTC)


def _vpn(indicator: str, kind: Kind = Kind.DOMAIN, **kw: object) -> Proposal:
    return Proposal(
        kind,
        indicator,
        "vpn-services",
        "endpoint of ExampleVPN",
        evidence={"certificate": "CN=*.examplevpn.net", "flows": 12},
        **kw,  # type: ignore[arg-type]
    )


def test_propose_is_idempotent_and_canonical(store: RegistryStore) -> None:
    a = propose(store, _vpn("Gate.ExampleVPN.NET."), now=T0)
    assert propose(store, _vpn("gate.examplevpn.net"), now=T1) == a
    b = propose(store, _vpn("203.0.113.0/24", Kind.IP), now=T0)
    assert b != a
    p = get_proposal(store, a)
    assert (p.indicator, p.state, p.created_at, p.source) == (
        "gate.examplevpn.net",
        ProposalState.PROPOSED,
        T0.isoformat(),
        "proposals:vpn-services",
    )
    assert p.evidence == {"certificate": "CN=*.examplevpn.net", "flows": 12}
    assert get_proposal(store, b).kind is Kind.SUBNET  # an address with a prefix is a subnet
    [ev] = store.history("gate.examplevpn.net")
    assert (ev.action, ev.actor, ev.note, ev.at, ev.proposal_id) == (
        AuditAction.PROPOSED,
        "vpn-services",
        "endpoint of ExampleVPN",
        T0.isoformat(),
        a,
    )
    assert store.lookup("gate.examplevpn.net") == []  # a proposal is not an entry
    assert store.stats() == {}


def test_accept_writes_entry_through_import_path(store: RegistryStore) -> None:
    a = propose(store, _vpn("gate.examplevpn.net"), now=T0)
    b = propose(store, _vpn("198.51.100.7", Kind.IP), now=T0)
    [out] = accept(store, [a], reviewer="alice", reason="confirmed: certificate and ASN", now=T1)
    assert (out.id, out.state, out.changed, out.reviewer) == (a, ProposalState.ACCEPTED, True, "alice")
    [entry] = store.lookup("gate.examplevpn.net")
    assert entry.source == "proposals:vpn-services" and entry.kind is Kind.DOMAIN
    [basis] = entry.basis
    assert basis.authority == "review by alice: confirmed: certificate and ASN"
    assert (basis.number, basis.date) == (f"proposal #{a}", "2025-03-02")
    imp = store.imports("proposals:vpn-services")
    assert [(i.import_id, i.fmt, i.added, i.entries) for i in imp] == [(out.import_id, "proposals", 1, 1)]
    actions = [(h.action, h.actor, h.note) for h in store.history("gate.examplevpn.net")]
    assert actions == [
        (AuditAction.PROPOSED, "vpn-services", "endpoint of ExampleVPN"),
        (AuditAction.ADDED, "", ""),
        (AuditAction.ACCEPTED, "alice", "confirmed: certificate and ASN"),
    ]
    # the second acceptance keeps the first entry (the source is synced from all accepted ones)
    accept(store, [b], reviewer="bob", reason="same service", now=T1)
    assert store.stats() == {"proposals:vpn-services": {"domain": 1, "ip": 1}}
    assert len(store.imports("proposals:vpn-services")) == 2
    assert Matcher.from_store(store).match("198.51.100.7")[0].entry.source == "proposals:vpn-services"
    # accepting again changes nothing; proposing again returns the accepted one
    [again] = accept(store, [a], reviewer="carol", reason="again", now=T1)
    assert (again.changed, again.reviewer) == (False, "alice")
    assert propose(store, _vpn("gate.examplevpn.net")) == a
    assert len(store.imports("proposals:vpn-services")) == 2


def test_reject_never_becomes_entry(store: RegistryStore) -> None:
    a = propose(store, _vpn("cdn.example.com"), now=T0)
    [out] = reject(store, [a], reviewer="alice", reason="shared CDN name", now=T1)
    assert out.changed and out.state is ProposalState.REJECTED
    assert store.lookup("cdn.example.com") == [] and store.stats() == {}
    [out2] = accept(store, [a], reviewer="bob", reason="try", now=T1)
    assert (out2.changed, out2.state, out2.reviewer) == (False, ProposalState.REJECTED, "alice")
    assert store.lookup("cdn.example.com") == []
    assert [h.action for h in store.history("cdn.example.com")] == [
        AuditAction.PROPOSED,
        AuditAction.REJECTED,
    ]
    # the decision stands for the same detector, unless it brings new evidence
    assert propose(store, _vpn("cdn.example.com")) == a
    c = propose(store, _vpn("cdn.example.com"), reconsider=True)
    assert c != a and get_proposal(store, c).state is ProposalState.PROPOSED


def test_bulk_and_errors(store: RegistryStore) -> None:
    ids = [propose(store, _vpn(f"n{i}.examplevpn.net"), now=T0) for i in range(3)]
    with pytest.raises(RegistryError) as err:
        accept(store, [ids[0], 999], reviewer="alice", reason="x")
    assert err.value.reason == "registry.no_proposal" and "#999" in err.value.detail
    assert get_proposal(store, ids[0]).state is ProposalState.PROPOSED  # nothing changed
    with pytest.raises(RegistryError, match="reviewer is empty"):
        accept(store, ids, reviewer=" ", reason="x")
    outs = accept(store, ids, reviewer="alice", reason="batch", now=T1)
    assert [o.changed for o in outs] == [True] * 3 and len({o.import_id for o in outs}) == 1
    assert store.stats() == {"proposals:vpn-services": {"domain": 3}}
    with pytest.raises(RegistryError) as bad:
        propose(store, _vpn("not a name!"))
    assert bad.value.reason == "registry.bad_indicator"
    with pytest.raises(RegistryError) as bad:
        propose(store, Proposal(Kind.DOMAIN, "x.org", "Bad Detector", "r"))
    assert bad.value.reason == "registry.bad_proposal"


def test_decided_proposal_is_final_in_the_database(store: RegistryStore) -> None:
    a = propose(store, _vpn("gate.examplevpn.net"), now=T0)
    reject(store, [a], reviewer="alice", reason="no", now=T1)
    conn = store.conn  # type: ignore[attr-defined]
    with pytest.raises(Exception, match="final"):
        conn.execute("UPDATE proposals SET state = 'accepted'")
    with pytest.raises(Exception, match="kept"):
        conn.execute("DELETE FROM proposals")


def test_proposed_matcher(store: RegistryStore) -> None:
    a = propose(store, _vpn("*.examplevpn.net", Kind.DOMAIN_MASK), now=T0)
    propose(store, _vpn("203.0.113.0/24", Kind.SUBNET), now=T0)
    m = proposed_matcher(store)
    [hit] = m.match("x.examplevpn.net")
    assert hit.entry.proposed and hit.entry.source == "proposals:vpn-services"
    assert hit.entry.basis[0].number == f"proposal #{a}"
    assert m.match("203.0.113.9")[0].entry.proposed
    accept(store, [a], reviewer="alice", reason="ok", now=T1)
    assert proposed_matcher(store).match("x.examplevpn.net") == []  # decided: no longer proposed
    assert not Matcher.from_store(store).match("x.examplevpn.net")[0].entry.proposed


_RACER = """
import json, sys, time, pathlib
from sluice.registry.stores import open_store
from sluice.registry.proposals import accept
st = open_store(sys.argv[1])
go = pathlib.Path(sys.argv[2])
while not go.exists():
    time.sleep(0.001)
out = accept(st, [int(sys.argv[3])], reviewer=sys.argv[4], reason="race")
st.close()
print(json.dumps(out[0].as_dict()))
"""


def _race(target: str, pid: int, tmp_path: Path) -> list[dict[str, object]]:
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, target, str(go), str(pid), who],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for who in ("alice", "bob")
    ]
    time.sleep(1.0)  # both have imported and opened the store
    go.touch()
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        outs.append(json.loads(out))
    return outs


def _check_race(store: RegistryStore, pid: int, outs: list[dict[str, object]]) -> None:
    assert sorted(bool(o["changed"]) for o in outs) == [False, True]
    winner = next(o["reviewer"] for o in outs if o["changed"])
    assert all(o["reviewer"] == winner and o["state"] == "accepted" for o in outs)
    hist = store.history("race.examplevpn.net")
    assert [h.action for h in hist] == [AuditAction.PROPOSED, AuditAction.ADDED, AuditAction.ACCEPTED]
    assert hist[-1].actor == winner and hist[-1].import_id == hist[1].import_id
    assert len(store.lookup("race.examplevpn.net")) == 1
    assert len(store.imports("proposals:vpn-services")) == 1
    assert get_proposal(store, pid).reviewer == winner


def test_concurrent_accept_sqlite(tmp_path: Path) -> None:
    from sluice.registry.stores import SqliteStore

    db = tmp_path / "reg.db"
    st = SqliteStore(db, create=True)
    try:
        pid = propose(st, _vpn("race.examplevpn.net"), now=T0)
        outs = _race(str(db), pid, tmp_path)
        _check_race(st, pid, outs)
    finally:
        st.close()


def test_concurrent_accept_postgres(pg_server: PgServer, tmp_path: Path) -> None:
    from sluice.registry.stores import open_store

    url = pg_server.new_database()
    st = open_store(url, create=True)
    try:
        pid = propose(st, _vpn("race.examplevpn.net"), now=T0)
        outs = _race(url, pid, tmp_path)
        _check_race(st, pid, outs)
    finally:
        st.close()
