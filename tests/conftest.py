"""Shared pytest configuration: the --update-golden switch and seeded randomness."""

from __future__ import annotations

import random

import pytest
from hypothesis import settings


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite golden files under tests/data/golden from the current output")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture(autouse=True)
def _seeded() -> None:
    random.seed(1234)


settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.load_profile("ci")
