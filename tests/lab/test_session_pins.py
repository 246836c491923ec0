"""`sluice lab run --set KEY=VALUE`: a pinned parameter is used instead of drawn, and nothing else moves."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from sluice.cli.lab import lab
from sluice.lab.scenario import Session
from sluice.lab.topology import Addressing, LabError, Topology


def _session(tmp_path: Path, pins: dict[str, str] | None = None) -> Session:
    rng = random.Random("pins/1")
    return Session(Topology(tmp_path, Addressing.random(random.Random("addr"))), rng, 3.0, pins)


def test_pinned_choice_is_used_and_the_rest_of_the_session_is_unchanged(tmp_path: Path) -> None:
    free, pinned = _session(tmp_path), _session(tmp_path, {"inner": "https"})
    picks_free = [free.choose("inner", ("http", "https")) for _ in range(20)]
    picks_pinned = [pinned.choose("inner", ("http", "https")) for _ in range(20)]
    assert set(picks_free) == {"http", "https"} and set(picks_pinned) == {"https"}
    # the draw still happens: later parameters are the ones the seed gives unpinned
    assert free.choose("port", (1, 2, 3, 4, 5, 6, 7, 8)) == pinned.choose("port", (1, 2, 3, 4, 5, 6, 7, 8))
    assert pinned.params["inner"] == "https"
    assert _session(tmp_path, {"h2": "True"}).choose("h2", (False, True)) is True  # by its text


def test_a_pin_outside_the_options_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="inner=ftp is not one of: http, https"):
        _session(tmp_path, {"inner": "ftp"}).choose("inner", ("http", "https"))


def test_set_option_syntax() -> None:
    got = CliRunner().invoke(lab, ["run", "dns", "--set", "inner"])
    assert got.exit_code == 2 and "expected KEY=VALUE" in got.output
