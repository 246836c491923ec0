"""The console's one entry point for pages and API alike: role checks, then the same services
the CLI calls, then an audit row for every change.

Nothing here decides about traffic or the register: imports go through
:func:`sluice.registry.service.import_paths`, reviews through
:func:`sluice.registry.service.decide`, proposals through :func:`sluice.registry.proposals.propose`,
analyses through :func:`sluice.detect.service.analyze_captures`, dry runs through
:func:`sluice.policy.replay_captures` (what ``sluice policy test`` calls).  Both the HTTP API and
the pages call :class:`Console`, so a role check or an audit row cannot be forgotten by one of
them.
"""

from __future__ import annotations

import difflib
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sluice.console.auth import AuthError, Principal, Role, Users
from sluice.console.db import Database, is_postgres
from sluice.console.decindex import DecisionIndex, DecisionQuery
from sluice.console.regview import RegisterView
from sluice.console.reports import Reports
from sluice.console.schema import migrate
from sluice.errors import ConfigError, SluiceError
from sluice.registry import service as registry_service
from sluice.registry.model import Kind, Proposal, RegistryError
from sluice.registry.proposals import propose
from sluice.registry.stores import open_store

__all__ = ["Console", "ConsoleConfig", "ConsoleError"]

MAX_UPLOAD_BYTES = 512 << 20
"""Largest file a page or the API accepts (bytes)."""
DASHBOARD_CACHE_S = 60.0
"""How long the dashboard's counts are reused while the log grows (seconds); the server's
indexing thread recomputes them in the background (:meth:`Console.warm_dashboard`)."""
CONSOLE_DETECTOR_BLOCK = "console"
"""Detector name of "block this name" proposals made from the decisions page."""
CONSOLE_DETECTOR_ALLOW = "console-allow"
"""Detector name of "allow this name" proposals (register source ``proposals:console-allow``;
a policy rule with ``register_source = ["proposals:console-allow"]`` and ``action = "allow"``
placed first gives them effect)."""


class ConsoleError(SluiceError):
    """A refused request; ``reason`` is a stable dotted code and ``status`` its HTTP status."""

    def __init__(self, reason: str, detail: str, status: int = 422) -> None:
        self.reason = reason
        self.detail = detail
        self.status = status
        super().__init__(detail)


_REGISTRY_STATUS = {
    "registry.no_proposal": 404,
    "registry.not_found": 404,
    "registry.store_unavailable": 503,
    "registry.store_failed": 503,
    "registry.io_error": 503,
}


def registry_status(reason: str) -> int:
    """The HTTP status of a register refusal (422 unless listed)."""
    return _REGISTRY_STATUS.get(reason, 422)


@dataclass
class ConsoleConfig:
    """Where the console's data lives."""

    register: str = "register.db"
    """The register: SQLite file or ``postgresql://`` URL."""
    log_dir: str = "decisions"
    """The decision log directory."""
    state_dir: str = ".sluice-console"
    """Decision index and kept capture reports."""
    console_db: str = ""
    """The console's tables ("" = in the register's database)."""
    policy: str = ""
    """The policy file shown and dry-run by default ("" = the shipped policy)."""
    model_dir: str | None = None
    """Model for analyses (None: the shipped model)."""
    no_model: bool = False
    """Judge with fingerprints and the FET only."""
    secure_cookies: bool = False
    """Mark cookies ``Secure`` (behind HTTPS)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form settings for tests."""


