"""Start-up time of the ``sluice`` command: medians of repeated runs, and the ratio to ``python -c pass``.

What a user waits for before a short command answers is mostly the interpreter starting and the
imports. Each command is run ``--runs`` times in a fresh process (as ``hyperfine`` would, after
``--warmup`` runs that fill the page cache); the median wall time is printed beside the median of
``python -c pass`` measured in the same run, on the same machine: on a shared, loaded machine the
ratio is what compares between runs, not the seconds.

Commands timed:

* ``sluice --help``;
* ``sluice registry check --register R NAME`` (``registry --db R check NAME`` on a tree where
  ``check`` has no ``--register`` yet), against a small register this script builds in a temporary
  directory;
* ``python -c "import sluice.cli.main"``: the imports alone.

Usage: ``python bench/bench_startup.py [--runs 20] [--warmup 3] [--tree DIR] [--json]``.

``--tree DIR`` times the sources of another checkout (``DIR/src`` first on ``PYTHONPATH``, run as
``python -m sluice``, with this interpreter and its packages): e.g. the commit before a change,
exported with ``git archive COMMIT | tar -x -C DIR``, for a before/after on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HEAVY = ("numba", "lightgbm", "pyarrow", "pandas")
"""Modules that ``import sluice.cli.main`` should not load."""


def _sluice(tree: str | None) -> list[str]:
    """The command line that runs sluice: this interpreter's console script, or ``-m sluice``."""
    script = Path(sys.executable).with_name("sluice")
    return [str(script)] if script.exists() and tree is None else [sys.executable, "-m", "sluice"]


def _time(cmd: list[str], runs: int, warmup: int) -> tuple[float, float, float]:
    """Median, min and max wall seconds of ``runs`` runs of ``cmd`` (after ``warmup`` runs)."""
    times = []
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, check=False)
        dt = time.perf_counter() - t0
        if res.returncode not in (0, 1):
            raise SystemExit(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.decode()[-400:]}")
        if i >= warmup:
            times.append(dt)
    return statistics.median(times), min(times), max(times)


def _register(d: Path) -> Path:
    from sluice.registry import import_files, open_store

    db = d / "register.sqlite"
    lst = d / "list.txt"
    lst.write_text("".join(f"blocked{i}.example\n" for i in range(1000)))
    store = open_store(db, create=True)
    try:
        import_files(store, [lst], "domains", source="bench")
    finally:
        store.close()
    return db


def _check_cmd(sluice: list[str], db: Path) -> list[str]:
    helptext = subprocess.run([*sluice, "registry", "check", "--help"], capture_output=True, text=True)
    if "--register" in helptext.stdout:
        return [*sluice, "registry", "check", "--register", str(db), "blocked7.example"]
    return [*sluice, "registry", "--db", str(db), "check", "blocked7.example"]


def _heavy_loaded() -> list[str]:
    code = f"import sys, sluice.cli.main; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return res.stdout.split()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="One JSON object instead of the table.")
    ap.add_argument("--tree", help="Time the sources of this checkout (DIR/src), not the installed ones.")
    args = ap.parse_args()
    sluice = _sluice(args.tree)
    if args.tree:
        os.environ["PYTHONPATH"] = str(Path(args.tree).resolve() / "src")
    with tempfile.TemporaryDirectory(prefix="sluice-bench-startup-") as tmp:
        db = _register(Path(tmp))
        cases = [
            ("python -c pass", [sys.executable, "-c", "pass"]),
            ("import sluice.cli.main", [sys.executable, "-c", "import sluice.cli.main"]),
            ("sluice --help", [*sluice, "--help"]),
            ("sluice registry check", _check_cmd(sluice, db)),
        ]
        results = {name: _time(cmd, args.runs, args.warmup) for name, cmd in cases}
    base = results["python -c pass"][0]
    out = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "python": platform.python_version(),
        "tree": str(Path(args.tree).resolve()) if args.tree else "installed",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "runs": args.runs,
        "heavy_modules_loaded_by_cli_main": _heavy_loaded(),
        "commands": {
            name: {
                "median_s": round(med, 3),
                "min_s": round(lo, 3),
                "max_s": round(hi, 3),
                "ratio_to_python": round(med / base, 2),
            }
            for name, (med, lo, hi) in results.items()
        },
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{out['date']}; {out['machine']}; Python {out['python']}; load {out['load_average']}")
    print(f"sources: {out['tree']}")
    print(
        f"{args.runs} runs each after {args.warmup} warm-up runs; heavy modules loaded by "
        f"`import sluice.cli.main`: {' '.join(out['heavy_modules_loaded_by_cli_main']) or 'none'}"
    )
    print(f"{'command':<26} {'median s':>9} {'min s':>7} {'max s':>7} {'x python':>9}")
    for name, r in out["commands"].items():
        print(
            f"{name:<26} {r['median_s']:>9.3f} {r['min_s']:>7.3f} {r['max_s']:>7.3f} "
            f"{r['ratio_to_python']:>9.2f}"
        )


if __name__ == "__main__":
    main()
