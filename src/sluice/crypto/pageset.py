"""A labelled text set for judging ``crypto scan``: a manifest of where each text is, never the texts.

Theory of operation: the texts belong to others (Debian package descriptions and their Russian
translations, programs' gettext catalogues, packages' documentation), so the project keeps only a
manifest — one row per text: id, source, locator (package, version, member path, chunk), label,
a ``borderline`` flag, the frozen split and the sha256 of the text as this module extracts it.
An evaluation fetches the texts with Debian's ordinary client (``apt-get update`` into a private
lists directory, ``apt-get download``), extracts them the same way, and checks each hash: a text
that changed upstream is counted and left out, never silently scored.

The split is a pure function of the id (:func:`split_of`): half the rows are ``test``, fixed
before any score was looked at. Tuning may read ``train`` only.
"""

from __future__ import annotations

__all__ = [
    "MANIFEST_COLUMNS",
    "Confusion",
    "LabelledText",
    "chunk_entries",
    "confusion",
    "parse_po",
    "parse_translations",
    "read_manifest",
    "read_mo",
    "split_of",
    "text_sha256",
    "write_manifest",
]

import csv
import gettext
import hashlib
import io
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sluice.stats import wilson

MANIFEST_COLUMNS = ("id", "source", "locator", "label", "borderline", "split", "sha256")
"""Columns of the manifest (tab-separated, one header line)."""
_LABELS = ("crypto", "other")


@dataclass(frozen=True, slots=True)
class LabelledText:
    """One row of the manifest: where a text is and what it is."""

    id: str
    """Stable id (``source:locator``)."""
    source: str
    """Which collection (``deb-desc-en``, ``deb-desc-ru``, ``po-ru``, ``po-en``, ``doc``)."""
    locator: str
    """How to fetch it: package, version, member path, chunk index (``|``-separated)."""
    label: str
    """``crypto`` or ``other``."""
    borderline: bool
    """The labeller found the call arguable (reported with and without these rows)."""
    split: str
    """``train`` or ``test`` (:func:`split_of`)."""
    sha256: str
    """sha256 of the UTF-8 text as extracted."""


def split_of(item_id: str) -> str:
    """The frozen split of an id: ``test`` when the first byte of its sha256 is < 128."""
    return "test" if hashlib.sha256(item_id.encode()).digest()[0] < 128 else "train"


