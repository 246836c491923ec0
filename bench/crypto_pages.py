"""Labelled texts for ``sluice crypto scan``: build the manifest once, evaluate the scorer on it.

``python bench/crypto_pages.py build`` wrote ``bench/crypto_pages.tsv`` (the manifest: ids,
locators, labels, hashes — no text) on 2026-12-07 from Debian bookworm; ``python
bench/crypto_pages.py eval [--split test|train|all] [--json OUT]`` fetches every text with apt
(``apt-get update`` into a private lists directory for the descriptions, ``apt-get download`` for
files of packages not installed at the manifest's version; cache ``~/.cache/sluice/crypto-pages``),
checks its sha256, scores it with :func:`sluice.crypto.scan.score_text` and prints precision,
recall and false-positive rate with Wilson 95 % intervals, per source and overall, with and
without the rows the labeller marked borderline; ``compare`` puts two naive Bayes models fitted on
``train`` beside the lexical scorer on ``test``. Run as root (apt's download sandbox).

Sources and label rules (fixed before any text was scored):

* ``deb-desc-en``: English descriptions (``Translation-en``, unique ``Description-md5``) of
  (a) every package whose name or description matches :data:`POOL_RE` — words that crypto texts
  and their look-alikes share (coin, wallet, ledger, mining, trading, …); (b) a seeded sample
  of 125 matching :data:`HARD_RE` (cryptography, finance, currency, tokens, hashes); (c) a seeded
  sample of 300 of the rest. Each was read and labelled ``crypto`` when the text's subject or
  declared purpose is a cryptocurrency, wallet, miner, exchange or blockchain
  (:data:`CRYPTO_PACKAGES`); arguable calls are flagged (:data:`BORDERLINE`).
* ``deb-desc-ru``: the Russian translation (``Translation-ru``) of every package of
  ``deb-desc-en`` that has one (same label), and a seeded sample of 300 other Russian translations
  (``other``; each checked for crypto content by reading).
* ``po-ru`` / ``po-en``: gettext catalogues cut into chunks of ≥ 1,500 characters: Electrum's
  Russian ``.po`` (msgstr = Russian, msgid = English; label ``crypto``: a Bitcoin wallet's
  interface) against the Russian ``.mo`` catalogues installed under ``/usr/share/locale/ru`` here
  (``other``; at most 12 seeded chunks per catalogue).
* ``doc``: documentation files of Litecoin Core (``litecoind``) and Monero (``monero``),
  label ``crypto``, against one README/NEWS file (≥ 1 kB) of each of a seeded sample of 200 other
  packages with docs installed here (``other``; read, and ``librandomx0`` relabelled ``crypto``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import random
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from sluice.crypto.pageset import (
    LabelledText,
    chunk_entries,
    confusion,
    parse_po,
    parse_translations,
    read_manifest,
    read_mo,
    split_of,
    text_sha256,
    write_manifest,
)
from sluice.crypto.scan import THRESHOLD, score_text

MANIFEST = Path(__file__).resolve().parent / "crypto_pages.tsv"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sluice" / "crypto-pages"
SEED = 17
POOL_RE = re.compile(
    r"coin|wallet|blockchain|crypto.?currenc|satoshi|hashrate|stratum|ethereum|monero|electrum|dogecoin"
    r"|ripple|\bbtc\b|\bnano\b|mining|miner\b|miners\b|ledger|\btrading\b|\bexchanges?\b.*\b(currenc|market)",
    re.I,
)
HARD_RE = re.compile(r"cryptograph|encrypt|\bcrypto\b|financ|stock|currenc|\btokens?\b|\bhash", re.I)
CRYPTO_PACKAGES = frozenset(
    [
        "python3-bip32utils",
        "python3-electrum",
        "electrum",
        "python3-trezor",
        "trezor",
        "litecoind",
        "litecoin-qt",
        "libcava-java",
        "bruteforce-wallet",
        "libsecp256k1-1",
        "libsecp256k1-dev",
        "python3-duniterpy",
        "python-duniterpy-doc",
        "silkaj",
        "monero",
        "monero-tests",
        "golang-github-btcsuite-btcd-btcec-dev",
        "python3-rlp",
        "python-rlp-doc",
        "base58",
        "python3-base58",
        "python3-bitcoinlib",
        "python3-pyethash",
        "python3-opentimestamps",
        "sia",
        "python3-btchip",
        "ledger-wallets-udev",
        "python3-mnemonic",
    ]
)
"""Packages whose description was labelled ``crypto`` (by reading; the rest of the selection is ``other``)."""
BORDERLINE = frozenset(
    [
        "libsecp256k1-1",
        "libsecp256k1-dev",
        "base58",
        "python3-base58",
        "libencode-base58-perl",
        "fonts-sora",
        "node-trust-keyto",
        "python3-rlp",
        "python-rlp-doc",
        "golang-github-btcsuite-btcd-btcec-dev",
        "sia",
        "python3-opentimestamps",
        "libcava-java",
        "libstorj0",
    ]
)
"""Descriptions whose label is arguable (a general tool for a crypto format; a font named after one)."""
DOC_CRYPTO = ("litecoind", "monero")
DOC_RELABEL = {"librandomx0": "crypto"}
"""Drawn as ``other`` by the doc sample, read and relabelled (RandomX: Monero's proof of work, "mining")."""
ELECTRUM_PO = ("python3-electrum", "/usr/lib/python3/dist-packages/electrum/locale/ru_RU/electrum.po")
MAX_CHUNKS = 12
LISTS_MARK = "dists_bookworm_main_i18n_Translation-"


# ---------------------------------------------------------------- fetching (apt, the ordinary client)
def _run(cmd: list[str], cwd: Path | None = None) -> str:
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout


def translation_files(cache: Path) -> dict[str, Path]:
    """Debian bookworm main's Translation-en and -ru, fetched by apt into a private lists directory."""
    lists = cache / "lists"
    (lists / "partial").mkdir(parents=True, exist_ok=True)
    found = {lang: sorted(lists.glob(f"*{LISTS_MARK}{lang}*")) for lang in ("en", "ru")}
    if not all(found.values()):
        if os.geteuid() == 0:
            _run(["chown", "-R", "_apt", str(lists)])
        _run(["apt-get", "update", "-o", f"Dir::State::Lists={lists}", "-o", "Acquire::Languages=en,ru"])
        found = {lang: sorted(lists.glob(f"*{LISTS_MARK}{lang}*")) for lang in ("en", "ru")}
    out = {}
    for lang, paths in found.items():
        if not paths:
            raise SystemExit(f"apt fetched no Translation-{lang}")
        plain = cache / f"Translation-{lang}"
        if not plain.exists():
            p = paths[0]
            raw = _run(["lz4", "-dc", str(p)]) if p.suffix == ".lz4" else p.read_text(encoding="utf-8")
            plain.write_text(raw, encoding="utf-8")
        out[lang] = plain
    return out


def installed_version(pkg: str) -> str:
    """The installed version of ``pkg`` ('' when not installed)."""
    try:
        status, _, version = _run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}|${Version}", pkg]).partition(
            "|"
        )
    except subprocess.CalledProcessError:
        return ""
    return version if status.startswith("ii") else ""


