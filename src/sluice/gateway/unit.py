"""The gateway as a systemd service: the unit ``sluice gateway install-service`` writes.

Theory of operation: :func:`render_unit` turns a :class:`ServiceSpec` (what ``gateway run`` is
to be started with, and fail-open or fail-closed) into a unit file; :func:`install_unit` writes
it atomically. Nothing here runs ``systemctl``: the command prints what to run next.

The unit:

* ``Type=notify``: ``gateway run`` tells systemd it is ready (``READY=1`` on
  ``$NOTIFY_SOCKET``, :func:`sd_notify`) once its queue is bound, so ``systemctl start``
  returns when packets are being decided, and units ordered after it start then;
* ``ExecReload`` sends SIGHUP (the gateway re-reads the policy and the register);
* logging goes to journald (``journalctl -u sluice-gateway``), one line per message;
* hardening: the whole file system read-only (``ProtectSystem=strict``) but the decision log,
  the register's directory (SQLite writes its ``-wal``/``-shm`` files beside it), the state and
  cache directories; no home directories, a private ``/tmp`` and ``/dev``; root, but only with
  ``CAP_NET_ADMIN`` and ``CAP_NET_RAW`` (netfilter rules, NFQUEUE, conntrack marks, the tc
  shaper), no new privileges; sockets of the families it uses only (``AF_UNIX`` for the notify
  socket, ``AF_INET``/``AF_INET6`` for a PostgreSQL register or the metrics endpoint,
  ``AF_NETLINK`` for NFQUEUE, iptables-nft and tc); system calls of ``@system-service``.
  ``MemoryDenyWriteExecute`` is *not* set: numba's kernels are machine code made at run time.
  numba's cache is ``/var/cache/sluice/numba`` (``CacheDirectory``), since the installed
  package is read-only to the service.

Restart policy and fail-open/fail-closed: the netfilter rules stay when the gateway exits, so
what a dead gateway means is decided by the mode:

* **fail-closed** (the default): new connections are dropped while no gateway listens, so the
  unit restarts it after 1 s on any failure and never gives up (``StartLimitIntervalSec=0``):
  every second it is down is an outage for new connections;
* **fail-open** (``--queue-bypass``): new connections pass undecided while it is down, so a
  gateway that keeps failing is left failed after 5 starts in 10 minutes (``systemctl status``
  and the unit's failed state show it) rather than flapping; restarts wait 5 s.

Either way, exit code 2 (a configuration error: a bad policy file, a bad option) is not
restarted (``RestartPreventExitStatus=2``): it will fail the same way until someone fixes it.
A deliberate ``systemctl stop`` leaves the rules too: a stopped fail-closed gateway keeps
dropping new connections (``sluice gateway teardown`` removes the rules).
"""

from __future__ import annotations

__all__ = ["DEFAULT_UNIT_DIR", "DEFAULT_UNIT_NAME", "ServiceSpec", "install_unit", "render_unit", "sd_notify"]

import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sluice.errors import ConfigError

DEFAULT_UNIT_DIR = "/etc/systemd/system"
"""Where units written by the administrator go."""
DEFAULT_UNIT_NAME = "sluice-gateway"
"""The unit's name (``sluice-gateway.service``)."""
STATE_DIR = "/var/lib/sluice"
"""The service's state directory (``StateDirectory=sluice``): the default decision log is below it."""
CACHE_DIR = "/var/cache/sluice"
"""The service's cache directory (``CacheDirectory=sluice``): numba's compiled kernels."""
_HOMES = ("/home", "/root", "/run/user")


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """What the unit starts."""

    executable: str
    """The ``sluice`` program (absolute path)."""
    policy: str
    """The policy file (absolute path)."""
    register: str | None = None
    """The register: an absolute SQLite path or a ``postgresql://`` URL (None: none)."""
    fail_open: bool = False
    """``--queue-bypass``: undecided packets pass while no gateway listens."""
    log_dir: str = f"{STATE_DIR}/decisions"
    """The decision log directory (absolute)."""
    extra_args: tuple[str, ...] = ()
    """More ``gateway run`` options, passed as given (``--queue 3``, ``--metrics 9108``...)."""
    name: str = DEFAULT_UNIT_NAME
    """The unit's name, without ``.service``."""

    def __post_init__(self) -> None:
        for what, path in (("executable", self.executable), ("policy", self.policy), ("log", self.log_dir)):
            if not os.path.isabs(path):
                raise ConfigError(what, f"must be an absolute path in a unit, not {path!r}")
        if self.register is not None and "://" not in self.register and not os.path.isabs(self.register):
            raise ConfigError("register", f"must be an absolute path or a URL, not {self.register!r}")
        if not self.name or not all(c.isalnum() or c in "-_.@" for c in self.name):
            raise ConfigError("name", f"bad unit name {self.name!r}")
        own = ("--queue-bypass", "--policy", "--register", "--log")
        if any(a.split("=", 1)[0] in own for a in self.extra_args):
            raise ConfigError("args", "--policy, --register, --log and the mode are install-service options")

    @property
    def filename(self) -> str:
        """``NAME.service``."""
        return f"{self.name}.service"

    def run_args(self) -> list[str]:
        """The ``gateway run`` command line."""
        args = [self.executable, "gateway", "run", "--policy", self.policy]
        if self.register:
            args += ["--register", self.register]
        args += ["--log", self.log_dir]
        if self.fail_open:
            args.append("--queue-bypass")
        return [*args, *self.extra_args]


