"""Host names split and cored in bulk: the name index's input, without a Python step per name.

Theory of operation
-------------------
:func:`~sluice.mirrors.stems.name_parts` and :func:`~sluice.mirrors.stems.core` cost ~20 µs a
name in Python; a million names is then the whole time budget of the name stage.
:func:`split_names` does the same for a batch, column by column:

1. Names are trimmed and lower-cased with Arrow compute.  Names that are plain ASCII, without
   ``xn--`` labels or empty labels, take the fast path; the others (Cyrillic, punycode, odd
   input) go through ``name_parts``/``core`` one by one, so both paths give the same answer.
2. Public suffix: the last one, two and three labels of every name are looked up in the public
   suffix list's rule set (Arrow ``is_in``); the longest listed one is the suffix (an unknown
   TLD is a suffix of one label, as the list's own algorithm says).  A name whose tail touches a
   wildcard or exception rule, or a rule of four labels or more, takes the slow path.
3. The labels left of the suffix are cut out by offsets; their cores are computed by a compiled
   kernel over one byte buffer (:func:`~sluice.mirrors._kernels.ascii_cores`) and written into
   one text, ``.``-separated, that the automata scan in a single pass.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from sluice.mirrors._kernels import _LOOKALIKE, ascii_cores, gather2, tail_starts
from sluice.mirrors.stems import core, name_parts
from sluice.registry.names import public_suffixes

__all__ = ["NameColumns", "arrow_strings", "slices", "split_names", "string_buffers"]

_SLOW = r"(?:^|\.)xn--|\.\.|^\.|^$"


@dataclass(frozen=True, slots=True)
class NameColumns:
    """A batch of host names, split (per name) and cored (per label)."""

    names: Sequence[str]
    """The names as given."""
    label: pa.Array
    """Registrable label per name, as ``name_parts`` gives it ("" when none)."""
    suffix: pa.Array
    """Public suffix per name."""
    n_sub: npt.NDArray[np.int64]
    """Subdomain labels per name."""
    owner: npt.NDArray[np.int64]
    """Per label: the name it belongs to (labels of a name are consecutive, outermost first)."""
    registrable: npt.NDArray[np.bool_]
    """Per label: True for the registrable label."""
    text: str
    """Every label's core followed by ``.``, in label order (letters ``a-z`` and dots only)."""
    start: npt.NDArray[np.int64]
    """Per label: where its core starts in ``text``."""
    length: npt.NDArray[np.int64]
    """Per label: length of its core."""

    def core(self, i: int) -> str:
        """Core of label ``i``."""
        s = int(self.start[i])
        return self.text[s : s + int(self.length[i])]


@functools.cache
def _rules() -> tuple[pa.Array, pa.Array, pa.Array, int] | None:
    """(exact rules, names touching wildcard/exception rules, 3-label tails of deeper rules, max depth)."""
    rules = getattr(public_suffixes(), "_publicsuffix", None)
    if not isinstance(rules, frozenset):
        return None  # another publicsuffixlist version: everything takes the slow path
    exact = sorted(r for r in rules if r[0] not in "*!")
    special = sorted({r[2:] for r in rules if r.startswith("*.")} | {r[1:] for r in rules if r[0] == "!"})
    deeper = sorted({".".join(r.lstrip("!*.").split(".")[-3:]) for r in rules if r.count(".") >= 3})
    depth = max((r.count(".") + 1 for r in rules), default=1)
    return pa.array(exact), pa.array(special), pa.array(deeper), depth


def arrow_strings(values: Sequence[str] | pa.Array) -> pa.Array:
    """``values`` as an Arrow large_string array without nulls."""
    arr = values if isinstance(values, pa.Array) else pa.array(values, pa.large_string())
    if arr.type != pa.large_string():
        arr = pc.cast(arr, pa.large_string())
    return pc.fill_null(arr, "") if arr.null_count else arr


