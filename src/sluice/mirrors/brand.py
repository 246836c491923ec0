"""Brand stems and counter shapes: the keys the name index is built on, one name at a time or by column.

A name's *brand stem* is the core of its registrable label (:func:`~sluice.mirrors.stems.core`:
folded, counters and hyphens gone) with mirror words stripped from both ends
(``10-fonbet-zerkalo.ru`` -> ``fonbet``, :func:`brand_stem`). A label's *counter shape* is the
label with every digit run written ``#`` (``bet1-7`` -> ``bet#-#``, :func:`counter_shape`), kept
only with at least :data:`MIN_SHAPE_LETTERS` characters besides digits and hyphens.
:func:`strip_fillers_column` and :func:`shape_column` give the same over Arrow columns (a compiled
kernel, Arrow's RE2), for :class:`~sluice.mirrors.index.NameIndex`; :func:`words_regex` is the
pattern of strings made only of given words.
"""

from __future__ import annotations

__all__ = [
    "MIN_SHAPE_LETTERS",
    "brand_stem",
    "counter_shape",
    "shape_column",
    "strip_fillers",
    "strip_fillers_column",
    "words_regex",
]

import functools
import re
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from sluice.mirrors._kernels import edge_strip
from sluice.mirrors.columns import arrow_strings, slices, string_buffers
from sluice.mirrors.stems import MIRROR_WORDS, core, name_parts

MIN_SHAPE_LETTERS = 3
"""Letters a counter shape needs to be indexed."""


def _edge_re(words: Iterable[str]) -> tuple[re.Pattern[str], re.Pattern[str]]:
    alt = "|".join(sorted({re.escape(w) for w in words if len(w) >= 2}, key=len, reverse=True))
    return re.compile(f"^(?:{alt})+"), re.compile(f"(?:{alt})+$")


_DEFAULT_EDGES = _edge_re(MIRROR_WORDS)


def strip_fillers(text: str, edges: tuple[re.Pattern[str], re.Pattern[str]] = _DEFAULT_EDGES) -> str:
    """Mirror words removed from both ends of a core, keeping at least 4 letters."""
    head, tail = edges
    m = head.match(text)
    if m and len(text) - m.end() >= 4:
        text = text[m.end() :]
    m = tail.search(text)
    if m and m.start() >= 4:
        text = text[: m.start()]
    return text


def strip_fillers_column(cores: pa.Array) -> pa.Array:
    """:func:`strip_fillers` of a column of cores (a compiled kernel with the regexes' semantics)."""
    if not len(cores):
        return cores
    buf, offs = string_buffers(cores)
    s = np.empty(len(cores), np.int64)
    e = np.empty(len(cores), np.int64)
    edge_strip(buf, offs, *_edge_words(), 4, s, e)
    return slices(buf, s, e)


@functools.cache
def _edge_words() -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    words = sorted({w for w in MIRROR_WORDS if len(w) >= 2}, key=len, reverse=True)
    return string_buffers(arrow_strings(words))


def brand_stem(name: str, edges: tuple[re.Pattern[str], re.Pattern[str]] = _DEFAULT_EDGES) -> str:
    """The brand stem of a host name (see the module docstring)."""
    return strip_fillers(core(name_parts(name).label), edges)


_DIGITS = re.compile(r"[0-9]+")
_COUNTER_CHARS = re.compile(r"[0-9-]+")


def counter_shape(label: str) -> str:
    """The label with digit runs written ``#`` when it has a counter and 3+ other characters
    besides digits and hyphens, else ""."""
    if not _DIGITS.search(label) or len(_COUNTER_CHARS.sub("", label)) < MIN_SHAPE_LETTERS:
        return ""
    return _DIGITS.sub("#", label)


def shape_column(labels: pa.Array) -> pa.Array:
    """:func:`counter_shape` of a column of labels (null where there is none)."""
    labels = arrow_strings(labels)
    out = pa.nulls(len(labels), pa.large_string())
    digits = np.flatnonzero(np.asarray(pc.match_substring_regex(labels, "[0-9]"), dtype=bool))
    if not len(digits):
        return out
    sub = labels.take(pa.array(digits))
    letters = pc.utf8_length(pc.replace_substring_regex(sub, "[0-9-]+", ""))
    shaped = pc.if_else(
        pc.greater_equal(letters, MIN_SHAPE_LETTERS), pc.replace_substring_regex(sub, "[0-9]+", "#"), None
    )
    mask = np.zeros(len(labels), bool)
    mask[digits] = True
    return pc.replace_with_mask(out, pa.array(mask), shaped)


def words_regex(words: Iterable[str], max_word: int = 16) -> str:
    """RE2/Python pattern matching strings made only of ``words`` (the empty string too): the
    same test as ``segment(text, words) is not None``."""
    alt = "|".join(sorted({re.escape(w) for w in words if 0 < len(w) <= max_word}, key=len, reverse=True))
    return f"^(?:{alt})*$" if alt else "^$"
