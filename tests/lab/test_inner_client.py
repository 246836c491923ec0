"""The browser-like client behind a carrier: curl's options carried over to curl-cffi (no root)."""

from __future__ import annotations

import pytest

from sluice.lab.traffic import cffi_args
from sluice.lab.webclients import _connect_to

CA = ["--cacert", "/tmp/ca.pem"]


@pytest.mark.parametrize(
    ("curl", "want"),
    [
        (
            ["--socks5-hostname", "127.0.0.1:1080", *CA],
            ["--cafile", "/tmp/ca.pem", "--proxy", "socks5h://127.0.0.1:1080"],
        ),
        (
            ["--socks5", "127.0.0.1:9", "--proxy-user", "cert=a/b+c;:iat-mode=1", *CA],
            ["--cafile", "/tmp/ca.pem", "--proxy", "socks5://cert%3Da%2Fb%2Bc%3B:iat-mode%3D1@127.0.0.1:9"],
        ),
        (
            ["-x", "http://10.0.0.1:3128", "--proxytunnel", *CA],
            ["--cafile", "/tmp/ca.pem", "--proxy", "http://10.0.0.1:3128"],
        ),
        (
            ["--proxy-user", "u:p", "-x", "10.0.0.1:3128", *CA],
            ["--cafile", "/tmp/ca.pem", "--proxy", "http://u:p@10.0.0.1:3128"],
        ),
        # --connect-to becomes --resolve in the client, which SOCKS5 applies only resolving locally
        (
            ["--socks5-hostname", "127.0.0.1:1080", *CA, "--connect-to", "a.example:443:127.0.0.1:443"],
            [
                "--cafile",
                "/tmp/ca.pem",
                "--connect-to",
                "a.example:443:127.0.0.1:443",
                "--proxy",
                "socks5://127.0.0.1:1080",
            ],
        ),
        ([*CA, "--interface", "tun0"], ["--cafile", "/tmp/ca.pem", "--interface", "tun0"]),
        # an HTTP proxy resolves CONNECT's name itself: the --resolve trick cannot work
        (["-x", "http://10.0.0.1:3128", *CA, "--connect-to", "a.example:443:10.0.0.2:443"], None),
        (["--http3-only", *CA], None),  # no counterpart: keep curl
        (["--socks5", "127.0.0.1:9"], None),  # no CA file: not an HTTPS fetch the lab verifies
        ([*CA, "--resolve"], None),  # an option without its value
    ],
)
def test_curl_options_carry_over(curl: list[str], want: list[str] | None) -> None:
    assert cffi_args(curl) == want


def test_connect_to_keeps_the_name_and_moves_the_port() -> None:
    resolve: list[str] = []
    specs = ["a.example:443:127.0.0.1:4567"]
    assert _connect_to("https://a.example/x?y=1", specs, resolve) == "https://a.example:4567/x?y=1"
    assert _connect_to("https://a.example:443/z", specs, resolve) == "https://a.example:4567/z"
    assert resolve == ["a.example:4567:127.0.0.1"]  # once, however many URLs
    assert _connect_to("https://b.example/x", specs, resolve) == "https://b.example/x"
    assert _connect_to("https://a.example:8443/x", specs, resolve) == "https://a.example:8443/x"
    # empty fields match any name or port and keep the original port
    assert _connect_to("https://c.example:8443/x", ["::10.0.0.9:"], resolve) == "https://c.example:8443/x"
    assert resolve[-1] == "c.example:8443:10.0.0.9"
