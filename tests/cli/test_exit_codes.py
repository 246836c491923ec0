"""The entry point: an internal error has its own exit code (70), never 1 (findings)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

CRASH = textwrap.dedent(
    """
    import sys
    import sluice.cli.decisions as d

    def boom(*a, **k):
        raise {exc}

    d.read_decisions = boom
    sys.argv = ["sluice", *sys.argv[1:]]
    from sluice.cli.main import main
    main()
    """
)


def _run(exc: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CRASH.format(exc=exc), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def test_a_crash_exits_70_without_a_traceback(tmp_path: os.PathLike[str]) -> None:
    r = _run("ZeroDivisionError('bug')", "decisions", "--log", str(tmp_path))
    assert r.returncode == 70, r.stderr
    assert "internal error" in r.stderr and "ZeroDivisionError: bug" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("how", ["option", "env"])
def test_debug_shows_the_traceback(tmp_path: os.PathLike[str], how: str) -> None:
    args = ["--debug"] if how == "option" else []
    env = {"SLUICE_DEBUG": "1"} if how == "env" else None
    r = _run("ZeroDivisionError('bug')", *args, "decisions", "--log", str(tmp_path), env=env)
    assert r.returncode == 70 and "Traceback" in r.stderr and "boom" in r.stderr


@pytest.mark.parametrize(
    ("exc", "code"),
    [("__import__('sluice.errors').errors.ConfigError('opt', 'bad')", 2), ("OSError(28, 'No space')", 3)],
)
def test_escaped_known_errors_keep_their_codes(tmp_path: os.PathLike[str], exc: str, code: int) -> None:
    r = _run(exc, "decisions", "--log", str(tmp_path))
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr


def test_the_documented_codes_do_not_collide() -> None:
    from sluice.cli._exit import EXIT_FINDINGS, EXIT_INTERNAL, EXIT_IO, EXIT_USAGE

    assert len({EXIT_FINDINGS, EXIT_USAGE, EXIT_IO, EXIT_INTERNAL}) == 4 and EXIT_INTERNAL == 70


def test_commands_end_by_exception_not_sys_exit() -> None:
    """Exit codes are chosen in one place (:mod:`sluice.cli._exit`, click's handler, and
    :func:`sluice.cli.main.main` for the unexpected): no command calls ``sys.exit`` itself."""
    import ast
    from pathlib import Path

    import sluice.cli

    found = []
    for path in sorted(Path(sluice.cli.__file__).parent.glob("*.py")):
        if path.name == "main.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "exit"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in ("sys", "os")
            ):
                found.append(f"{path.name}:{node.lineno}")
    assert not found, f"raise an exception of sluice.cli._exit instead: {found}"


def test_a_command_failure_prints_one_line_with_its_command(tmp_path: os.PathLike[str]) -> None:
    from click.testing import CliRunner

    from sluice.cli.main import cli

    r = CliRunner().invoke(cli, ["decisions", "--log", os.path.join(tmp_path, "absent")])
    assert r.exit_code == 3
    assert r.stderr.strip().splitlines() == [f"sluice decisions: error: no decision log at {tmp_path}/absent"]