def member_bytes(pkg: str, version: str, member: str, cache: Path) -> bytes:
    """A file of a package at a version: from the installed system when it matches, else apt-get download."""
    if installed_version(pkg) == version and Path(member).is_file():
        return Path(member).read_bytes()
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    deb = next(iter(debs.glob(f"{pkg}_{version.split(':')[-1]}_*.deb")), None)
    if deb is None:
        _run(["apt-get", "download", f"{pkg}={version}"], cwd=debs)
        deb = next(iter(debs.glob(f"{pkg}_{version.split(':')[-1]}_*.deb")))
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], check=True, capture_output=True).stdout
    return subprocess.run(["tar", "-xO", "." + member], input=tar, check=True, capture_output=True).stdout


def _decode_member(member: str, data: bytes) -> bytes:
    return gzip.decompress(data) if member.endswith(".gz") else data


def catalogue_strings(member: str, data: bytes, lang: str) -> list[str]:
    """The msgstr (``ru``) or msgid (``en``) strings of a .po/.mo catalogue, in a fixed order."""
    pairs = parse_po(data.decode("utf-8", errors="replace")) if member.endswith(".po") else read_mo(data)
    return [s if lang == "ru" else i for i, s in pairs]


def fetch_text(
    row: LabelledText, cache: Path, translations: dict[str, dict[str, tuple[str, str]]]
) -> str | None:
    """The text a manifest row points to (None: no longer there)."""
    parts = row.locator.split("|")
    if row.source.startswith("deb-desc-"):
        got = translations[row.source[-2:]].get(parts[0])
        return got[1] if got and got[0] == parts[1] else None
    pkg, version, member = parts[:3]
    try:
        data = _decode_member(member, member_bytes(pkg, version, member, cache))
    except (subprocess.CalledProcessError, StopIteration, OSError):
        return None
    if row.source == "doc":
        return data.decode("utf-8", errors="replace")
    chunks = chunk_entries(catalogue_strings(member, data, row.source[-2:]))
    idx = int(parts[3])
    return chunks[idx] if idx < len(chunks) else None


