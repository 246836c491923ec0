"""How a lab session's label file names its client stack, implementation and inner fetch."""

from __future__ import annotations

from sluice.lab.dataset import session_identity, session_inner


def test_identity_recorded_by_the_scenario_wins() -> None:
    doc = {"scenario": "trojan-alt", "params": {"stack": "curl-openssl", "impl": "v2ray+trojan-gfw"}}
    assert session_identity(doc) == ("curl-openssl", "v2ray+trojan-gfw")


def test_identity_defaults_for_older_sessions() -> None:
    doc = {"scenario": "socks", "software": [{"name": "dante"}, {"name": "curl"}]}
    assert session_identity(doc) == ("curl-openssl", "dante")


def test_inner_fetch() -> None:
    assert session_inner({"class": "benign", "params": {"inner": "https"}}) == ""
    assert session_inner({"class": "tunnel", "params": {"inner": "https"}}) == "https"
    assert session_inner({"class": "circumvention", "params": {}}) == "http"  # before params.inner