def _quote(arg: str) -> str:
    """One argument of an ``Exec*=`` line (systemd.service(5), "Command lines")."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if arg and not any(c in arg for c in " \t\"'\\;"):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _writable_paths(spec: ServiceSpec) -> list[str]:
    paths = [spec.log_dir]
    if spec.register and "://" not in spec.register:
        paths.append(str(Path(spec.register).parent))
    out: list[str] = []
    for p in paths:
        if p != STATE_DIR and not p.startswith(STATE_DIR + "/") and p not in out:
            out.append(p)
    return out


def _under_home(spec: ServiceSpec) -> bool:
    paths = [spec.executable, spec.policy, spec.log_dir]
    if spec.register and "://" not in spec.register:
        paths.append(spec.register)
    return any(p == h or p.startswith(h + "/") for p in paths for h in _HOMES)


def render_unit(spec: ServiceSpec) -> str:
    """The unit file's text (see the module docstring)."""
    mode = "fail-open" if spec.fail_open else "fail-closed"
    if spec.fail_open:
        restart = [
            "# fail-open: traffic passes undecided while the gateway is down; a gateway that keeps",
            "# failing is left failed (5 starts in 10 min) instead of flapping",
            "Restart=on-failure",
            "RestartSec=5s",
        ]
        limits = ["StartLimitIntervalSec=10min", "StartLimitBurst=5"]
    else:
        restart = [
            "# fail-closed: new connections are dropped while the gateway is down; restart at once,",
            "# and never give up (StartLimitIntervalSec=0 in [Unit])",
            "Restart=on-failure",
            "RestartSec=1s",
        ]
        limits = ["StartLimitIntervalSec=0"]
    rw = _writable_paths(spec)
    home = "read-only" if _under_home(spec) else "yes"
    lines = [
        f"# Written by `sluice gateway install-service` ({mode}). Edit with `systemctl edit {spec.name}`.",
        "[Unit]",
        f"Description=sluice inline gateway (NFQUEUE, {mode})",
        "Wants=network-pre.target",
        "After=network-pre.target",
        "Before=network.target",
        *limits,
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        "ExecStart=" + " ".join(_quote(a) for a in spec.run_args()),
        "ExecReload=/bin/kill -HUP $MAINPID",
        *restart,
        "# a configuration error (exit 2) fails the same way until someone fixes it",
        "RestartPreventExitStatus=2",
        "# the first start may compile numba's kernels and load the model",
        "TimeoutStartSec=300",
        "TimeoutStopSec=60",
        "StandardOutput=journal",
        "StandardError=journal",
        f"SyslogIdentifier={spec.name}",
        "Environment=PYTHONUNBUFFERED=1",
        f"Environment=NUMBA_CACHE_DIR={CACHE_DIR}/numba",
        "StateDirectory=sluice",
        "CacheDirectory=sluice",
        *(f"ReadWritePaths={_quote(p)}" for p in rw),
        "UMask=0027",
        "# hardening",
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW",
        "AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        f"ProtectHome={home}",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "ProtectProc=invisible",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        "SystemCallErrorNumber=EPERM",
        "# not MemoryDenyWriteExecute: numba compiles kernels to machine code at run time",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)


def install_unit(spec: ServiceSpec, unit_dir: str | Path = DEFAULT_UNIT_DIR) -> Path:
    """Write the unit into ``unit_dir`` (atomically, mode 0644); its path.

    Raises:
        OSError: the directory cannot be written.
    """
    d = Path(unit_dir)
    target = d / spec.filename
    fd, tmp = tempfile.mkstemp(dir=d, prefix=f".{spec.filename}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(render_unit(spec))
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def sd_notify(state: str, env: dict[str, str] | None = None) -> bool:
    """Tell the service manager ``state`` (``READY=1``...); False when not run by one.

    Sends one datagram to ``$NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract namespace),
    as ``sd_notify(3)`` does; never raises.
    """
    path = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
    if not path:
        return False
    addr = "\0" + path[1:] if path.startswith("@") else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(state.encode())
    except OSError:
        return False
    return True
