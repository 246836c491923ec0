"""Fingerprints of crypto mining: Stratum in clear and inside TLS, and what a node or miner flow carries.

Registered through :data:`sluice.detect._crypto.RULES` (in its order), beside the node protocols:

* **Stratum** (mining): JSON-RPC lines whose method is ``mining.*`` (v1: subscribe, authorize,
  submit, notify, set_difficulty, configure) or the Monero pools' ``login``/``job``/``submit``.
* **Stratum over TLS** (no bytes to read): a TLS flow whose client, after the handshake, sends
  small records of one size that the server answers at once with small records — a miner's
  ``mining.submit`` and the pool's ``true`` (or a short error) — at irregular gaps (shares are
  found at random, not on a timer), with no bulk transfer; the pool's own pushes (new jobs) are
  evidence. Chosen after looking at the lab's Stratum-over-stunnel sessions; confidence 0.6.

Also what the node rules of :mod:`sluice.detect._crypto` share with these: the first JSON-RPC
method of a payload (:func:`json_method`, Electrum's too), and :func:`pattern_evidence` — the first
packets' sizes and directions say what a node or miner flow *carries* (block download, relay,
share submissions at a steady size), as evidence with no weight of its own (``crypto.pattern.*``).
"""

from __future__ import annotations

__all__ = ["json_method", "pattern_evidence", "stratum", "stratum_tls"]

import itertools
import re
import statistics
from collections import deque

from sluice.detect._rules import TCP, ev, hexs, transports
from sluice.detect._rules import RuleMatch as Match
from sluice.detect.verdict import Evidence
from sluice.features.view import FlowView


def pattern_evidence(v: FlowView, family: str) -> list[Evidence]:
    """What the flow carries, from its first packets: block download, relay or share cadence."""
    out: list[Evidence] = []
    sizes = [(d, n) for d, n in zip(v.rec.pkt_dirs, v.payload_lens, strict=False) if n > 0]
    if len(sizes) < 6:
        return out
    big = max(n for _, n in sizes)
    for d, name in ((1, "server"), (0, "client")):
        full = [n for dd, n in sizes if dd == d and n >= 1000]
        if len(full) >= 6 and len(full) >= len(sizes) // 2:
            out.append(
                ev(
                    "crypto.pattern.bulk",
                    "pkt_sizes,pkt_dirs",
                    f"{len(full)} of {len(sizes)} payloads ≥ 1000 bytes from the {name}",
                    "block download: full-size segments one way",
                    0.0,
                    f"the {name} streams blocks (initial block download or a block relay)"
                    if family != "stratum"
                    else f"the {name} sends large jobs",
                )
            )
            return out
    small = [n for _, n in sizes if n < 300]
    dirs = {d for d, n in sizes if n < 300}
    if family != "stratum" and len(small) >= len(sizes) * 0.8 and dirs == {0, 1}:
        out.append(
            ev(
                "crypto.pattern.relay",
                "pkt_sizes,pkt_dirs",
                f"{len(small)} of {len(sizes)} payloads < 300 bytes, both ways (largest {big})",
                "transaction relay: small inv/tx messages both ways",
                0.0,
                "the peers exchange announcements and transactions, not blocks",
            )
        )
    if family == "stratum":
        c2s = [n for d, n in sizes[2:] if d == 0]
        iats = [t for t, d in zip(v.rec.pkt_iats, v.rec.pkt_dirs, strict=False) if d == 0 and t > 0]
        if len(c2s) >= 3 and max(c2s) - min(c2s) <= 16:
            cadence = f", median gap {statistics.median(iats):.2f} s" if iats else ""
            out.append(
                ev(
                    "crypto.pattern.shares",
                    "pkt_sizes,pkt_iats",
                    f"{len(c2s)} client messages of {min(c2s)}–{max(c2s)} bytes{cadence}",
                    "share submissions: same-size client messages at a steady pace",
                    0.0,
                    "a miner submitting shares sends messages of nearly constant size",
                )
            )
    return out


_JSON_METHOD = re.compile(rb'^\s*\{[^\n]{0,40}?"method"\s*:\s*"([A-Za-z_.]{2,40})"')
_STRATUM_METHODS = frozenset(
    {
        "mining.subscribe",
        "mining.authorize",
        "mining.submit",
        "mining.notify",
        "mining.set_difficulty",
        "mining.configure",
        "mining.extranonce.subscribe",
        "mining.set_extranonce",
        "mining.suggest_difficulty",
    }
)
_XMR_POOL = {"login": rb'"login"\s*:', "job": rb'"job_id"|"blob"', "submit": rb'"nonce"|"job_id"'}
_STRATUM_RESULT = re.compile(
    rb'^\{\s*"id"\s*:\s*\d+\s*,\s*"(?:jsonrpc"\s*:\s*"2\.0"\s*,\s*")?(?:result|error)"'
)


