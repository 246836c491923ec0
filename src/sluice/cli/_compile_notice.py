"""Say so on stderr when numba compiles kernels (a cold cache), instead of a long silence.

numba compiles a kernel the first time it is called with new argument types and keeps the
machine code in its cache; a cold cache (a fresh install, a new numba, another CPU) costs 20-60 s
on the first commands. ``scripts/install.sh`` compiles them ahead of time
(``scripts/warm_kernels.py``); when that did not happen, the first compilation prints one line,
and the command's end says how long compiling took.

numba must not be imported to set this up (``sluice --help`` does not import it), so
:func:`install` puts a finder on ``sys.meta_path`` that, when something imports numba, lets the
import happen and then registers a listener for numba's ``numba:compile`` event, which fires
only on a cache miss.
"""

from __future__ import annotations

__all__ = ["install"]

import atexit
import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import time
from collections.abc import Sequence
from types import ModuleType
from typing import Any

MESSAGE = (
    "sluice: compiling numba kernels for this machine, once (~20-60 s; later runs load them from "
    "the cache; scripts/install.sh compiles them ahead of time)"
)


class _Notice:
    def __init__(self, write: Any) -> None:
        self.write = write
        self.depth = 0
        self.kernels = 0
        self.seconds = 0.0
        self._t0 = 0.0

    def on_start(self, event: Any) -> None:
        if self.depth == 0:
            if self.kernels == 0:
                self.write(MESSAGE)
                atexit.register(self.summary)
            self._t0 = time.monotonic()
        self.depth += 1
        self.kernels += 1

    def on_end(self, event: Any) -> None:
        self.depth -= 1
        if self.depth == 0:
            self.seconds += time.monotonic() - self._t0

    def summary(self) -> None:
        self.write(f"sluice: compiled {self.kernels} kernels in {self.seconds:.1f} s (cached for later runs)")


def _listen(write: Any) -> None:
    from numba.core import event

    notice = _Notice(write)

    class Listener(event.Listener):
        def on_start(self, ev: Any) -> None:
            notice.on_start(ev)

        def on_end(self, ev: Any) -> None:
            notice.on_end(ev)

    event.register("numba:compile", Listener())  # type: ignore[no-untyped-call]


class _AfterNumba(importlib.abc.MetaPathFinder):
    """Wraps numba's loader once, to register the listener when its import completes."""

    def __init__(self, write: Any) -> None:
        self.write = write

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "numba":
            return None
        sys.meta_path.remove(self)  # once; and find the real spec without finding ourselves
        spec = importlib.util.find_spec(fullname)
        loader = spec.loader if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module
        write = self.write

        def exec_then_listen(module: ModuleType) -> None:
            exec_module(module)
            with contextlib.suppress(Exception):  # a notice must never break a command
                _listen(write)

        loader.exec_module = exec_then_listen  # type: ignore[method-assign]
        return spec


def install(write: Any = None) -> None:
    """Print :data:`MESSAGE` (through ``write``; default: stderr) when numba first compiles."""
    if write is None:

        def write(line: str) -> None:
            print(line, file=sys.stderr, flush=True)

    if "numba" in sys.modules:
        _listen(write)
    elif not any(isinstance(f, _AfterNumba) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterNumba(write))
