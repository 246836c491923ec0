"""Lab files that hold secrets or logs are private from creation, not restricted afterwards."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice.lab import pki
from sluice.lab.scenarios.proxies import squid_dir


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)  # the most permissive caller: modes must not depend on it
    try:
        yield
    finally:
        os.umask(old)


def test_keys_are_created_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_umask: None) -> None:
    # no later chmod to rely on: the key must never have existed readable by others
    monkeypatch.setattr(Path, "chmod", lambda self, mode: None)
    ca = pki.LabCA(tmp_path / "ca")
    issued = ca.issue("server.lab", ips=("10.0.0.1",))
    assert stat.S_IMODE(issued.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(issued.cert.stat().st_mode) & 0o022 == 0


def test_an_existing_key_file_is_narrowed_and_a_symlink_refused(tmp_path: Path) -> None:
    ca = pki.LabCA(tmp_path / "ca")
    key = tmp_path / "ca" / "old.key"
    key.write_bytes(b"")
    key.chmod(0o644)
    assert stat.S_IMODE(ca.issue("old").key.stat().st_mode) == 0o600
    (tmp_path / "ca" / "evil.key").symlink_to(tmp_path / "target")
    with pytest.raises(OSError):
        ca.issue("evil")
    assert not (tmp_path / "target").exists()


def test_squid_directory_is_not_world_writable(tmp_path: Path, open_umask: None) -> None:
    d = squid_dir(tmp_path)
    st = d.stat()
    assert stat.S_IMODE(st.st_mode) == 0o700
    if os.geteuid() == 0:
        import pwd

        assert st.st_uid == pwd.getpwnam(pki_user()).pw_uid


def pki_user() -> str:
    import pwd

    for name in ("proxy", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise AssertionError("no proxy or nobody user")
