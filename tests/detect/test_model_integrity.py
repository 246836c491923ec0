"""Model directories are checked before anything is parsed: the manifest by its own digest, the
model text by its structure. Every damage is one ConfigError - from the CLI exit 2 with one line,
never a traceback or a native abort."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sluice.detect.model import DEFAULT_MODEL_DIR, load_model
from sluice.detect.modeldir import manifest_digest, seal_manifest
from sluice.errors import ConfigError

CAPTURE = Path(__file__).resolve().parents[1] / "data" / "pcaps" / "sparse12.pcapng"


def _copy(tmp_path: Path) -> Path:
    d = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, d)
    return d


def _manifest(d: Path) -> dict[str, object]:
    out: dict[str, object] = json.loads((d / "manifest.json").read_text())
    return out


def _rewrite_model(d: Path, edit: Callable[[str], str]) -> None:
    """Edit model.txt and recompute every digest, as someone who knows the format would."""
    text = edit((d / "model.txt").read_text())
    (d / "model.txt").write_text(text)
    m = _manifest(d)
    digest = hashlib.sha256(text.encode()).hexdigest()
    m["model_digest"] = digest
    m["files"] = {**m["files"], "model.txt": digest}  # type: ignore[dict-item]
    (d / "manifest.json").write_text(json.dumps(m))
    seal_manifest(d)


def _threshold(d: Path) -> None:
    m = _manifest(d)
    m["threshold"] = 0.0
    (d / "manifest.json").write_text(json.dumps(m, indent=2, sort_keys=True))


def _truncated(d: Path) -> None:
    text = (d / "model.txt").read_bytes()
    (d / "model.txt").write_bytes(text[: len(text) // 2])


def _truncated_resealed(d: Path) -> None:
    _rewrite_model(d, lambda t: t[: len(t) // 2])


def _truncated_at_end_of_trees(d: Path) -> None:
    _rewrite_model(d, lambda t: t[: t.index("Tree=3000")] + t[t.index("end of trees") :])


def _edit_first(pattern: str, change: Callable[[re.Match[str]], str]) -> Callable[[str], str]:
    """An edit of the first line matching ``pattern`` (whatever model is shipped: no values pinned)."""

    def edit(text: str) -> str:
        m = re.search(pattern, text, flags=re.MULTILINE)
        assert m is not None, pattern
        return text[: m.start()] + change(m) + text[m.end() :]

    return edit


def _features(d: Path) -> None:  # one feature fewer than the columns the model was trained on
    _rewrite_model(d, _edit_first(r"^max_feature_idx=(\d+)$", lambda m: f"max_feature_idx={int(m[1]) - 1}"))


def _split_feature(d: Path) -> None:  # a split on a feature that does not exist
    _rewrite_model(d, _edit_first(r"^split_feature=(\d+) (\d+)", lambda m: f"split_feature={m[1]} 999"))


def _child(d: Path) -> None:  # a child index past the tree's nodes
    _rewrite_model(d, _edit_first(r"^left_child=(-?\d+) ", lambda m: "left_child=60 "))


def _bad_json(d: Path) -> None:
    (d / "manifest.json").write_text('{"format": "sluice-model", ')


def _no_manifest(d: Path) -> None:
    (d / "manifest.json").unlink()


def _no_model(d: Path) -> None:
    (d / "model.txt").unlink()


def _no_digest(d: Path) -> None:
    m = _manifest(d)
    del m["manifest_digest"]
    (d / "manifest.json").write_text(json.dumps(m))


def _reference(d: Path) -> None:
    (d / "reference.npz").write_bytes(b"PK\x03\x04 not a zip")
    m = _manifest(d)
    m["files"]["reference.npz"] = hashlib.sha256((d / "reference.npz").read_bytes()).hexdigest()  # type: ignore[index]
    (d / "manifest.json").write_text(json.dumps(m))
    seal_manifest(d)


def _classes(d: Path) -> None:
    m = _manifest(d)
    m["classes"] = "benign"
    (d / "manifest.json").write_text(json.dumps(m))
    seal_manifest(d)


DAMAGE = {
    "threshold": _threshold,
    "truncated": _truncated,
    "truncated-resealed": _truncated_resealed,
    "trees-cut-resealed": _truncated_at_end_of_trees,
    "feature-count": _features,
    "split-feature": _split_feature,
    "child-index": _child,
    "bad-json": _bad_json,
    "no-manifest": _no_manifest,
    "no-model-txt": _no_model,
    "no-manifest-digest": _no_digest,
    "reference": _reference,
    "classes": _classes,
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_each_damage_is_one_config_error(tmp_path: Path, damage: str) -> None:
    d = _copy(tmp_path)
    DAMAGE[damage](d)
    with pytest.raises(ConfigError, match="model"):
        load_model(d)


@pytest.mark.parametrize(
    "damage", ["threshold", "truncated-resealed", "feature-count", "bad-json", "no-model-txt"]
)
def test_cli_exits_2_without_traceback_or_abort(tmp_path: Path, damage: str) -> None:
    d = _copy(tmp_path)
    DAMAGE[damage](d)
    r = subprocess.run(
        [sys.executable, "-m", "sluice", "analyze", "--model", str(d), str(CAPTURE)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "cannot load the model" in r.stderr and "Traceback" not in r.stderr


def test_shipped_model_is_sealed() -> None:
    m = _manifest(DEFAULT_MODEL_DIR)
    assert m["manifest_digest"] == manifest_digest(m)
    assert m["model_digest"] == hashlib.sha256((DEFAULT_MODEL_DIR / "model.txt").read_bytes()).hexdigest()
    model, manifest = load_model()
    assert model.digest == m["model_digest"] and manifest["threshold"] == model.threshold_


def test_seal_only_adds_the_manifest_digest(tmp_path: Path) -> None:
    """How the shipped manifest was resealed: the digest field added, nothing else changed."""
    d = _copy(tmp_path)
    _no_digest(d)
    before = _manifest(d)
    with pytest.raises(ConfigError, match="manifest_digest"):
        load_model(d)
    seal_manifest(d)
    after = _manifest(d)
    assert {k: v for k, v in after.items() if k != "manifest_digest"} == before
    assert after["model_digest"] == before["model_digest"]
    load_model(d)


def test_seal_refuses_files_that_do_not_match(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    _truncated(d)
    with pytest.raises(ConfigError, match="sha256"):
        seal_manifest(d)


def test_model_file_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_MAX_MODEL_BYTES", "100000")
    with pytest.raises(ConfigError, match="SLUICE_MAX_MODEL_BYTES"):
        load_model(_copy(tmp_path))