def string_buffers(arr: pa.Array) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """The UTF-8 bytes and int64 offsets (length n + 1) of a string array, zero-copy where possible."""
    arr = arrow_strings(arr)
    bufs = arr.buffers()
    offs = np.frombuffer(bufs[1], dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(1, np.uint8)
    if not len(data):
        data = np.zeros(1, np.uint8)
    return data, offs.astype(np.int64, copy=False)


def slices(
    buf: npt.NDArray[np.uint8],
    s1: npt.NDArray[np.int64],
    e1: npt.NDArray[np.int64],
    s2: npt.NDArray[np.int64] | None = None,
    e2: npt.NDArray[np.int64] | None = None,
) -> pa.Array:
    """Strings ``buf[s1:e1]`` (``+ buf[s2:e2]`` when given), as an Arrow large_string array."""
    z = np.zeros(len(s1), np.int64)
    a, b = (z, z) if s2 is None or e2 is None else (s2.astype(np.int64), e2.astype(np.int64))
    data, offs = gather2(buf, s1.astype(np.int64), e1.astype(np.int64), a, b)
    return pa.LargeStringArray.from_buffers(len(s1), pa.py_buffer(offs.astype(np.int64)), pa.py_buffer(data))


def _tails(low: pa.Array, depth: int) -> list[pa.Array]:
    """The last 1..``depth`` labels of every name ("" when it has fewer)."""
    buf, offs = string_buffers(low)
    at = np.empty((len(low), depth), np.int64)
    tail_starts(buf, offs, depth, at)
    out = []
    for d in range(depth):
        out.append(slices(buf, np.where(at[:, d] >= 0, at[:, d], offs[1:]), offs[1:]))
    return out


def _member(values: pa.Array, value_set: pa.Array) -> npt.NDArray[np.bool_]:
    return np.asarray(pc.fill_null(pc.is_in(values, value_set=value_set), False), dtype=bool)


def split_names(names: Sequence[str]) -> NameColumns:
    """Split and core a batch of host names (see the module docstring).

    Args:
        names: host names (Unicode or punycode, any case, trailing dot allowed).

    Returns:
        The columns; agrees with ``name_parts`` and ``core`` name by name.
    """
    n = len(names)
    arr = arrow_strings(list(names))
    low = pc.utf8_lower(pc.utf8_rtrim(pc.utf8_trim_whitespace(arr), characters="."))
    slow = np.asarray(
        pc.or_(pc.invert(pc.string_is_ascii(low)), pc.match_substring_regex(low, _SLOW)), dtype=bool
    )
    rules = _rules()
    if rules is None:
        slow[:] = True
    count = np.ones(n, np.int64)
    tails: list[pa.Array] = []
    if rules is not None and n:
        exact, special, deeper, _ = rules
        tails = _tails(low, 3)
        for t in tails:
            slow |= _member(t, special)
        slow |= _member(tails[2], deeper)
        count[_member(tails[1], exact)] = 2
        count[_member(tails[2], exact)] = 3
    fast = np.flatnonzero(~slow)
    pieces = _fast(low, fast, count, tails) if len(fast) else None
    slow_rows = _slow([names[i] for i in np.flatnonzero(slow).tolist()], np.flatnonzero(slow))
    order = np.concatenate([fast, np.flatnonzero(slow)])
    inv = np.empty(n, np.int64)
    inv[order] = np.arange(n)
    labels = [slow_rows[0]] if pieces is None else [pieces[0], slow_rows[0]]
    suffixes = [slow_rows[1]] if pieces is None else [pieces[1], slow_rows[1]]
    label = pa.concat_arrays([arrow_strings(x) for x in labels]).take(pa.array(inv))
    suffix = pa.concat_arrays([arrow_strings(x) for x in suffixes]).take(pa.array(inv))
    n_sub = np.concatenate([slow_rows[2]] if pieces is None else [pieces[2], slow_rows[2]])[inv]
    lab = [slow_rows[3]] if pieces is None else [pieces[3], slow_rows[3]]
    owner = np.concatenate([x[0] for x in lab])
    reg = np.concatenate([x[1] for x in lab])
    text_parts = [x[2] for x in lab]
    starts: list[npt.NDArray[np.int64]] = []
    base = 0
    for x in lab:
        starts.append(x[3] + base)
        base += len(x[2])
    start = np.concatenate(starts)
    length = np.concatenate([x[4] for x in lab])
    return NameColumns(
        names, label, suffix, n_sub, owner, reg, "".join(text_parts), start, length.astype(np.int64)
    )


_Labels = tuple[
    npt.NDArray[np.int64], npt.NDArray[np.bool_], str, npt.NDArray[np.int64], npt.NDArray[np.int64]
]


def _fast(
    low: pa.Array, rows: npt.NDArray[np.int64], count: npt.NDArray[np.int64], tails: list[pa.Array]
) -> tuple[pa.Array, pa.Array, npt.NDArray[np.int64], _Labels]:
    sel = pa.array(rows)
    lists = pc.split_pattern(low.take(sel), ".")
    ll = np.asarray(pc.list_value_length(lists), dtype=np.int64)
    flat = pc.list_flatten(lists)
    first = np.zeros(len(rows), np.int64)
    np.cumsum(ll[:-1], out=first[1:])
    cnt = count[rows]
    n_lab = np.maximum(ll - cnt, 0)
    has = n_lab > 0
    reg_flat = np.where(has, first + n_lab - 1, 0)
    label = (
        pc.if_else(pa.array(has), flat.take(pa.array(reg_flat)), "")
        if len(flat)
        else pa.array([""] * len(rows))
    )
    t = [x.take(sel) for x in tails]
    suffix = pc.if_else(pa.array(cnt == 3), t[2], pc.if_else(pa.array(cnt == 2), t[1], t[0]))
    n_sub = np.maximum(n_lab - 1, 0)
    total = int(n_lab.sum())
    owner_local = np.repeat(np.arange(len(rows)), n_lab)
    within = np.arange(total) - np.repeat(np.cumsum(n_lab) - n_lab, n_lab)
    labels = (
        flat.take(pa.array(np.repeat(first, n_lab) + within)) if total else pa.array([], pa.large_string())
    )
    reg = within == np.repeat(n_lab - 1, n_lab)
    buf, offs = string_buffers(labels)
    out = np.empty(int(offs[-1] - offs[0]) + total + 1, np.uint8)
    s = np.empty(total, np.int64)
    ln = np.empty(total, np.int64)
    used = ascii_cores(buf, offs, _LOOKALIKE, out, s, ln)
    text = out[:used].tobytes().decode("ascii")
    return label, suffix, n_sub, (rows[owner_local], reg, text, s, ln)


def _slow(
    names: list[str], rows: npt.NDArray[np.int64]
) -> tuple[list[str], list[str], npt.NDArray[np.int64], _Labels]:
    labels, suffixes, n_sub = [], [], []
    owner: list[int] = []
    reg: list[bool] = []
    text: list[str] = []
    start: list[int] = []
    length: list[int] = []
    at = 0
    for row, name in zip(rows.tolist(), names, strict=True):
        p = name_parts(name)
        labels.append(p.label)
        suffixes.append(p.suffix)
        n_sub.append(len(p.subdomains) if p.label else 0)
        if not p.label:
            continue
        for pos, lab in enumerate((*p.subdomains, p.label)):
            c = core(lab)
            owner.append(row)
            reg.append(pos == len(p.subdomains))
            start.append(at)
            length.append(len(c))
            text.append(c + ".")
            at += len(c) + 1
    return (
        labels,
        suffixes,
        np.asarray(n_sub, np.int64),
        (
            np.asarray(owner, np.int64),
            np.asarray(reg, bool),
            "".join(text),
            np.asarray(start, np.int64),
            np.asarray(length, np.int64),
        ),
    )
