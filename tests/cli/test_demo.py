"""The README's first command, ``bash scripts/demo.sh``, shows the main job on the bundled example.

The script is run as written except its first step (``scripts/install.sh``: Debian packages and the
virtualenv, which the test run already has): a register, an analysis with verdicts and register
matches, a policy's decisions and the blocks read back from the decision log.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "demo.sh"
INSTALL = "bash scripts/install.sh"
BLOCKED = {"rutracker.org", "thepiratebay.org", "psiphon.ca", "www.torproject.org"}


def _sections(out: str) -> dict[str, str]:
    parts = re.split(r"^\S*== (\d)\.? ", out, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def test_demo_shows_register_verdicts_and_decisions(tmp_path: Path) -> None:
    text = SCRIPT.read_text()
    assert text.count(INSTALL) == 1 and 'cd "$(dirname "$0")/.."' in text
    script = tmp_path / "demo.sh"
    script.write_text(text.replace(INSTALL, ": install skipped").replace('"$(dirname "$0")/.."', f'"{ROOT}"'))
    env = {
        **os.environ,
        "TMPDIR": str(tmp_path),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    res = subprocess.run(
        ["bash", str(script)], capture_output=True, text=True, timeout=900, env=env, check=False
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = re.sub(r"\x1b\[[0-9;]*m", "", res.stdout + res.stderr)
    assert "4 added" in out  # 1. the register
    assert "www.rutracker.org: 1 entry" in out and "www.wikipedia.org: no entry" in out
    rows = [line.split() for line in res.stdout.splitlines()]
    verdicts = [r for r in rows if len(r) > 11 and r[0].isdigit() and r[2].count(".") + r[2].count(":") > 1]
    assert len(verdicts) >= 50  # 2. a verdict per flow
    assert {"vpn", "circumvention", "tunnel"} <= {r[7] for r in verdicts}
    assert any("register:demo" in " ".join(r) for r in verdicts)
    blocks = [line for line in res.stdout.splitlines() if re.match(r"^\d{4}-\d\d-\d\dT.* block ", line)]
    assert len(blocks) == 6  # 3. the decisions, read back from the log
    assert {name for name in BLOCKED for line in blocks if f" {name} " in line} == BLOCKED
    assert "register-block" in out and "6 decisions in" in out
    assert list(tmp_path.glob("sluice-demo.*")) == []  # it cleans up after itself
