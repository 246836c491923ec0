"""The systemd unit of ``sluice gateway install-service``, checked by systemd's own ``systemd-analyze``."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from sluice.cli.main import cli
from sluice.errors import ConfigError
from sluice.gateway.unit import ServiceSpec, install_unit, render_unit, sd_notify

SLUICE = str(Path(sys.executable).with_name("sluice"))


def _analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not found (scripts/install.sh --test installs the systemd package)")
    res = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        pytest.skip(f"systemd-analyze cannot run here: {res.stderr.strip()}")
    return tool


def _files(tmp_path: Path) -> tuple[Path, Path]:
    policy = tmp_path / "etc" / "policy.toml"
    policy.parent.mkdir()
    policy.write_text('[[rule]]\nname = "b"\naction = "block"\nregister = true\n')
    register = tmp_path / "lib" / "register.sqlite"
    register.parent.mkdir()
    register.write_bytes(b"")
    return policy, register


def _verify(unit: Path) -> None:
    """``systemd-analyze verify``: exit 0 and not one complaint about this unit."""
    res = subprocess.run([_analyze(), "verify", str(unit)], capture_output=True, text=True, timeout=120)
    ours = [line for line in (res.stdout + res.stderr).splitlines() if unit.name in line]
    assert res.returncode == 0 and not ours, res.stdout + res.stderr


def _directives(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


@pytest.mark.parametrize("fail_open", [False, True])
def test_generated_unit_verifies(tmp_path: Path, fail_open: bool) -> None:
    policy, register = _files(tmp_path)
    log = tmp_path / "var" / "decisions"
    spec = ServiceSpec(SLUICE, str(policy), str(register), fail_open=fail_open, log_dir=str(log))
    unit = install_unit(spec, tmp_path)
    assert unit == tmp_path / "sluice-gateway.service" and unit.stat().st_mode & 0o777 == 0o644
    _verify(unit)
    d = _directives(unit.read_text())
    run = d["ExecStart"][0].split()
    assert run[:3] == [SLUICE, "gateway", "run"] and ("--queue-bypass" in run) == fail_open
    assert run[run.index("--register") + 1] == str(register) and run[run.index("--log") + 1] == str(log)
    assert (
        d["Type"] == ["notify"] and d["Restart"] == ["on-failure"] and d["RestartPreventExitStatus"] == ["2"]
    )
    if fail_open:
        assert d["StartLimitBurst"] == ["5"] and d["RestartSec"] == ["5s"]
    else:
        assert (
            d["StartLimitIntervalSec"] == ["0"] and d["RestartSec"] == ["1s"] and "StartLimitBurst" not in d
        )
    assert d["ProtectSystem"] == ["strict"] and d["ProtectHome"] == ["yes"] and d["PrivateTmp"] == ["yes"]
    assert d["NoNewPrivileges"] == ["yes"] and d["SystemCallFilter"] == ["@system-service"]
    assert d["CapabilityBoundingSet"] == d["AmbientCapabilities"] == ["CAP_NET_ADMIN CAP_NET_RAW"]
    assert d["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6 AF_NETLINK"]
    assert d["ReadWritePaths"] == [str(log), str(register.parent)]
    assert d["StandardOutput"] == d["StandardError"] == ["journal"]
    assert "MemoryDenyWriteExecute" not in d  # numba writes machine code


def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check can fail: a unit whose program does not exist is refused."""
    policy, register = _files(tmp_path)
    spec = ServiceSpec(str(tmp_path / "no-such-sluice"), str(policy), str(register))
    unit = install_unit(spec, tmp_path)
    res = subprocess.run([_analyze(), "verify", str(unit)], capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "no-such-sluice" in res.stderr, res.stderr


def test_exposure_score(tmp_path: Path) -> None:
    """systemd's own rating of the sandbox (0 safest .. 10 unprotected)."""
    policy, register = _files(tmp_path)
    unit = install_unit(ServiceSpec(SLUICE, str(policy), str(register)), tmp_path)
    res = subprocess.run(
        [_analyze(), "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", res.stdout + res.stderr)
    if m is None:
        pytest.skip(f"systemd-analyze security --offline is not available: {res.stderr.strip()[:200]}")
    assert float(m.group(1)) <= 3.0, res.stdout


def test_home_paths_are_read_only_not_hidden(tmp_path: Path) -> None:
    spec = ServiceSpec(SLUICE, "/home/ops/policy.toml", None, log_dir="/var/log/sluice")
    assert "ProtectHome=read-only" in render_unit(spec)


def test_quoting_of_arguments() -> None:
    spec = ServiceSpec(
        SLUICE, "/etc/sluice/my policy.toml", "postgresql://gw@db/reg?x=%20", extra_args=("--x",)
    )
    line = next(x for x in render_unit(spec).splitlines() if x.startswith("ExecStart="))
    assert '"/etc/sluice/my policy.toml"' in line and "postgresql://gw@db/reg?x=%%20" in line


@pytest.mark.parametrize(
    ("kwargs", "what"),
    [
        ({"policy": "policy.toml"}, "policy"),
        ({"register": "reg.sqlite"}, "register"),
        ({"extra_args": ("--policy=/x",)}, "args"),
        ({"name": "a b"}, "name"),
    ],
)
def test_spec_refuses(kwargs: dict[str, object], what: str) -> None:
    base: dict[str, object] = {"executable": SLUICE, "policy": "/etc/p.toml"}
    with pytest.raises(ConfigError, match=what):
        ServiceSpec(**{**base, **kwargs})  # type: ignore[arg-type]


def test_cli_dry_run_writes_nothing(tmp_path: Path) -> None:
    policy, register = _files(tmp_path)
    units = tmp_path / "units"
    units.mkdir()
    args = ["gateway", "install-service", "--policy", str(policy), "--register", str(register)]
    res = CliRunner().invoke(
        cli, [*args, "--fail-open", "--unit-dir", str(units), "--dry-run", "--", "--queue", "3"]
    )
    assert res.exit_code == 0, res.output
    assert "--queue-bypass --queue 3" in res.output and "StartLimitBurst=5" in res.output
    assert list(units.iterdir()) == []
    res = CliRunner().invoke(cli, [*args, "--unit-dir", str(units), "--", "--metrics", "9108"])
    assert res.exit_code == 0 and "systemctl daemon-reload" in res.output, res.output
    unit = units / "sluice-gateway.service"
    assert "--metrics 9108" in unit.read_text() and "--queue-bypass" not in unit.read_text()
    _verify(unit)


def test_cli_refuses_missing_files(tmp_path: Path) -> None:
    policy, _ = _files(tmp_path)
    base = ["gateway", "install-service", "--unit-dir", str(tmp_path), "--dry-run"]
    res = CliRunner().invoke(cli, [*base, "--policy", str(tmp_path / "nope.toml")])
    assert res.exit_code == 3 and "not found" in res.output
    res = CliRunner().invoke(cli, [*base, "--policy", str(policy), "--register", str(tmp_path / "nope.db")])
    assert res.exit_code == 2 and "no register" in res.output  # as every command: registry.no_register
    res = CliRunner().invoke(cli, [*base, "--policy", str(policy), "--", "--log", "/x"])
    assert res.exit_code == 2


def test_sd_notify_sends_one_datagram(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(path)
        s.settimeout(10)
        assert sd_notify("READY=1", {"NOTIFY_SOCKET": path})
        assert s.recv(100) == b"READY=1"
    assert not sd_notify("READY=1", {})
    assert not sd_notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "absent")})


def test_shipped_example_is_what_install_service_writes() -> None:
    """packaging/systemd/sluice-gateway.service is rendered, not hand-edited (regenerate it if this fails)."""
    shipped = Path(__file__).resolve().parents[2] / "packaging" / "systemd" / "sluice-gateway.service"
    spec = ServiceSpec(
        "/opt/sluice/.venv/bin/sluice",
        "/etc/sluice/policy.toml",
        "/var/lib/sluice/register.sqlite",
        extra_args=("--metrics", "9108"),
    )
    assert shipped.read_text() == render_unit(spec)