# ---------------------------------------------------------------- building the manifest (done once)
def _row(source: str, locator: str, label: str, text: str, borderline: bool = False) -> LabelledText:
    item_id = f"{source}:{locator}"
    return LabelledText(item_id, source, locator, label, borderline, split_of(item_id), text_sha256(text))


def _dpkg_owner(path: str) -> str:
    return _run(["dpkg", "-S", path]).split(":", 1)[0].split(",")[0].strip()


def build(cache: Path) -> list[LabelledText]:
    rnd = random.Random(SEED)
    files = translation_files(cache)
    en = parse_translations(files["en"].read_text(encoding="utf-8"))
    ru = parse_translations(files["ru"].read_text(encoding="utf-8"))
    first: dict[str, str] = {}
    for pkg in sorted(en):
        first.setdefault(en[pkg][0], pkg)
    unique = sorted(first.values())
    pool = [p for p in unique if POOL_RE.search(p + " " + en[p][1])]
    rest = [p for p in unique if p not in set(pool)]
    hard = [p for p in rest if HARD_RE.search(p + " " + en[p][1])]
    chosen = pool + sorted(rnd.sample(hard, 125))
    chosen += sorted(rnd.sample([p for p in rest if p not in set(hard)], 300))
    rows = []
    for p in chosen:
        label = "crypto" if p in CRYPTO_PACKAGES else "other"
        rows.append(_row("deb-desc-en", f"{p}|{en[p][0]}", label, en[p][1], p in BORDERLINE))
        if p in ru:
            rows.append(_row("deb-desc-ru", f"{p}|{ru[p][0]}", label, ru[p][1], p in BORDERLINE))
    ru_rest = sorted(p for p in ru if p not in set(chosen))
    rows += [_row("deb-desc-ru", f"{p}|{ru[p][0]}", "other", ru[p][1]) for p in rnd.sample(ru_rest, 300)]

    catalogues = [ELECTRUM_PO]
    for mo in sorted(Path("/usr/share/locale/ru/LC_MESSAGES").glob("*.mo")):
        catalogues.append((_dpkg_owner(str(mo)), str(mo)))
    for pkg, member in catalogues:
        version = installed_version(pkg)
        data = Path(member).read_bytes()
        for lang in ("ru", "en"):
            chunks = chunk_entries(catalogue_strings(member, data, lang))
            idxs = (
                range(len(chunks))
                if pkg == ELECTRUM_PO[0]
                else sorted(rnd.sample(range(len(chunks)), min(MAX_CHUNKS, len(chunks))))
            )
            label = "crypto" if pkg == ELECTRUM_PO[0] else "other"
            rows += [_row(f"po-{lang}", f"{pkg}|{version}|{member}|{i}", label, chunks[i]) for i in idxs]

    docs = defaultdict(list)
    for d in sorted(Path("/usr/share/doc").iterdir()):
        if not d.is_dir() or d.is_symlink():
            continue
        for f in sorted(d.rglob("*")):
            if f.is_file() and not f.is_symlink() and f.stat().st_size >= 1024:
                docs[d.name].append(f)
    for pkg in DOC_CRYPTO:
        version = installed_version(pkg)
        for f in docs[pkg]:
            if re.search(r"README|release-notes|\.md|PROTOCOL|NETWORKS", f.name) and not f.name.endswith(
                ".html"
            ):
                text = _decode_member(f.name, f.read_bytes()).decode("utf-8", errors="replace")
                rows.append(_row("doc", f"{pkg}|{version}|{f}", "crypto", text))
    readme = re.compile(r"^(README|NEWS)(\.md|\.txt|\.rst)?(\.gz)?$", re.I)
    candidates = []
    for pkg, fs in sorted(docs.items()):
        if pkg in DOC_CRYPTO or pkg.startswith(("litecoin", "monero", "electrum", "python3-electrum")):
            continue
        pick = next((f for f in fs if readme.match(f.name) and f.parent.name == pkg), None)
        if pick is not None and installed_version(pkg):
            candidates.append((pkg, pick))
    for pkg, f in sorted(rnd.sample(candidates, min(200, len(candidates)))):
        text = _decode_member(f.name, f.read_bytes()).decode("utf-8", errors="replace")
        label = DOC_RELABEL.get(pkg, "other")
        rows.append(_row("doc", f"{pkg}|{installed_version(pkg)}|{f}", label, text, pkg in DOC_RELABEL))
    return rows