def json_method(head: bytes) -> str:
    m = _JSON_METHOD.match(head)
    return m.group(1).decode() if m else ""


def stratum(v: FlowView) -> Match | None:
    """Stratum mining: a JSON-RPC line whose method is ``mining.*`` (v1) or a Monero pool's login/job."""
    evidence: list[Evidence] = []
    decided = -1
    for d in (0, 1):
        head = v.head(d)
        method = json_method(head)
        if not method:
            continue
        if method in _STRATUM_METHODS:
            reason = f"stratum v1 {method}"
        elif method in _XMR_POOL and re.search(_XMR_POOL[method], head):
            reason = f"Monero pool stratum {method!r} with its parameters"
        else:
            continue
        idx = v.first_payload_index(d)
        decided = max(decided, idx)
        evidence.append(
            ev(
                "stratum.method",
                f"{'c2s' if d == 0 else 's2c'}_head",
                head[:48].decode("latin-1"),
                'a JSON-RPC object whose "method" is mining.* (or login/job/submit with their fields)',
                0.9,
                f"the {'client' if d == 0 else 'server'}'s first line is a {reason}",
                idx,
            )
        )
    if not evidence:
        return None
    conf = 0.9
    other = 1 if evidence[0].feature.startswith("c2s") else 0
    if len(evidence) == 2 or _STRATUM_RESULT.match(v.head(other)):
        conf = 0.97
        if len(evidence) == 1:
            evidence.append(
                ev(
                    "stratum.response",
                    f"{'s2c' if other else 'c2s'}_head",
                    v.head(other)[:32].decode("latin-1"),
                    '{"id":N,"result"|"error"',
                    0.07,
                    "the peer answered with a JSON-RPC result",
                    v.first_payload_index(other),
                )
            )
    evidence += pattern_evidence(v, "stratum")
    return Match("stratum", "crypto", "stratum", conf, decided, tuple(evidence))


_SHARE_C2S = (80, 400)
"""Bytes of a client TLS record carrying one ``mining.submit`` line (JSON 70–300 + record overhead)."""
_SHARE_S2C = (30, 160)
"""Bytes of a server TLS record carrying ``{"id":N,"result":true,"error":null}``."""
_SHARE_REPLY_S = 1.0
_SHARE_BAND = 16
_MIN_SHARES = 4
_GAP_CV_MIN = 0.15
_BULK = 1400
_PUSH_MIN = 200


def _tls_both(v: FlowView) -> bool:
    h0, h1 = v.head(0), v.head(1)
    return len(h0) >= 3 and len(h1) >= 3 and h0[0] == h1[0] == 0x16 and h0[1] == h1[1] == 3


def _densest(values: list[int], band: int) -> tuple[int, int]:
    """(low, high) of the window of width ``band`` holding most of ``values``."""
    vs = sorted(values)
    best = (vs[0], vs[0], 0)
    j = 0
    for i, lo in enumerate(vs):
        while vs[j] < lo - band:
            j += 1
        if i - j + 1 > best[2]:
            best = (vs[j], lo, i - j + 1)
    return best[0], best[1]


def _app_payloads(v: FlowView, limit: int) -> list[tuple[int, int, int, float]] | None:
    """(packet index, direction, payload bytes, seconds since start) after the TLS handshake, or
    None as soon as one of them is over ``limit`` bytes (most TLS flows: the rule is done).

    The handshake is taken as the client's first two payloads (ClientHello; its Finished or key
    exchange) and the server's first (its first flight); what follows is application data.
    """
    lens = v.payload_lens[: min(len(v.rec.pkt_dirs), len(v.rec.pkt_iats))]  # what the loop reads
    if len(lens) > 3 and sorted(lens)[-4] > limit:
        # four payloads over the limit, and the handshake is three at most: decided without the
        # loop (a sort in C), which most TLS flows would run up to their first bulk record
        return None
    out = []
    seen = [0, 0]
    t = 0.0
    for i, (d, n, iat) in enumerate(zip(v.rec.pkt_dirs, lens, v.rec.pkt_iats, strict=False)):
        t += iat
        if n <= 0:
            continue
        seen[d] += 1
        if seen[d] > (2 if d == 0 else 1):
            if n > limit:
                return None
            out.append((i, d, n, t))
    return out


_Payload = tuple[int, int, int, float]


