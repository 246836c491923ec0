"""The model directory format: the manifest, its digests, and the structure check of ``model.txt``.

A model directory holds ``manifest.json``, ``model.txt`` (LightGBM's own text format) and
``reference.npz`` (numpy, loaded with ``allow_pickle=False``). The manifest records the format
version, class name, parameters, feature names, training-data digest, sluice version, metrics
and the sha256 of every file, and ``manifest_digest`` covers the manifest itself (the sha256 of
its canonical JSON without that field: :func:`manifest_digest`), so an edited threshold or class
list is refused like an edited model file. :func:`read_manifest` and :func:`verified_files` check
all of them before anything is parsed, reading no file larger than ``SLUICE_MAX_MODEL_BYTES``
(:data:`~sluice.io.limits.MAX_MODEL_BYTES`); :func:`check_model_text` checks the structure of
``model.txt`` (header, feature count, every tree's arrays and indices, ``end of trees``) before
LightGBM sees it - LightGBM aborts the process on some damage. Every failure is one
:class:`~sluice.errors.ConfigError` naming the directory. The digests catch accidents and edits by
hand; they are not a signature: whoever can write the directory can reseal it
(:func:`seal_manifest`, or ``python -m sluice.detect.modeldir DIR``).

This module knows the format, not the estimator: :mod:`sluice.detect.model` writes and reads
:class:`~sluice.detect.model.FlowModel` through it (``save_model``, ``load_model``).
"""

from __future__ import annotations

__all__ = [
    "BENIGN",
    "MODEL_FILE",
    "MODEL_FORMAT",
    "MODEL_FORMAT_VERSION",
    "REFERENCE_FILE",
    "check_model_text",
    "manifest_digest",
    "read_manifest",
    "seal_manifest",
    "sha256_hex",
    "text_fields",
    "verified_files",
    "write_manifest",
]

import hashlib
import json
import math
from collections.abc import Collection
from pathlib import Path
from typing import Any

from sluice.errors import ConfigError
from sluice.features.flow import FEATURE_NAMES
from sluice.io.limits import MAX_MODEL_BYTES, LimitExceeded, env_limit, read_bounded

MODEL_FORMAT = "sluice-model"
"""``format`` of a model manifest."""
MODEL_FORMAT_VERSION = 1
"""Manifest format version this code reads and writes."""
BENIGN = "benign"
"""The first class of every model: what is not a finding."""
MODEL_FILE = "model.txt"
"""LightGBM's text model, inside the directory."""
REFERENCE_FILE = "reference.npz"
"""The benign training data's reference ranges, inside the directory."""


def sha256_hex(data: bytes) -> str:
    """The hex sha256 the manifest records."""
    return hashlib.sha256(data).hexdigest()


def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON (sorted keys, no spaces), ``manifest_digest`` left out.

    Raises:
        ValueError: the manifest holds what JSON cannot (NaN, infinities).
    """
    rest = {k: v for k, v in manifest.items() if k != "manifest_digest"}
    text = json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return sha256_hex(text.encode())


def write_manifest(directory: Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest.json`` with its ``manifest_digest``; returns its path."""
    manifest = {**manifest, "manifest_digest": manifest_digest(manifest)}
    path = directory / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def seal_manifest(directory: str | Path) -> Path:
    """Add (or renew) ``manifest_digest`` in a model directory's manifest, changing nothing else.

    For manifests written before the digest existed; the files must still match the manifest's
    sha256s (a model is never resealed over a file that changed). ``python -m
    sluice.detect.modeldir DIR`` does the same.

    Returns:
        The manifest's path.

    Raises:
        ConfigError: the manifest is unreadable or a file does not match it.
    """
    path = Path(directory)
    manifest = _parse_manifest(path)
    verified_files(path, manifest)
    return write_manifest(path, manifest)


def _read(directory: Path, name: str) -> bytes:
    limit = env_limit("SLUICE_MAX_MODEL_BYTES", MAX_MODEL_BYTES)
    try:
        with (directory / name).open("rb") as f:
            return read_bounded(f, limit, f"{name} size", "SLUICE_MAX_MODEL_BYTES")
    except LimitExceeded as exc:
        raise ConfigError("model", f"{directory}: {exc}") from None
    except OSError as exc:
        raise ConfigError("model", f"{directory}: cannot read {name}: {exc.strerror or exc}") from None


