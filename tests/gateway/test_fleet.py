"""Three gateways, each in its own namespaces, sharing one PostgreSQL register (root only).

An import blocks a name on all three; each gateway's reload is pushed by ``LISTEN``/``NOTIFY``
(polling is set to 60 s, so only the push can explain a reload within the bound). A gateway on
a signed snapshot file keeps its register when the file is truncated or signed by another key.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice.registry import import_files, open_store
from sluice.registry.snapshot import generate_key, load_private_key, publish_snapshot
from tests.gateway.conftest import (
    CLI_IP,
    GW_CLI_IP,
    GW_SRV_IP,
    PY,
    SRV_IP,
    Topo,
    need_gateway_env,
    sh,
    unique,
)
from tests.gateway.helpers import SERVER, https_server, make_cert

BLOCKED, ALLOWED = "fleet-blocked.example", "fleet-fine.example"
PUSH_BOUND_S = 10.0
"""An import is enforced by every gateway within this many seconds (measured: see docs/scale-notes.md)."""
POLICY = '[[rule]]\nname = "register-block"\naction = "block"\nmode = "enforce"\nregister = true\n'


@contextlib.contextmanager
def _topology() -> Iterator[Topo]:
    base = unique("f")
    t = Topo(f"{base}c", f"{base}g", f"{base}s")
    try:
        for ns in (t.cli, t.gw, t.srv):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh(
            "ip",
            "link",
            "add",
            f"{base}a",
            "netns",
            t.cli,
            "type",
            "veth",
            "peer",
            "name",
            f"{base}b",
            "netns",
            t.gw,
        )
        sh(
            "ip",
            "link",
            "add",
            f"{base}d",
            "netns",
            t.gw,
            "type",
            "veth",
            "peer",
            "name",
            f"{base}e",
            "netns",
            t.srv,
        )
        for ns, dev, addr in (
            (t.cli, f"{base}a", CLI_IP),
            (t.gw, f"{base}b", GW_CLI_IP),
            (t.gw, f"{base}d", GW_SRV_IP),
            (t.srv, f"{base}e", SRV_IP),
        ):
            sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", t.cli, "route", "add", "default", "via", GW_CLI_IP)
        sh("ip", "-n", t.srv, "route", "add", "default", "via", GW_SRV_IP)
        sh(*t.ex(t.gw, "sysctl", "-qw", "net.ipv4.ip_forward=1"))
        yield t
    finally:
        for ns in (t.cli, t.gw, t.srv):
            for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)
        for ns in (t.cli, t.gw, t.srv):
            sh("ip", "netns", "del", ns, check=False)


class Gateway:
    """A ``sluice gateway run`` process whose stderr lines are kept with the time they came."""

    def __init__(self, topo: Topo, args: list[str]) -> None:
        self.topo = topo
        cmd = [PY, "-m", "sluice.cli.gateway", "run", "--queue", "3", "--queue-bypass", "--no-detect", *args]
        self.proc = subprocess.Popen(topo.ex(topo.gw, *cmd), stderr=subprocess.PIPE, text=True)
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append((time.monotonic(), line.rstrip()))

    def wait_for(self, text: str, after: float = 0.0, timeout: float = 120.0) -> float:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for t, line in list(self.lines):
                if t >= after and text in line:
                    return t
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"no {text!r} from the gateway: " + "\n".join(x for _, x in self.lines))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def _curl(topo: Topo, name: str, timeout: float) -> str:
    return sh(
        *topo.ex(topo.cli, "curl", "-k", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", str(timeout)),
        "--resolve", f"{name}:443:{SRV_IP}", f"https://{name}/", check=False, timeout=timeout + 30,
    ).stdout.strip()  # fmt: skip


def _until(topo: Topo, name: str, want: str, deadline_s: float) -> str:
    """curl until it gets ``want`` ("200" or "000": blocked) or the deadline passes; the last status."""
    end = time.monotonic() + deadline_s
    got = ""
    while time.monotonic() < end:
        got = _curl(topo, name, 3.0 if want == "000" else 15.0)
        if got == want:
            return got
        time.sleep(0.3)
    return got


@pytest.fixture(scope="module")
def pg() -> Iterator[object]:
    need_gateway_env()
    pytest.importorskip("psycopg")
    from tests.registry.conftest import PgServer

    server = PgServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def material(tmp_path: Path) -> dict[str, Path]:
    need_gateway_env()
    cert, key = make_cert(tmp_path)
    (tmp_path / "server.py").write_text(SERVER)
    (tmp_path / "policy.toml").write_text(POLICY)
    (tmp_path / "base.txt").write_text("unrelated.example\n")
    (tmp_path / "new.txt").write_text(f"{BLOCKED}\n")
    return {"dir": tmp_path, "cert": cert, "key": key, "server": tmp_path / "server.py"}


def test_import_blocks_on_three_gateways(pg: object, material: dict[str, Path]) -> None:
    url: str = pg.new_database()  # type: ignore[attr-defined]
    store = open_store(url, create=True)
    try:
        import_files(store, [material["dir"] / "base.txt"], "domains", source="fleet")
    finally:
        store.close()
    gateways: list[Gateway] = []
    with contextlib.ExitStack() as stack:
        topos = [stack.enter_context(_topology()) for _ in range(3)]
        for t in topos:
            stack.enter_context(https_server(t, material["server"], material["cert"], material["key"]))
        args = ["--policy", str(material["dir"] / "policy.toml"), "--register", url, "--register-poll", "60"]
        try:
            for t in topos:
                gateways.append(Gateway(t, args))
            for g in gateways:
                g.wait_for("ready on queue")
            for t in topos:  # everything passes before the import
                assert _until(t, BLOCKED, "200", 60) == "200"
            time.sleep(1.0)  # the listeners are connected (they report nothing when they are)
            t0 = time.monotonic()
            store = open_store(url)
            try:  # the same list, one name more: a new import row, hence a notification
                import_files(store, [material["dir"] / "new.txt"], "domains", source="fleet-2")
            finally:
                store.close()
            t_commit = time.monotonic()
            blocked: dict[int, float] = {}

            def probe(i: int) -> None:  # curl through gateway i until the name is refused
                while time.monotonic() < t0 + 60:
                    start = time.monotonic()
                    if _curl(topos[i], BLOCKED, 2.0) == "000":
                        blocked[i] = start - t_commit
                        return
                    time.sleep(0.05)

            probes = [threading.Thread(target=probe, args=(i,)) for i in range(3)]
            for th in probes:
                th.start()
            loaded = [
                g.wait_for("loaded register (2 entries)", after=t0, timeout=60) - t_commit for g in gateways
            ]
            for th in probes:
                th.join()
            print(
                f"import committed in {t_commit - t0:.3f} s; register loaded after the commit in "
                + ", ".join(f"{x:.3f}" for x in loaded)
                + " s; first refused connection started "
                + ", ".join(f"{blocked.get(i, -1):.3f}" for i in range(3))
                + " s after the commit"
            )
            assert max(loaded) < PUSH_BOUND_S  # polling is every 60 s: only the push explains this
            assert sorted(blocked) == [0, 1, 2] and max(blocked.values()) < PUSH_BOUND_S
            for t in topos:
                assert _curl(t, ALLOWED, 15.0) == "200"
        finally:
            for g in gateways:
                g.stop()


def test_snapshot_gateway_keeps_old_register_on_bad_file(material: dict[str, Path]) -> None:
    d = material["dir"]
    db = d / "reg.sqlite"
    store = open_store(db, create=True)
    try:
        import_files(store, [d / "new.txt"], "domains", source="fleet")
    finally:
        store.close()
    generate_key(d / "snap.key", d / "snap.pub")
    generate_key(d / "other.key", d / "other.pub")
    snap = d / "register.snap"

    def publish(key: str, out: Path) -> None:
        st = open_store(db)
        try:
            publish_snapshot(st, out, load_private_key(d / key))
        finally:
            st.close()

    publish("snap.key", snap)
    args = ["--policy", str(d / "policy.toml"), "--register-snapshot", str(snap)]
    args += ["--snapshot-key", str(d / "snap.pub"), "--register-poll", "0.5"]
    with _topology() as t, https_server(t, material["server"], material["cert"], material["key"]):
        g = Gateway(t, args)
        try:
            g.wait_for("ready on queue")
            assert _until(t, BLOCKED, "000", 30) == "000"
            # the next version unblocks the name; first as a truncated file, then signed by another key
            (d / "empty.txt").write_text("unrelated.example\n")
            st = open_store(db)
            try:
                import_files(st, [d / "empty.txt"], "domains", source="fleet")
            finally:
                st.close()
            publish("snap.key", d / "next.snap")
            good = (d / "next.snap").read_bytes()
            for bad, why in (
                (good[: len(good) // 2], "snapshot.truncated"),
                (None, "snapshot.bad_signature"),
            ):
                if bad is None:
                    publish("other.key", d / "other.snap")
                    bad = (d / "other.snap").read_bytes()
                t1 = time.monotonic()
                tmp = d / "tmp.snap"
                tmp.write_bytes(bad)
                tmp.replace(snap)
                g.wait_for(why, after=t1, timeout=30)
                assert _curl(t, BLOCKED, 3.0) == "000"  # the old register stays
                time.sleep(1.5)  # three polls: a refused file is not tried (nor reported) again
                assert sum(why in line for _, line in g.lines) == 1
            t2 = time.monotonic()
            (d / "next.snap").replace(snap)
            g.wait_for("loaded register (1 entries)", after=t2, timeout=30)
            assert _until(t, BLOCKED, "200", 30) == "200"
        finally:
            g.stop()
