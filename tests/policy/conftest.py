"""Fixtures of the policy tests: the demo capture judged once, and a small real register."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from sluice.detect.combiner import Combiner
from sluice.detect.service import AnalysisResult, analyze_captures
from sluice.registry import Matcher, import_files, open_store

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.pcapng"
HOSTS = """# a hosts-style list, as blocklists publish them
0.0.0.0 psiphon.ca
0.0.0.0 thepiratebay.org
127.0.0.1 www.not-in-the-capture.example
"""


@cache
def demo_analysis() -> AnalysisResult:
    """The demo capture judged by layers 1-2 (no model: fast and deterministic)."""
    return analyze_captures([str(DEMO)], Combiner(None))


@pytest.fixture
def register_db(tmp_path: Path) -> str:
    """A SQLite register holding the hosts list above as source ``testlist``."""
    src = tmp_path / "testlist.txt"
    src.write_text(HOSTS)
    db = str(tmp_path / "register.db")
    summary = import_files(open_store(db, create=True), [src], "hosts", source="testlist")
    assert summary.added == 3
    return db


@pytest.fixture
def matcher(register_db: str) -> Matcher:
    return Matcher.from_store(open_store(register_db))