def text_sha256(text: str) -> str:
    """sha256 (hex) of a text's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_manifest(rows: Iterable[LabelledText], path: Path) -> int:
    """Write the manifest (sorted by id); returns the row count."""
    out = sorted(rows, key=lambda r: r.id)
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(MANIFEST_COLUMNS)
        for r in out:
            w.writerow((r.id, r.source, r.locator, r.label, int(r.borderline), r.split, r.sha256))
    return len(out)


def read_manifest(path: Path) -> list[LabelledText]:
    """Read a manifest.

    Raises:
        ValueError: a bad header, label, split or a split that disagrees with :func:`split_of`.
    """
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    if not rows or tuple(rows[0]) != MANIFEST_COLUMNS:
        raise ValueError(f"{path}: header must be " + "\t".join(MANIFEST_COLUMNS))
    out = []
    for n, row in enumerate(rows[1:], start=2):
        if len(row) != len(MANIFEST_COLUMNS):
            raise ValueError(f"{path}:{n}: {len(row)} columns, expected {len(MANIFEST_COLUMNS)}")
        item_id, source, locator, label, border, split, digest = row
        if label not in _LABELS or border not in ("0", "1") or split != split_of(item_id):
            raise ValueError(f"{path}:{n}: bad label, borderline flag or split for {item_id!r}")
        out.append(LabelledText(item_id, source, locator, label, border == "1", split, digest))
    return out


def parse_translations(text: str) -> dict[str, tuple[str, str]]:
    """A Debian ``Translation-xx`` file: package -> (Description-md5, description text).

    The text is the short description, a newline, and the long description with the leading space
    of each line removed and ``.`` paragraph lines turned into empty lines.
    """
    out: dict[str, tuple[str, str]] = {}
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in block.split("\n"):
            if line.startswith(" ") and key:
                fields[key] += "\n" + line
            elif ": " in line:
                key, _, value = line.partition(": ")
                fields[key] = value
        desc_key = next((k for k in fields if k.startswith("Description-") and k != "Description-md5"), "")
        if "Package" not in fields or not desc_key or "Description-md5" not in fields:
            continue
        first, _, rest = fields[desc_key].partition("\n")
        long_lines = ["" if ln.strip() == "." else ln[1:] for ln in rest.split("\n")] if rest else []
        out[fields["Package"]] = (fields["Description-md5"], "\n".join([first, *long_lines]).strip())
    return out


_PO_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}


def _po_string(lines: Sequence[str]) -> str:
    parts = []
    for ln in lines:
        m = re.match(r'^(?:msgid|msgstr(?:\[0\])?)?\s*"(.*)"\s*$', ln)
        if m:
            parts.append(re.sub(r"\\(.)", lambda e: _PO_ESCAPES.get(e.group(1), e.group(1)), m.group(1)))
    return "".join(parts)


def parse_po(text: str) -> list[tuple[str, str]]:
    """(msgid, msgstr) pairs of a gettext ``.po`` file, in file order (header and fuzzy entries skipped)."""
    out = []
    for block in re.split(r"\n\s*\n", text):
        lines = [ln for ln in block.split("\n") if ln and not ln.startswith("#~")]
        if any(ln.startswith("#,") and "fuzzy" in ln for ln in lines):
            continue
        body = [ln for ln in lines if not ln.startswith("#")]
        ids = [i for i, ln in enumerate(body) if ln.startswith("msgid ")]
        strs = [i for i, ln in enumerate(body) if ln.startswith("msgstr")]
        if not ids or not strs:
            continue
        end_id = next((i for i, ln in enumerate(body) if i > ids[0] and not ln.startswith('"')), len(body))
        msgid = _po_string(body[ids[0] : end_id])
        end_str = next((i for i, ln in enumerate(body) if i > strs[0] and not ln.startswith('"')), len(body))
        msgstr = _po_string(body[strs[0] : end_str])
        if msgid and msgstr:
            out.append((msgid, msgstr))
    return out


def read_mo(data: bytes) -> list[tuple[str, str]]:
    """(msgid, msgstr) pairs of a compiled gettext ``.mo`` catalogue, sorted by msgid (header skipped)."""
    cat = gettext.GNUTranslations(io.BytesIO(data))
    pairs = []
    for key, value in cat._catalog.items():  # type: ignore[attr-defined]
        msgid = key[0] if isinstance(key, tuple) else key
        if msgid and isinstance(value, str) and value:
            pairs.append((str(msgid), value))
    return sorted(pairs)


def chunk_entries(strings: Iterable[str], min_chars: int = 1500) -> list[str]:
    """Consecutive strings joined by newlines into chunks of at least ``min_chars`` characters.

    A last chunk shorter than ``min_chars // 2`` is dropped (too little text to judge).
    """
    chunks: list[str] = []
    cur: list[str] = []
    size = 0
    for s in strings:
        s = s.strip()
        if not s:
            continue
        cur.append(s)
        size += len(s) + 1
        if size >= min_chars:
            chunks.append("\n".join(cur))
            cur, size = [], 0
    if cur and size >= min_chars // 2:
        chunks.append("\n".join(cur))
    return chunks


@dataclass(frozen=True, slots=True)
class Confusion:
    """Counts of a binary decision against labels, with precision and recall and their intervals."""

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def precision(self) -> tuple[float, float, float]:
        """(point, low, high) with a Wilson 95 % interval; NaN point with no positive call."""
        n = self.tp + self.fp
        lo, hi = wilson(self.tp, n)
        return (self.tp / n if n else float("nan"), lo, hi)

    @property
    def recall(self) -> tuple[float, float, float]:
        """(point, low, high) with a Wilson 95 % interval; NaN point with no positive label."""
        n = self.tp + self.fn
        lo, hi = wilson(self.tp, n)
        return (self.tp / n if n else float("nan"), lo, hi)

    @property
    def fpr(self) -> tuple[float, float, float]:
        """False-positive rate (point, low, high) with a Wilson 95 % interval."""
        n = self.fp + self.tn
        lo, hi = wilson(self.fp, n)
        return (self.fp / n if n else float("nan"), lo, hi)


def confusion(labels: Sequence[str], calls: Sequence[bool]) -> Confusion:
    """Compare calls (True = crypto) with labels (``crypto``/``other``)."""
    tp = sum(1 for lab, c in zip(labels, calls, strict=True) if c and lab == "crypto")
    fp = sum(1 for lab, c in zip(labels, calls, strict=True) if c and lab != "crypto")
    fn = sum(1 for lab, c in zip(labels, calls, strict=True) if not c and lab == "crypto")
    return Confusion(tp, fp, fn, len(labels) - tp - fp - fn)


Scorer = Callable[[str], float]
