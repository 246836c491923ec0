"""`sluice flows --interface` end to end: a real capture on a private network namespace's loopback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

SLUICE = str(Path(sys.executable).with_name("sluice"))


@pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs root (CI runs as root)")
@pytest.mark.skipif(
    shutil.which("unshare") is None or shutil.which("ping") is None, reason="needs unshare and ping"
)
def test_live_capture_with_filter_gives_the_ping_flow() -> None:
    # ICMP and UDP to loopback until sluice has its 6 packets (however long it takes to start on
    # a loaded machine); the BPF filter keeps only ICMP; sluice's exit status is the script's
    script = (
        "ip link set lo up; (while true; do ping -c 1 127.0.0.1; "
        "echo x > /dev/udp/127.0.0.1/9 2>/dev/null; sleep 0.1; done) >/dev/null 2>&1 & "
        f"{SLUICE} flows -i lo --filter icmp --count 6 --duration 45 --format jsonl; rc=$?; "
        "kill %1; exit $rc"
    )
    done = subprocess.run(
        ["unshare", "-n", "bash", "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == 1  # one ICMP flow; the UDP datagrams never reach sluice
    row = rows[0]
    assert (row["proto"], row["client"], row["server"]) == (1, "127.0.0.1", "127.0.0.1")
    assert row["c2s_packets"] + row["s2c_packets"] == 6
    assert "6 packets" in done.stderr


def test_missing_interface_is_an_io_error() -> None:
    if os.geteuid() != 0:
        pytest.skip("opening a packet socket needs root")
    done = subprocess.run(
        [SLUICE, "flows", "-i", "no-such-if0", "--count", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3
    assert "capture.no_such_interface" in done.stderr
