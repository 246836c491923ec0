"""A fast start: the ``sluice`` command imports its heavy libraries only where they are used.

Timing is measured by ``bench/bench_startup.py`` (``BENCHMARKS.md``); these tests check what is
deterministic: which modules a fresh interpreter has loaded after ``import sluice.cli.main`` and
after ``sluice --help``, and that the one-line helps ``sluice --help`` prints without importing
the commands are each command's own.
"""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from sluice.cli.main import COMMANDS, cli

HEAVY = ("numba", "lightgbm", "pyarrow", "pandas")
"""Libraries that take a large share of a second (or more) to import."""

_PROBE = """
import json, sys
{body}
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def _heavy_after(body: str) -> list[str]:
    """The heavy modules a fresh interpreter has loaded after running ``body``."""
    code = _PROBE.format(body=body, heavy=HEAVY)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    loaded: list[str] = json.loads(res.stdout.strip().splitlines()[-1])
    return loaded


def test_import_cli_main_loads_no_heavy_library() -> None:
    assert _heavy_after("import sluice.cli.main") == []


def test_help_loads_no_heavy_library_and_lists_every_command() -> None:
    body = """
import contextlib, io
from sluice.cli.main import main
sys.argv = ["sluice", "--help"]
out = io.StringIO()
with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
    main()
assert "registry" in out.getvalue() and "gateway" in out.getvalue(), out.getvalue()
"""
    assert _heavy_after(body) == []


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_listed_help_is_the_commands_own(name: str) -> None:
    """``sluice --help`` shows COMMANDS' text; it must be what the command itself says."""
    ctx = click.Context(cli)
    command = cli.get_command(ctx, name)
    assert isinstance(command, click.Command)
    assert command.get_short_help_str(limit=10**6) == COMMANDS[name][2], (
        f"update COMMANDS[{name!r}] in src/sluice/cli/main.py to the command's first help line"
    )


def test_every_command_runs_through_the_lazy_group() -> None:
    res = CliRunner().invoke(cli, ["--help"])
    assert res.exit_code == 0, res.output
    listed = [line.split()[0] for line in res.output.split("Commands:")[1].splitlines() if line.strip()]
    assert listed == sorted(COMMANDS)
    for name in listed:
        sub = CliRunner().invoke(cli, [name, "--help"])
        assert sub.exit_code == 0, (name, sub.output)
        assert f"Usage: cli {name}" in sub.output or f"Usage: sluice {name}" in sub.output, sub.output
    assert CliRunner().invoke(cli, ["no-such-command"]).exit_code == 2
