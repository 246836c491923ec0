"""Compile sluice's numba kernels once, at install time, so the first real command does not wait.

numba compiles each kernel on its first call and keeps the machine code in its cache (the
``__pycache__`` beside each module, or ``$NUMBA_CACHE_DIR``); a cold cache costs 20-60 s on each
of the first commands. This script drives the code paths that call kernels on small inputs: the
flow table and the batch path (``sluice flows`` on the bundled demo capture), features, detectors
and model (``sluice analyze``; the model's evidence on a row of zeros), and the register (an RKN
CSV dump through the compiled scanner, an import into a throwaway register, the matcher's single
and batch lookups). It prints how many kernels it compiled and how long it took. Run by
``scripts/install.sh``; safe to run again (then it compiles nothing).

Usage: ``.venv/bin/python scripts/warm_kernels.py``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DUMP = (
    "Updated: 2024-01-01 00:00:00 +0000\n"
    "1.2.3.4;blocked.example;http://blocked.example/a;суд;2-1/2020;2020-01-01\n"
    "10.0.0.0/8 | 2001:db8::/32;*.mask.example;https://x.example/;ФНС;1;2021-02-03\n"
    ";пример.рф;;МВД;3/1;2018-04-25\n"
)


def _registry(d: Path) -> None:
    from sluice.registry import Matcher, import_files, open_store
    from sluice.registry.importers.rkn_csv import parse_rkn_csv

    data = DUMP.encode("cp1251")
    parse_rkn_csv(data, "dump.csv")
    dump = d / "dump.csv"
    dump.write_bytes(data)
    db = d / "register.sqlite"
    store = open_store(db, create=True)
    try:
        import_files(store, [dump], "rkn-csv", source="rkn")
        m = Matcher.from_store(store)
    finally:
        store.close()
    for q in ("blocked.example", "www.blocked.example", "a.mask.example", "http://blocked.example/a"):
        m.match(q)
    for ip in ("10.1.2.3", "1.2.3.4", "2001:db8::1"):
        m.match(ip)
    m.match_hosts(["blocked.example", "x.mask.example", "other.example"])
    # an empty name set is a writable array, a filled one a read-only view: numba compiles each
    for rows in ([], [("s", "domain", "a.example", "[]")], [("s", "url", "http://a.example/", "[]")]):
        small = Matcher(rows)
        for q in ("a.example", "http://a.example/", "10.0.0.1", "2001:db8::1"):
            small.match(q)
        small.match_hosts(["a.example"])


def _evidence() -> None:
    """The model's evidence kernel: the demo capture may hold no model finding to explain."""
    import numpy as np

    from sluice.detect.model import load_model
    from sluice.features.flow import FEATURE_NAMES

    model, _ = load_model()
    forest = model._forest()
    if forest is not None and forest.n_classes > 1:
        forest.path_contributions(np.zeros((1, len(FEATURE_NAMES))), 1)


def main() -> int:
    t0 = time.monotonic()
    demo = ROOT / "examples" / "demo.pcapng"
    steps = [["flows", str(demo)], ["analyze", str(demo)]]
    for args in steps:
        cmd = [sys.executable, "-m", "sluice", *args]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode not in (0, 1):
            print(f"warm_kernels: sluice {' '.join(args)} failed: {res.stderr[-500:]}", file=sys.stderr)
            return 1
    with tempfile.TemporaryDirectory(prefix="sluice-warm-") as tmp:
        _registry(Path(tmp))
    _evidence()
    print(f"sluice: numba kernels compiled and cached in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