class Console:
    """Everything the pages and the API do, role-checked and audited.

    Args:
        config: where things live.
    """

    def __init__(self, config: ConsoleConfig) -> None:
        self.config = config
        state = Path(config.state_dir)
        state.mkdir(parents=True, exist_ok=True)
        self.register = RegisterView(config.register)
        target = config.console_db or config.register
        self.db = Database(target)
        migrate(self.db)
        self.users = Users(self.db)
        self.decisions = DecisionIndex(config.log_dir, state / "decisions-index.sqlite")
        self.reports = Reports(state / "reports", self._combiner, lambda: self.register_lookup().for_flow)
        self._lookup: tuple[tuple[int, tuple[int, int]], Any] | None = None
        self._lookup_lock = threading.Lock()
        self._combiner_obj: Any = None
        self._combiner_lock = threading.Lock()
        self._dash: tuple[float, int, dict[str, Any]] | None = None

    def close(self) -> None:
        """Release connections."""
        self.register.close()
        self.db.close()
        self.decisions.close()

    @property
    def database_kind(self) -> str:
        """``postgresql`` or ``sqlite``."""
        return "postgresql" if is_postgres(self.config.register) else "sqlite"

    # -- shared helpers --

    @staticmethod
    def need(who: Principal, role: Role) -> None:
        """Refuse unless ``who`` has ``role``.

        Raises:
            AuthError: ``console.forbidden`` (403).
        """
        if not who.role.allows(role):
            raise AuthError(
                "console.forbidden", f"this needs the {role.value} role (you are {who.role.value})", 403
            )

    def _combiner(self) -> Any:
        with self._combiner_lock:
            if self._combiner_obj is None:
                from sluice.detect.combiner import Combiner

                if self.config.no_model:
                    self._combiner_obj = Combiner(None)
                else:
                    from sluice.detect.model import DEFAULT_MODEL_DIR, ModelScorer, load_model

                    fitted, _ = load_model(self.config.model_dir or DEFAULT_MODEL_DIR)
                    self._combiner_obj = Combiner(ModelScorer(fitted))
            return self._combiner_obj

    # -- register --

    def search(
        self, who: Principal, q: str, source: str | None, kind: str | None, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of register entries."""
        self.need(who, Role.VIEWER)
        if kind is not None and kind not in {k.value for k in Kind}:
            raise ConsoleError(
                "console.bad_kind", f"kind {kind!r} is not one of {', '.join(k.value for k in Kind)}"
            )
        return self.register.search(q, source=source, kind=kind, limit=limit, cursor=cursor)

    def check(self, who: Principal, items: Sequence[str]) -> list[dict[str, Any]]:
        """Which entries apply to each name, URL or address (``sluice registry check``)."""
        self.need(who, Role.VIEWER)
        clean = [i.strip() for i in items if i.strip()]
        if not clean:
            raise ConsoleError("console.no_input", "give a name, URL or address")
        return self.register.check(clean[:100])

    def history(self, who: Principal, indicator: str) -> dict[str, Any]:
        """One indicator's entries and audit trail (``sluice registry history``)."""
        self.need(who, Role.VIEWER)
        return registry_service.history(self.config.register, indicator)

    def sources(self, who: Principal) -> dict[str, Any]:
        """Counts per source and kind, and recent imports with their refusals (``registry stats``)."""
        self.need(who, Role.VIEWER)
        st = registry_service.stats(self.config.register)
        last: dict[str, dict[str, Any]] = {}
        for imp in st["imports"]:
            last.setdefault(imp["source"], imp)
        st["sources"] = [
            {"source": s, "kinds": kinds, "total": sum(kinds.values()), "last_import": last.get(s)}
            for s, kinds in sorted(st["entries"].items())
        ]
        return st

    def import_file(
        self,
        who: Principal,
        data: bytes,
        filename: str,
        *,
        fmt: str = "auto",
        source: str = "",
        preview: bool = True,
        force: bool = False,
        impact_report: str = "",
    ) -> dict[str, Any]:
        """Import an uploaded file (``preview``: a dry run showing what would change and the
        refused lines, plus the collateral-impact preview over a kept capture's flows).

        Raises:
            AuthError: not an admin.
            RegistryError: the file is refused (the register is unchanged).
        """
        self.need(who, Role.ADMIN)
        if len(data) > MAX_UPLOAD_BYTES:
            raise ConsoleError(
                "console.too_large", f"files above {MAX_UPLOAD_BYTES >> 20} MiB are refused", 413
            )
        tmp = Path(tempfile.mkdtemp(prefix="sluice-import-"))
        try:
            path = tmp / (Path(filename).name or "upload")
            path.write_bytes(data)
            try:
                summary = registry_service.import_paths(
                    self.config.register, [path], fmt, source=source, force=force, dry_run=preview
                ).as_dict()
            except RegistryError as exc:
                self.users.audit(
                    who,
                    "register.import",
                    source or filename,
                    "refused",
                    {"reason": exc.reason, "preview": preview, "file": filename},
                )
                raise
            rejected = summary["rejected"]
            assert isinstance(rejected, list)
            for r in rejected:
                r["path"] = filename
            out: dict[str, Any] = {"summary": summary, "impact": None}
            if preview and impact_report:
                capture = self.reports.capture_path(impact_report)
                out["impact"] = registry_service.import_preview(
                    [path], fmt, [capture], source=source
                ).as_dict()
            if not preview:
                self.users.audit(
                    who,
                    "register.import",
                    str(summary["source"]),
                    detail={k: summary[k] for k in ("format", "added", "removed", "changed", "import_id")}
                    | {"file": filename},
                )
            return out
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # -- review queue --

    def proposals(
        self, who: Principal, state: str | None, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of proposals, newest first."""
        self.need(who, Role.VIEWER)
        before = int(cursor) if cursor and cursor.isdigit() else None
        # the queue is small next to the register: the service's list, cut at the cursor
        rows = registry_service.proposals_list(self.config.register, state)
        if before is not None:
            rows = [r for r in rows if int(str(r["id"])) < before]
        page = rows[:limit]
        nxt = str(page[-1]["id"]) if len(rows) > limit else None
        return page, nxt

    def proposal(self, who: Principal, pid: int) -> dict[str, Any]:
        """One proposal with its evidence, impact preview and audit trail."""
        self.need(who, Role.VIEWER)
        return registry_service.proposal_show(self.config.register, pid)

    def decide(self, who: Principal, ids: Sequence[int], accept: bool, reason: str) -> list[dict[str, Any]]:
        """Accept or reject proposals (the register audits the decision; the console records
        who asked, from where).

        Raises:
            AuthError: below reviewer.
            RegistryError: unknown proposal, empty reason.
        """
        self.need(who, Role.REVIEWER)
        action = "proposal.accept" if accept else "proposal.reject"
        target = ",".join(f"#{i}" for i in ids)
        try:
            out = registry_service.decide(self.config.register, ids, accept, reviewer=who.name, reason=reason)
        except RegistryError as exc:
            self.users.audit(who, action, target, "refused", {"reason": exc.reason, "why": reason})
            raise
        self.users.audit(who, action, target, detail={"why": reason, "outcomes": out})
        return [dict(o) for o in out]

    def propose_name(
        self, who: Principal, name: str, block: bool, reason: str, decision_id: int | None
    ) -> dict[str, Any]:
        """Put a name in the review queue from a decision (block or allow); never straight
        into the register.

        Raises:
            AuthError: below reviewer.
            RegistryError: not a name, empty reason.
        """
        self.need(who, Role.REVIEWER)
        evidence: dict[str, object] = {"requested_by": who.name, "from": "console"}
        if decision_id is not None:
            d = self.decisions.get(decision_id)
            if d is None:
                raise ConsoleError("console.no_decision", f"no decision #{decision_id}", 404)
            evidence["decision"] = {
                k: d[k] for k in ("time", "flow_key", "server_name", "rule", "action", "class", "family")
            }
        detector = CONSOLE_DETECTOR_BLOCK if block else CONSOLE_DETECTOR_ALLOW
        text = reason.strip() and f"{who.name}: {reason.strip()}"
        p = Proposal(Kind.DOMAIN, name.strip().lower(), detector, text, evidence)
        store = open_store(self.config.register)
        try:
            pid = propose(store, p)
        except RegistryError as exc:
            self.users.audit(who, "proposal.create", name, "refused", {"reason": exc.reason})
            raise
        finally:
            store.close()
        self.users.audit(
            who, "proposal.create", f"#{pid}", detail={"name": name, "block": block, "why": reason}
        )
        return registry_service.proposal_show(self.config.register, pid)

    # -- decisions --

    def decision_page(
        self, who: Principal, q: DecisionQuery, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of decisions, newest first."""
        self.need(who, Role.VIEWER)
        self.decisions.refresh_if_stale()
        return self.decisions.page(q, limit, cursor)

    def decision(self, who: Principal, did: int) -> dict[str, Any]:
        """One decision in full, with the register's current view of its name.

        Raises:
            ConsoleError: ``console.no_decision`` (404).
        """
        self.need(who, Role.VIEWER)
        d = self.decisions.get(did)
        if d is None:
            raise ConsoleError(
                "console.no_decision", f"no decision #{did} (unknown, or rotated out of the log)", 404
            )
        if d.get("server_name"):
            d["register_now"] = self.register.check([str(d["server_name"])])[0]["matches"]
        return d

    def dashboard(self, who: Principal, since: float | None = None) -> dict[str, Any]:
        """Counts for the dashboard: decisions over time by action, class and family; top blocked
        names and services; writers of the log; register version.  Over a large log these are
        scans: the last result is served until it is older than :data:`DASHBOARD_CACHE_S`."""
        self.need(who, Role.VIEWER)
        if since is not None:
            return self._dashboard(since)
        self.decisions.refresh_if_stale()
        cached = self._dash
        if cached is not None and (
            cached[1] == self.decisions.count() or time.monotonic() - cached[0] < DASHBOARD_CACHE_S
        ):
            return cached[2]
        return self.warm_dashboard(force=True)

    def warm_dashboard(self, force: bool = False) -> dict[str, Any]:
        """Recompute the dashboard's counts (the indexing thread calls this after each round)."""
        cached = self._dash
        if not force and cached is not None and time.monotonic() - cached[0] < DASHBOARD_CACHE_S:
            return cached[2]
        total = self.decisions.count()
        if not force and cached is not None and cached[1] == total:
            return cached[2]
        out = self._dashboard(None)
        self._dash = (time.monotonic(), total, out)
        return out

    def _dashboard(self, since: float | None) -> dict[str, Any]:
        q = DecisionQuery(since=since)
        blocked = DecisionQuery(since=since, action="block")
        return {
            "decisions": self.decisions.count(q),
            "by_action": self.decisions.timeline(q, "action"),
            "by_class": self.decisions.timeline(q, "class"),
            "by_family": self.decisions.timeline(q, "family"),
            "top_blocked_names": self.decisions.top(blocked, "server_name"),
            "top_services": self.decisions.top(q, "service"),
            "writers": self.decisions.writers(),
            "register_version": self.register.version(),
            "skipped_lines": self.decisions.skipped,
        }

    # -- captures --

    def analyze(self, who: Principal, data: bytes, filename: str) -> dict[str, Any]:
        """Analyse an uploaded capture (``sluice analyze``) and keep the report.

        Raises:
            AuthError: below reviewer.
            CaptureError: not a capture.
        """
        self.need(who, Role.REVIEWER)
        if len(data) > MAX_UPLOAD_BYTES:
            raise ConsoleError(
                "console.too_large", f"files above {MAX_UPLOAD_BYTES >> 20} MiB are refused", 413
            )
        rep = self.reports.create(data, filename, who.name)
        self.users.audit(
            who, "capture.analyze", rep["id"], detail={"file": filename, "flows": rep["summary"]["flows"]}
        )
        return rep

    # -- policy --

    def policy_text(self, who: Principal) -> dict[str, Any]:
        """The policy in force (file or shipped default), checked."""
        self.need(who, Role.VIEWER)
        from sluice.policy import default_policy_text

        path = self.config.policy
        text = Path(path).read_text(encoding="utf-8") if path else default_policy_text()
        return {"path": path or "(shipped default)", "text": text, **self.validate(who, text, path)}

    def validate(self, who: Principal, text: str, path: str = "") -> dict[str, Any]:
        """Check a policy text (``sluice policy check``): every problem with its line."""
        self.need(who, Role.VIEWER)
        from sluice.policy import check_policy

        pol, issues = check_policy(text, path or "<policy>")
        out: dict[str, Any] = {
            "ok": not issues,
            "issues": [
                {
                    "line": i.line,
                    "reason": i.reason,
                    "message": i.message,
                    "rule_index": i.rule_index,
                    "rule": i.rule_name,
                    "key": i.key,
                }
                for i in issues
            ],
            "rules": [],
            "default": None,
            "digest": None,
        }
        if pol is not None:
            out["rules"] = [
                {"name": r.name, "action": r.action.value, "mode": r.mode.value, "line": r.line}
                for r in pol.rules
            ]
            out["default"] = pol.default.action.value
            out["digest"] = pol.digest
        return out

    def register_lookup(self) -> Any:
        """The register and its open proposals as the decision path reads them
        (:func:`sluice.decide.open_register`), reloaded when either changed."""
        from sluice.decide import open_register

        key = (self.register.version(), self.register.open_proposals())
        with self._lookup_lock:
            if self._lookup is None or self._lookup[0] != key:
                self._lookup = (key, open_register(self.config.register))
            return self._lookup[1]

    def dry_run(self, who: Principal, text: str, report_id: str) -> dict[str, Any]:
        """Replay a kept capture through a policy text with the register, as ``sluice policy
        test`` does (:func:`sluice.decide.replay_captures`, the gateway's decision path).

        Raises:
            AuthError: below reviewer.
            ConsoleError: ``console.bad_policy`` (with the issues), ``console.no_report``.
        """
        self.need(who, Role.REVIEWER)
        pol = self._policy(who, text)
        from sluice.decide import decide_after_for, replay_captures
        from sluice.gateway.rules import DEFAULT_PACKETS

        capture = self.reports.capture_path(report_id)
        res = replay_captures(
            pol,
            [str(capture)],
            self._combiner(),
            register=self.register_lookup(),
            decide_after=decide_after_for(DEFAULT_PACKETS),
        )
        return {
            "report": report_id,
            **res.summary(),
            "decisions": [d.to_dict() for d in res.decisions],
            "outcomes": [o.to_dict() for o in res.outcomes],
        }

    def _policy(self, who: Principal, text: str) -> Any:
        from sluice.policy import check_policy

        pol, issues = check_policy(text, "<policy>")
        if pol is None:
            raise ConsoleError("console.bad_policy", "; ".join(f"line {i.line}: {i.message}" for i in issues))
        return pol

    def compare(self, who: Principal, a: str, b: str, report_id: str = "") -> dict[str, Any]:
        """Two policy versions side by side: the text diff, the rules added, removed and changed,
        and (with a kept capture) the flows whose decision differs."""
        self.need(who, Role.VIEWER)
        va, vb = self.validate(who, a), self.validate(who, b)
        diff = list(difflib.unified_diff(a.splitlines(), b.splitlines(), "a", "b", lineterm=""))
        ra = {r["name"]: r for r in va["rules"]}
        rb = {r["name"]: r for r in vb["rules"]}
        out: dict[str, Any] = {
            "a": va,
            "b": vb,
            "diff": diff,
            "added": sorted(set(rb) - set(ra)),
            "removed": sorted(set(ra) - set(rb)),
            "changed": sorted(
                n
                for n in set(ra) & set(rb)
                if (ra[n]["action"], ra[n]["mode"]) != (rb[n]["action"], rb[n]["mode"])
            ),
            "flows": None,
        }
        if report_id:
            self.need(who, Role.REVIEWER)
            da, db = self.dry_run(who, a, report_id), self.dry_run(who, b, report_id)
            changed = []
            for x, y in zip(da["outcomes"], db["outcomes"], strict=True):
                dx, dy = x["inline"] or x["offline"], y["inline"] or y["offline"]
                if (dx["action"], dx["mode"], dx["rule"]) != (dy["action"], dy["mode"], dy["rule"]):
                    changed.append(
                        {
                            "flow_key": dx["flow_key"],
                            "server_name": dx["server_name"],
                            "a": f"{dx['action']} ({dx['rule']})",
                            "b": f"{dy['action']} ({dy['rule']})",
                        }
                    )
            out["flows"] = {
                "total": len(da["outcomes"]),
                "a": da["by_action"],
                "b": db["by_action"],
                "changed": changed,
            }
        return out

    # -- users and tokens --

    def need_admin(self, who: Principal) -> None:
        """Refuse unless admin."""
        self.need(who, Role.ADMIN)


def describe_error(exc: BaseException) -> tuple[str, str, int]:
    """``(reason, detail, status)`` of an error the console reports as a problem."""
    if isinstance(exc, ConsoleError | AuthError):
        return exc.reason, exc.detail, exc.status
    if isinstance(exc, RegistryError):
        return exc.reason, exc.detail, registry_status(exc.reason)
    if isinstance(exc, ConfigError):
        return "console.bad_option", str(exc), 422
    reason = str(getattr(exc, "reason", "console.error"))
    status = getattr(exc, "status", 422)
    return reason, str(getattr(exc, "detail", "") or exc), status if isinstance(status, int) else 422
