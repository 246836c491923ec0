"""The reload thread outlives every failure (issue 19): counted, last good state kept, next reload done."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from sluice.gateway.engine import GatewayEngine
from sluice.gateway.reload import Reloader
from sluice.policy import load_policy, parse_policy
from sluice.registry import Matcher

GOOD = '[[rule]]\nname = "names"\nhost = ["*.example"]\naction = "block"\n'
OTHER = '[[rule]]\nname = "other"\nhost = ["*.test"]\naction = "reset"\n'
DEADLINE_S = 30.0


def _wait(cond: Callable[[], bool]) -> None:
    end = time.monotonic() + DEADLINE_S
    while not cond():
        assert time.monotonic() < end, "the reload thread did not get there in time"
        time.sleep(0.01)


def _alive(r: Reloader) -> bool:
    return any(t.name == "sluice-reload" and t.is_alive() for t in threading.enumerate())


def test_deeply_nested_policy_is_counted_and_the_next_reload_still_happens(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(GOOD)
    engine = GatewayEngine(load_policy(path), None)
    first = engine.policy.digest
    messages: list[str] = []
    r = Reloader(lambda: load_policy(path), report=messages.append)
    r.start()
    try:
        # tomllib recurses once per nesting level: this raises RecursionError (or the loader refuses it)
        path.write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n")
        r.request()
        _wait(lambda: r.refused + r.errors == 1)
        assert _alive(r)
        assert not r.apply(engine) and engine.policy.digest == first  # the last good policy stays
        assert engine.stats.reload_failures == 1
        assert any("keeping the old policy and register" in m for m in messages), messages
        path.write_text(OTHER)
        r.request()
        _wait(lambda: r.loads == 1)
        assert r.apply(engine) and engine.policy.digest != first
        assert [x.name for x in engine.policy.rules] == ["other"]
        stats = engine.stats.to_dict()
        assert (stats["reloads"], stats["reload_failures"]) == (1, 1)
    finally:
        r.stop()


def test_unexpected_errors_of_register_and_revision_do_not_end_the_thread() -> None:
    calls = {"matcher": 0, "revision": 0}

    def load_matcher() -> Matcher:
        calls["matcher"] += 1
        if calls["matcher"] == 1:
            raise RuntimeError("a driver's own error")
        return Matcher([("t", "domain", "blocked.example", "[]")])

    def revision() -> int:
        calls["revision"] += 1
        if calls["revision"] == 2:  # the first is asked in the constructor
            raise KeyError("not a SluiceError")
        return calls["revision"]

    engine = GatewayEngine(parse_policy(GOOD, "<t>"), None)
    r = Reloader(
        lambda: parse_policy(GOOD, "<t>"), load_matcher, revision, poll_s=0.01, report=lambda _m: None
    )
    r.start()
    try:
        _wait(lambda: r.errors >= 2 and r.loads >= 1)  # the revision failed, the matcher failed, then loaded
        assert _alive(r)
        assert r.apply(engine) and engine.register is not None and len(engine.register) == 1
        assert engine.stats.reload_failures == r.refused + r.errors >= 2
    finally:
        r.stop()
