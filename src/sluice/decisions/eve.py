"""Suricata EVE ``alert`` and ``drop`` events for verdicts and policy decisions.

The flow-level events and the common fields are :mod:`sluice.io.eve`'s; this module adds, above
the detect and policy layers, an ``alert`` for an analysed flow whose verdict is a finding and for
every policy decision (``alert`` {action, gid, signature_id, rev, signature, category, severity,
metadata}), and a ``drop`` event when a decision blocks or resets enforced traffic.
"""

from __future__ import annotations

__all__ = ["decision_events", "verdict_events"]

import re
from typing import Any

from sluice.detect.service import FlowVerdict
from sluice.io.community_id import PORT_PROTOCOLS
from sluice.io.eve import (
    APP_PROTO,
    PROTO_NAMES,
    PROTO_NUMBERS,
    common_fields,
    drop_empty,
    endpoint_community_id,
    eve_flow_id,
    eve_timestamp,
    flow_events,
    signature_id,
)
from sluice.policy.model import Decision

_SEVERITY = {"block": 1, "reset": 1, "throttle": 2, "log": 2, "allow": 3}
_KEY = re.compile(
    r"(?P<proto>\S+) \[?(?P<src>[^\]\s]+?)\]?:(?P<sport>\d+) > \[?(?P<dst>[^\]\s]+?)\]?:(?P<dport>\d+)"
)


def verdict_events(fv: FlowVerdict) -> list[dict[str, Any]]:
    """EVE events of an analysed flow: flow and application events, and an ``alert`` for a finding.

    Args:
        fv: one row of an :class:`~sluice.detect.service.AnalysisResult`.

    Returns:
        Event dicts.
    """
    v, r = fv.verdict, fv.record
    finding = v.is_finding
    events = flow_events(r, fv.capture, alerted=finding)
    if finding:
        name = f"{v.label}/{v.family}" if v.family else v.label
        alert = {
            "action": "allowed",
            "gid": 1,
            "signature_id": signature_id(f"verdict:{name}"),
            "rev": 1,
            "signature": f"SLUICE {v.label} {v.family or ''}".rstrip() + f" ({v.detector})",
            "category": v.label,
            "severity": 2,
            "metadata": drop_empty({
                "family": [v.family] if v.family else [],
                "service": [v.service] if v.service else [],
                "confidence": [f"{v.confidence:.4f}"],
                "detector": [v.detector],
                "evidence": [f"{e.code}: {e.feature}={e.observed}" for e in v.evidence][:8],
                "register": [f"{h.source}:{h.indicator}" for h in fv.register],
            }),
        }  # fmt: skip
        events.insert(len(events) - 1, {**common_fields(r, fv.capture, "alert", r.first_ts), "alert": alert})
    return events


def decision_events(d: Decision) -> list[dict[str, Any]]:
    """EVE events of one policy decision: an ``alert``, and a ``drop`` when traffic is blocked.

    The endpoints come from the decision's flow key (``tcp 10.0.0.1:5000 > 10.0.0.2:443``).

    Args:
        d: the decision.

    Returns:
        One or two event dicts.
    """
    ev: dict[str, Any] = {
        "timestamp": eve_timestamp(d.time),
        "flow_id": eve_flow_id(d.capture, d.flow_id),
        "event_type": "alert",
    }
    m = _KEY.fullmatch(d.flow_key)
    if m:
        proto = PROTO_NUMBERS.get(m["proto"], int(m["proto"]) if m["proto"].isdigit() else 0)
        sport, dport = int(m["sport"]), int(m["dport"])
        ev.update(src_ip=m["src"], dest_ip=m["dst"], proto=PROTO_NAMES.get(proto, str(proto)))
        if proto in PORT_PROTOCOLS:
            ev.update(src_port=sport, dest_port=dport)
        cid = endpoint_community_id(proto, m["src"], sport, m["dst"], dport)
        if cid:
            ev["community_id"] = cid
    if d.app in APP_PROTO:
        ev["app_proto"] = APP_PROTO[d.app]
    action = d.action.value
    blocked = d.enforced and action in ("block", "reset")
    cls = f"{d.verdict_class}/{d.family}" if d.family else d.verdict_class
    ev["alert"] = {
        "action": "blocked" if blocked else "allowed",
        "gid": 1,
        "signature_id": signature_id(f"rule:{d.rule}"),
        "rev": 1,
        "signature": f"SLUICE policy {d.rule}: {action}" + (f" {cls}" if cls else ""),
        "category": d.verdict_class or "policy",
        "severity": _SEVERITY.get(action, 3),
        "metadata": drop_empty({
            "rule": [d.rule],
            "sluice_action": [action],
            "mode": [d.mode.value],
            "enforced": [str(d.enforced).lower()],
            "stage": [d.stage] if d.stage else [],
            "server_name": [d.server_name] if d.server_name else [],
            "evidence": list(d.evidence),
            "register": [f"{r.source}:{r.indicator}" for r in d.register],
            "policy": [d.policy] if d.policy else [],
        }),
    }  # fmt: skip
    if d.capture:
        ev["capture"] = d.capture
    events = [ev]
    if blocked:
        drop = {k: v for k, v in ev.items() if k != "alert"}
        drop["event_type"] = "drop"
        drop["drop"] = {"reason": "rules"}
        events.append(drop)
    return events
