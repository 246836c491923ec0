"""Progress bars appear on stderr when it is a terminal (a pseudo-terminal here), never elsewhere,
and never change what stdout gets."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sluice.policy import default_policy_text

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / "examples" / "demo.pcapng")
SLUICE = str(Path(sys.executable).with_name("sluice"))


def _run(args: list[str], tty: bool) -> tuple[int, bytes, bytes]:
    """Run sluice with stdout on a pipe and stderr on a pseudo-terminal (or a pipe)."""
    env = {**os.environ, "COLUMNS": "120"}
    if not tty:
        res = subprocess.run([SLUICE, *args], capture_output=True, timeout=600, env=env, check=False)
        return res.returncode, res.stdout, res.stderr
    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def drain() -> None:  # read the terminal side while stdout is read: neither may fill up
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child's side is closed
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    with subprocess.Popen([SLUICE, *args], stdout=subprocess.PIPE, stderr=slave, env=env) as proc:
        os.close(slave)
        assert proc.stdout is not None
        out = proc.stdout.read()
        code = proc.wait(timeout=600)
    reader.join(timeout=60)
    os.close(master)
    return code, out, b"".join(chunks)


@pytest.mark.parametrize("command", ["analyze", "policy test"])
def test_bar_on_a_terminal_only(command: str, tmp_path: Path) -> None:
    if command == "analyze":
        args, label = ["analyze", "--no-model", DEMO, DEMO], b"analyze demo.pcapng"
    else:
        pol = tmp_path / "policy.toml"
        pol.write_text(default_policy_text())
        args, label = ["policy", "test", str(pol), DEMO, DEMO, "--no-model"], b"policy test: replaying"
    code, out, err = _run(args, tty=True)
    assert code == 0, err[-2000:]
    assert label in err and b"\x1b[" in err
    code2, out2, err2 = _run(args, tty=False)
    assert code2 == 0 and out2 == out  # the rows do not depend on the bar
    assert label not in err2 and b"\x1b[" not in err2
    code3, out3, err3 = _run([*args, "--no-progress"], tty=True)
    assert code3 == 0 and out3 == out and label not in err3
