"""Kept capture analyses: an uploaded capture, ``sluice analyze``'s result on it, on disk.

Each report is a directory ``<state>/reports/<id>/`` holding the capture as uploaded and
``report.json`` (summary, per-run counters, one row per flow with its verdict, evidence and
register matches).  Ids are ``YYYYmmddTHHMMSSZ-<8 hex>``; anything else is refused before it
touches a path.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sluice.errors import SluiceError

__all__ = ["Reports"]

_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{8}")
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class ReportError(SluiceError):
    """``console.no_report``: unknown report id (404)."""

    reason = "console.no_report"
    status = 404

    def __init__(self, rid: str) -> None:
        self.detail = f"no report {rid!r}"
        super().__init__(self.detail)


class Reports:
    """The kept reports of one state directory.

    Args:
        root: the directory.
        combiner: returns the detectors to judge with (loaded on first use).
        register: returns a flow's register matches (``RegisterLookup.for_flow``).
    """

    def __init__(self, root: Path, combiner: Callable[[], Any], register: Callable[[], Any]) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._combiner = combiner
        self._register = register

    def _dir(self, rid: str) -> Path:
        if not _ID.fullmatch(rid) or not (self.root / rid / "report.json").is_file():
            raise ReportError(rid)
        return self.root / rid

    def create(self, data: bytes, filename: str, by: str) -> dict[str, Any]:
        """Analyse a capture and keep it with its report.

        Raises:
            CaptureError: the bytes are not a capture sluice reads (nothing is kept).
        """
        from sluice.detect.service import analyze_captures, summarize

        rid = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(4)
        d = self.root / rid
        d.mkdir()
        name = _SAFE.sub("_", Path(filename).name)[:100] or "capture"
        cap = d / name
        cap.write_bytes(data)
        try:
            res = analyze_captures([str(cap)], self._combiner(), register=self._register())
        except BaseException:
            shutil.rmtree(d, ignore_errors=True)
            raise
        report = {
            "id": rid,
            "file": name,
            "bytes": len(data),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "by": by,
            "summary": summarize(res.flows),
            "runs": {name: next(iter(res.runs.values()), {})},
            "flows": [f.to_dict() for f in res.flows],
        }
        (d / "report.json").write_text(json.dumps(report, ensure_ascii=False, default=str), encoding="utf-8")
        return report

    def get(self, rid: str) -> dict[str, Any]:
        """One report.

        Raises:
            ReportError: unknown id.
        """
        out: dict[str, Any] = json.loads((self._dir(rid) / "report.json").read_text(encoding="utf-8"))
        return out

    def capture_path(self, rid: str) -> Path:
        """The kept capture of a report.

        Raises:
            ReportError: unknown id.
        """
        return self._dir(rid) / str(self.get(rid)["file"])

    def list(self) -> list[dict[str, Any]]:
        """Every report, newest first, without its flows."""
        out = []
        for d in sorted(self.root.iterdir(), reverse=True):
            if _ID.fullmatch(d.name) and (d / "report.json").is_file():
                r = self.get(d.name)
                r.pop("flows", None)
                r.pop("runs", None)
                out.append(r)
        return out
