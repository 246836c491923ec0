"""Shared pytest configuration: the --update-golden switch and seeded randomness."""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import settings


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite golden files under tests/data/golden from the current output",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture(autouse=True)
def _seeded() -> None:
    random.seed(1234)


# "ci" (the default): the same examples on every run, so a red CI is a real change, never luck.
# "explore": new random examples each run, ten times as many (hypothesis prints the seed and a
# reproduce_failure blob on failure): SLUICE_HYPOTHESIS=explore .venv/bin/python -m pytest tests
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("explore", derandomize=False, deadline=None, print_blob=True, max_examples=1000)
settings.load_profile(os.environ.get("SLUICE_HYPOTHESIS", "ci"))
