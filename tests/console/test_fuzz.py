"""The OpenAPI document fuzzed with schemathesis against a running console: no 5xx, every
response as the document describes it (status codes, content types, bodies)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from sluice.console.service import ConsoleConfig  # noqa: E402
from tests.console.conftest import Live, seed_decisions, seed_register, start  # noqa: E402


@pytest.fixture(scope="module")
def fuzz_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Live, str]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    target = str(tmp / "register.db")
    ids = seed_register(target, tmp)
    seed_decisions(tmp / "decisions")
    cfg = ConsoleConfig(
        register=target, log_dir=str(tmp / "decisions"), state_dir=str(tmp / "state"), no_model=True
    )
    for live in start(cfg, tmp):
        live.proposal_ids = ids
        yield live, live.token("ada")


def test_api_conforms_to_its_schema(fuzz_live: tuple[Live, str]) -> None:
    live, token = fuzz_live
    schema = schemathesis.openapi.from_url(live.url + "/api/v1/openapi.json")
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 25
    for op in operations:

        @given(case=op.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def fuzz(case: Any) -> None:
            case.call_and_validate(
                base_url=live.url, headers={"Authorization": f"Bearer {token}"}, checks=checks
            )

        fuzz()