# ---------------------------------------------------------------- evaluating
def _fmt(t: tuple[float, float, float]) -> str:
    return f"{t[0]:.3f} [{t[1]:.3f}, {t[2]:.3f}]"


def evaluate(rows: list[LabelledText], cache: Path, split: str) -> dict[str, object]:
    files = translation_files(cache)
    translations = {lang: parse_translations(p.read_text(encoding="utf-8")) for lang, p in files.items()}
    scored: list[tuple[LabelledText, float]] = []
    missing = changed = 0
    for row in rows:
        if split != "all" and row.split != split:
            continue
        text = fetch_text(row, cache, translations)
        if text is None:
            missing += 1
            continue
        if text_sha256(text) != row.sha256:
            changed += 1
            continue
        scored.append((row, score_text(text).score))
    report: dict[str, object] = {
        "split": split,
        "threshold": THRESHOLD,
        "missing": missing,
        "changed": changed,
    }
    groups: dict[str, list[tuple[LabelledText, float]]] = defaultdict(list)
    for row, s in scored:
        groups[row.source].append((row, s))
        groups["all"].append((row, s))
    for name, items in sorted(groups.items()):
        for strict in (False, True):
            use = [(r, s) for r, s in items if not (strict and r.borderline)]
            c = confusion([r.label for r, _ in use], [s >= THRESHOLD for _, s in use])
            key = name + (" (no borderline)" if strict else "")
            report[key] = {"n": len(use), "tp": c.tp, "fp": c.fp, "fn": c.fn, "tn": c.tn,
                           "precision": c.precision, "recall": c.recall, "fpr": c.fpr}  # fmt: skip
            print(
                f"{key:32} n={len(use):4} crypto={c.tp + c.fn:3}  tp={c.tp:3} fp={c.fp:3} fn={c.fn:3}"
                f" tn={c.tn:4}"
                f"  precision {_fmt(c.precision)}  recall {_fmt(c.recall)}  fpr {_fmt(c.fpr)}"
            )
    print(f"missing {missing}, changed {changed}")
    report["scores"] = {r.id: s for r, s in scored}
    report["errors"] = [
        {"id": r.id, "label": r.label, "score": s}
        for r, s in sorted(scored, key=lambda rs: rs[0].id)
        if (s >= THRESHOLD) != (r.label == "crypto")
    ]
    return report


