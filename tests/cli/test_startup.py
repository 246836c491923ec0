"""A fast start: the ``sluice`` command imports its heavy libraries only where they are used.

Timing is measured by ``bench/bench_startup.py`` (``BENCHMARKS.md``); these tests check what is
deterministic: which modules a fresh interpreter has loaded after ``import sluice.cli.main`` and
after ``sluice --help``, and that the one-line helps ``sluice --help`` prints without importing
the commands are each command's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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


@pytest.mark.parametrize("argv", [["gateway", "--help"], ["gateway", "run", "--help"], ["analyze", "--help"]])
def test_a_command_help_loads_no_detector(argv: list[str]) -> None:
    """The detectors (numba kernels, LightGBM) load when a command runs, not for its --help."""
    body = f"""
import contextlib, io
from sluice.cli.main import main
sys.argv = ["sluice", *{argv!r}]
out = io.StringIO()
with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
    main()
assert "Usage:" in out.getvalue(), out.getvalue()
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


_BLOCK_PYARROW = """
import sys
class Block:
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "pyarrow":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Block())
sys.argv = ["sluice", *sys.argv[1:]]
from sluice.cli.main import main
main()
"""


def _without_pyarrow(*args: str) -> subprocess.CompletedProcess[str]:
    """``sluice ARGS`` in an interpreter where importing pyarrow fails as if it were not installed."""
    return subprocess.run(
        [sys.executable, "-c", _BLOCK_PYARROW, *args], capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_core_commands_run_without_pyarrow(tmp_path: Path) -> None:
    """pyarrow is the ``parquet`` extra: flows, analyze and the gateway's decisions do without it."""
    demo = str(Path(__file__).resolve().parents[2] / "examples" / "demo.pcapng")
    for args in (["flows", demo], ["analyze", demo, "--decisions"]):
        res = _without_pyarrow(*args)
        assert res.returncode == 0, (args, res.stderr[-2000:])
    res = _without_pyarrow("flows", demo, "--format", "parquet", "--out", str(tmp_path / "f.parquet"))
    assert res.returncode == 2, res.stderr[-2000:]
    assert "this needs pyarrow, which is not installed: pip install 'sluice[parquet]'" in res.stderr


def test_gateway_engine_does_not_need_pyarrow() -> None:
    body = """
sys.modules["pyarrow"] = None  # importing it raises ImportError
from sluice.cli._detect import load_combiner
from sluice.gateway.engine import warm_up
from sluice.policy import parse_policy
combiner = load_combiner(None, False, 0.99)
policy = parse_policy('[[rule]]\\nname = "a"\\naction = "block"\\nhost = "x.example"\\n', "<t>")
assert warm_up(policy, None, combiner) >= 1
del sys.modules["pyarrow"]
"""
    assert "pyarrow" not in _heavy_after(body)


_KERNEL = """
from numba import njit

@njit(cache=True)
def twice(x):
    return 2 * x
"""

_RUN_KERNEL = """
import sys
sys.path.insert(0, sys.argv[1])
from sluice.cli._compile_notice import install
install()
import kernel_mod
assert kernel_mod.twice(21) == 42
"""


def test_compile_notice_only_on_a_cold_cache(tmp_path: Path) -> None:
    (tmp_path / "kernel_mod.py").write_text(_KERNEL)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}

    def run() -> str:
        res = subprocess.run(
            [sys.executable, "-c", _RUN_KERNEL, str(tmp_path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert res.returncode == 0, res.stderr
        return res.stderr

    cold = run()
    assert "compiling numba kernels for this machine, once" in cold
    assert "sluice: compiled 1 kernels in" in cold
    assert run() == ""  # loaded from the cache: not a word