def _exchanges(app: list[_Payload]) -> list[tuple[_Payload, _Payload]]:
    """(request, reply) pairs: a small client record answered by a small server record within
    :data:`_SHARE_REPLY_S`. Answers come in order, so each server record answers the oldest open
    request (a miner may send a second share before the first answer: Stratum pipelines); only
    small answers make a pair."""
    pending: deque[_Payload] = deque()
    pairs: list[tuple[_Payload, _Payload]] = []
    for x in app:
        if x[1] == 0:
            if _SHARE_C2S[0] <= x[2] <= _SHARE_C2S[1]:
                pending.append(x)
            continue
        # requests queue in time order (packet gaps are never negative: the flow table clamps
        # them), so the ones too old to be answered are a prefix of the queue
        while pending and x[3] - pending[0][3] > _SHARE_REPLY_S:
            pending.popleft()
        if pending:  # answers come in order: any server record answers the oldest open request
            req = pending.popleft()
            if _SHARE_S2C[0] <= x[2] <= _SHARE_S2C[1]:
                pairs.append((req, x))
    return pairs


@transports(TCP)
def stratum_tls(v: FlowView) -> Match | None:
    """Stratum inside TLS: one-size submissions answered at once by one-size replies, at random gaps."""
    if v.rec.proto != 6 or not _tls_both(v):
        return None
    app = _app_payloads(v, _BULK)
    if not app:
        return None
    pairs = _exchanges(app)
    if len(pairs) < _MIN_SHARES:
        return None
    # one submit size; the answers only small (an accepted share and a rejected one — stale job,
    # duplicate — differ in size: {"result":true} against {"result":null,"error":[21,…]})
    clo, chi = _densest([a[2] for a, _ in pairs], _SHARE_BAND)
    shares = [(a, b) for a, b in pairs if clo <= a[2] <= chi]
    client_msgs = sum(1 for _, d, _, _ in app if d == 0)
    if len(shares) < _MIN_SHARES or len(shares) * 2 < client_msgs:
        return None
    gaps = [b[0][3] - a[0][3] for a, b in itertools.pairwise(shares)]
    mean = statistics.fmean(gaps)
    cv = statistics.pstdev(gaps) / mean if mean > 0 else 0.0
    if mean < 0.05 or cv < _GAP_CV_MIN:
        return None
    decided = shares[_MIN_SHARES - 1][1][0]
    replies = [b[3] - a[3] for a, b in shares]
    slo, shi = min(b[2] for _, b in shares), max(b[2] for _, b in shares)
    evidence = [
        ev(
            "stratum_tls.tls",
            "c2s_head,s2c_head",
            f"{hexs(v.head(0)[:3])} / {hexs(v.head(1)[:3])}",
            "TLS handshake records both ways",
            0.2,
            "the flow is TLS: nothing of the JSON is visible",
            v.first_payload_index(1),
        ),
        ev(
            "stratum_tls.shares",
            "pkt_sizes,pkt_dirs,pkt_iats",
            f"{len(shares)} of {client_msgs} client records of {clo}–{chi} bytes, each answered in "
            f"≤ {max(replies) * 1000:.0f} ms by {slo}–{shi} bytes",
            f"≥ {_MIN_SHARES} client records of {_SHARE_C2S[0]}–{_SHARE_C2S[1]} bytes within "
            f"{_SHARE_BAND} bytes, each answered within {_SHARE_REPLY_S:.0f} s by {_SHARE_S2C[0]}–"
            f"{_SHARE_S2C[1]} bytes; at least half the client's records",
            0.3,
            "a miner submitting shares: same-size mining.submit, same-size true/false from the pool",
            decided,
        ),
        ev(
            "stratum_tls.random_gaps",
            "pkt_iats",
            f"gaps {min(gaps):.2f}–{max(gaps):.2f} s, mean {mean:.2f} s, variation {cv:.2f}",
            f"variation (stdev/mean) ≥ {_GAP_CV_MIN}: not a timer",
            0.1,
            "shares are found at random times; keep-alives and polls come on a timer",
            decided,
        ),
    ]
    conf = 0.6
    pushes = [
        x for k, x in enumerate(app) if x[1] == 1 and x[2] >= _PUSH_MIN and (k == 0 or app[k - 1][1] == 1
        or x[3] - app[k - 1][3] > _SHARE_REPLY_S or app[k - 1][2] < _SHARE_C2S[0])
    ]  # fmt: skip
    if pushes:
        conf = 0.65
        evidence.append(
            ev(
                "stratum_tls.pushes",
                "pkt_sizes,pkt_dirs",
                f"{len(pushes)} server records of {min(x[2] for x in pushes)}–"
                f"{max(x[2] for x in pushes)} bytes not answering the client",
                f"≥ {_PUSH_MIN} bytes from the server, not a reply",
                0.05,
                "the pool pushes new jobs (mining.notify) on its own",
                pushes[0][0],
            )
        )
    evidence += pattern_evidence(v, "stratum")
    return Match("stratum-tls", "crypto", "stratum", conf, decided, tuple(evidence))