def _parse_manifest(directory: Path) -> dict[str, Any]:
    raw = _read(directory, "manifest.json")
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError included
        raise ConfigError("model", f"{directory}: manifest.json is not JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise ConfigError("model", f"{directory}: manifest is not an object")
    return manifest


def read_manifest(directory: Path, allowed: Collection[str]) -> dict[str, Any]:
    """The manifest, checked: its digest, format, class (one of ``allowed``), features, classes,
    threshold and params.

    Raises:
        ConfigError: the first problem found.
    """
    manifest = _parse_manifest(directory)
    recorded = manifest.get("manifest_digest")
    try:
        actual = manifest_digest(manifest)
    except ValueError:
        actual = ""
    if not isinstance(recorded, str) or recorded != actual:
        raise ConfigError(
            "model",
            f"{directory}: manifest.json does not match its manifest_digest "
            + (
                "(none recorded: reseal it with sluice.detect.modeldir.seal_manifest)"
                if recorded is None
                else "(edited?)"
            ),
        )
    if manifest.get("format") != MODEL_FORMAT or manifest.get("format_version") != MODEL_FORMAT_VERSION:
        raise ConfigError(
            "model",
            f"{directory}: format {manifest.get('format')!r} v{manifest.get('format_version')!r}, "
            f"this sluice reads {MODEL_FORMAT!r} v{MODEL_FORMAT_VERSION}",
        )
    if manifest.get("class") not in allowed:
        raise ConfigError("model", f"{directory}: class {manifest.get('class')!r} is not allowed")
    if manifest.get("feature_names") != list(FEATURE_NAMES):
        raise ConfigError("model", f"{directory}: feature names differ from this sluice's feature set")
    classes = manifest.get("classes")
    if (
        not isinstance(classes, list)
        or len(classes) < 2
        or classes[0] != BENIGN
        or not all(isinstance(c, str) and c for c in classes)
        or len(set(classes)) != len(classes)
    ):
        raise ConfigError("model", f"{directory}: classes must be a list starting with {BENIGN!r}")
    threshold = manifest.get("threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0.0 < threshold < 1.0:
        raise ConfigError("model", f"{directory}: threshold must be a number in (0, 1), not {threshold!r}")
    if not isinstance(manifest.get("params"), dict):
        raise ConfigError("model", f"{directory}: params must be an object")
    return manifest


def verified_files(directory: Path, manifest: dict[str, Any]) -> dict[str, bytes]:
    """The directory's files (name -> bytes), each matching the manifest's sha256.

    Raises:
        ConfigError: a file is missing, too large or does not match.
    """
    files = manifest.get("files")
    if not isinstance(files, dict) or set(files) != {MODEL_FILE, REFERENCE_FILE}:
        raise ConfigError("model", f"{directory}: manifest must list {MODEL_FILE} and {REFERENCE_FILE}")
    out = {}
    for name, digest in files.items():
        data = _read(directory, name)
        if sha256_hex(data) != digest:
            raise ConfigError("model", f"{directory}: sha256 of {name} does not match the manifest")
        out[name] = data
    if manifest.get("model_digest") != files[MODEL_FILE]:
        raise ConfigError("model", f"{directory}: model_digest is not the sha256 of {MODEL_FILE}")
    return out


_TREE_ARRAYS = ("split_feature", "threshold", "decision_type", "left_child", "right_child")


def check_model_text(text: str, n_classes: int) -> None:
    """Check LightGBM's text model format before LightGBM parses it (it aborts on some damage).

    Checks the header (``tree``, version, class and tree-per-iteration counts, feature count and
    names equal to :data:`FEATURE_NAMES`), that the trees are ``Tree=0..n-1`` in order, a whole
    number of iterations, each where ``tree_sizes`` says, each with arrays of the lengths its
    ``num_leaves`` implies, features and children in range and no categorical splits, and that
    ``end of trees`` follows them.

    Raises:
        ValueError: the first problem found.
    """
    if not text.isascii():
        raise ValueError("not ASCII")
    end = text.find("\nend of trees")
    if not text.startswith("tree\n") or end < 0:
        raise ValueError("no 'tree' header or no 'end of trees'")
    first = text.find("\nTree=")
    if first < 0 or first > end:
        raise ValueError("no trees")
    header = text_fields(text[5:first])
    n_feat = len(FEATURE_NAMES)
    if header.get("num_class") != str(n_classes) or header.get("num_tree_per_iteration") != str(n_classes):
        raise ValueError(f"num_class/num_tree_per_iteration are not {n_classes}")
    if header.get("max_feature_idx") != str(n_feat - 1):
        raise ValueError(f"max_feature_idx is not {n_feat - 1}")
    if header.get("feature_names", "").split(" ") != list(FEATURE_NAMES):
        raise ValueError("feature_names differ from this sluice's")
    blocks = text[first + 1 : end + 1].split("\nTree=")
    blocks[0] = blocks[0].removeprefix("Tree=")
    if len(blocks) % n_classes:
        raise ValueError(f"{len(blocks)} trees is not a whole number of iterations")
    sizes = header.get("tree_sizes")
    if sizes is not None:
        try:
            lengths = [int(x) for x in sizes.split(" ")]
        except ValueError:
            raise ValueError("tree_sizes are not integers") from None
        if len(lengths) != len(blocks):
            raise ValueError(f"tree_sizes lists {len(lengths)} trees, the file has {len(blocks)}")
        pos = first + 1
        for i, n in enumerate(lengths):
            if n <= 0 or not text.startswith(f"Tree={i}\n", pos):
                raise ValueError(f"tree {i} is not where tree_sizes puts it")
            pos += n
        if not text.startswith("end of trees", pos):
            raise ValueError("tree_sizes do not end at 'end of trees'")
    for i, block in enumerate(blocks):
        head, _, body = block.partition("\n")
        if head != str(i):
            raise ValueError(f"tree {i} is numbered {head!r}")
        _check_tree(i, text_fields(body), n_feat)


def text_fields(text: str) -> dict[str, str]:
    """``key=value`` lines of a LightGBM model text block (a header or one tree) as a dict."""
    out = {}
    for line in text.split("\n"):
        key, eq, value = line.partition("=")
        if eq:
            out[key] = value
    return out


def _check_tree(i: int, f: dict[str, str], n_feat: int) -> None:
    try:
        leaves = int(f["num_leaves"])
        if int(f.get("num_cat", "0")) != 0:
            raise ValueError(f"tree {i}: categorical splits are not used by sluice models")
        values = [float(x) for x in f["leaf_value"].split(" ")]
        arrays = {k: f[k].split(" ") for k in _TREE_ARRAYS} if leaves > 1 else {}
        feats = [int(x) for x in arrays.get("split_feature", [])]
        children = [int(x) for k in ("left_child", "right_child") for x in arrays.get(k, [])]
        thresholds = [float(x) for x in arrays.get("threshold", [])]
        kinds = [int(x) for x in arrays.get("decision_type", [])]
    except (KeyError, ValueError) as exc:
        raise ValueError(f"tree {i}: missing or malformed field ({exc})") from None
    if leaves < 1 or len(values) != leaves or not all(math.isfinite(v) for v in values):
        raise ValueError(f"tree {i}: {len(values)} leaf values for {leaves} leaves")
    if any(len(a) != leaves - 1 for a in arrays.values()):
        raise ValueError(f"tree {i}: split arrays are not {leaves - 1} long")
    if any(not 0 <= x < n_feat for x in feats) or any(not -leaves <= c < leaves - 1 for c in children):
        raise ValueError(f"tree {i}: a split feature or child index is out of range")
    if any(math.isnan(t) for t in thresholds) or any(not 0 <= k < 256 for k in kinds):
        raise ValueError(f"tree {i}: a threshold or decision type is invalid")


if __name__ == "__main__":  # python -m sluice.detect.modeldir DIR...: reseal manifests
    import sys

    for arg in sys.argv[1:]:
        print(seal_manifest(arg))