_WORD = re.compile(r"\w{2,}")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def compare_model(rows: list[LabelledText], cache: Path) -> dict[str, object]:
    """Learned comparisons beside the lexical scorer: naive Bayes (Bernoulli, and multinomial over the
    words present) fitted on ``train``, judged on ``test`` (decision at posterior odds 1; nothing
    saved). The Bernoulli model was run first; the multinomial one after seeing its result."""
    files = translation_files(cache)
    translations = {lang: parse_translations(p.read_text(encoding="utf-8")) for lang, p in files.items()}
    docs: dict[str, list[tuple[LabelledText, set[str], float]]] = {"train": [], "test": []}
    for row in rows:
        text = fetch_text(row, cache, translations)
        if text is not None and text_sha256(text) == row.sha256:
            docs[row.split].append((row, _words(text), score_text(text).score))
    counts = {"crypto": defaultdict(int), "other": defaultdict(int)}  # type: dict[str, defaultdict[str, int]]
    n = {"crypto": 0, "other": 0}
    for row, words, _ in docs["train"]:
        n[row.label] += 1
        for w in words:
            counts[row.label][w] += 1
    vocab = sorted(set(counts["crypto"]) | set(counts["other"]))
    prior = math.log(n["crypto"] / n["other"])
    # Bernoulli: every vocabulary word, present or absent, counts
    bern = {lab: {w: ((counts[lab][w] + 1) / (n[lab] + 2)) for w in vocab} for lab in n}
    absent = {lab: sum(math.log(1 - q) for q in bern[lab].values()) for lab in n}
    # multinomial over the words present (each once): only what the text holds counts
    tot = {lab: sum(counts[lab].values()) + len(vocab) for lab in n}
    multi = {
        w: math.log((counts["crypto"][w] + 1) / tot["crypto"])
        - math.log((counts["other"][w] + 1) / tot["other"])
        for w in vocab
    }

    def odds(words: set[str]) -> float:
        total = prior + absent["crypto"] - absent["other"]
        for w in words & bern["crypto"].keys():
            c, o = bern["crypto"][w], bern["other"][w]
            total += math.log(c / (1 - c)) - math.log(o / (1 - o))
        return total

    def odds_multi(words: set[str]) -> float:
        return prior + sum(multi.get(w, 0.0) for w in words)

    report: dict[str, object] = {"train": n, "vocabulary": len(vocab)}
    for name, calls in (
        ("lexical", [s >= THRESHOLD for _, _, s in docs["test"]]),
        ("nb-bernoulli", [odds(w) > 0 for _, w, _ in docs["test"]]),
        ("nb-multinom", [odds_multi(w) > 0 for _, w, _ in docs["test"]]),
    ):
        for src in ("all", *sorted({r.source for r, _, _ in docs["test"]})):
            use = [
                (r, c) for (r, _, _), c in zip(docs["test"], calls, strict=True) if src in ("all", r.source)
            ]
            c = confusion([r.label for r, _ in use], [x for _, x in use])
            report[f"{name} {src}"] = {"tp": c.tp, "fp": c.fp, "fn": c.fn, "tn": c.tn,
                                      "precision": c.precision, "recall": c.recall}  # fmt: skip
            print(f"{name:12} {src:12} n={len(use):4} tp={c.tp:3} fp={c.fp:3} fn={c.fn:3}"
                  f"  precision {_fmt(c.precision)}  recall {_fmt(c.recall)}")  # fmt: skip
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("command", choices=("build", "eval", "compare"))
    ap.add_argument("--split", choices=("test", "train", "all"), default="test")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=CACHE)
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.command == "build":
        n = write_manifest(build(args.cache), MANIFEST)
        print(f"{MANIFEST}: {n} rows")
        return
    if args.command == "compare":
        report = compare_model(read_manifest(MANIFEST), args.cache)
    else:
        report = evaluate(read_manifest(MANIFEST), args.cache, args.split)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, ensure_ascii=False))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
