"""Benchmark: wallet-address extraction, MB/s of text on one core, against a plain regex pass.

    python bench/bench_crypto_addresses.py [--mb 32] [--seed 0] [--repeat 3]

Builds a text of mixed content — English and Russian prose, HTML, hex digests, base64 blobs,
UUIDs, and one valid address of a random chain every ~2 KB (from :mod:`sluice.crypto.synth`) —
then times, best of ``--repeat`` runs, on the same bytes:

- ``plain regex``: one ``re.finditer`` of the candidate token pattern ``[0-9A-Za-z+/=_:-]{25,}``
  over the bytes, counting matches and validating nothing: the floor a regex extractor pays;
- ``sluice bytes``: :func:`sluice.crypto.addresses.find_addresses` on the bytes (what files and
  payloads get), every candidate decoded and its checksum verified;
- ``sluice str``: the same on the decoded text (it is re-encoded to UTF-8 first).

Machines here are shared and noisy: read the ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import platform
import random
import re
import time
import uuid

from sluice.crypto.addresses import find_addresses
from sluice.crypto.synth import SYNTH_CHAINS, random_address, text_with

_PROSE = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "for",
    "that",
    "on",
    "with",
    "as",
    "by",
    "this",
    "are",
    "from",
    "page",
    "news",
    "market",
    "price",
    "report",
    "купить",
    "продать",
    "новости",
    "рынок",
    "цена",
    "отчёт",
    "страница",
    "<div",
    'class="row">',
    "</div>",
    "<a",
    'href="/x">',
]


def make_text(mb: float, seed: int) -> tuple[bytes, int]:
    """(UTF-8 text of about ``mb`` megabytes, number of addresses planted)."""
    rnd = random.Random(seed)
    parts: list[str] = []
    size = planted = 0
    while size < mb * 1e6:
        r = rnd.random()
        if r < 0.02:
            s = hashlib.sha256(rnd.randbytes(8)).hexdigest()
        elif r < 0.03:
            s = base64.b64encode(rnd.randbytes(rnd.randrange(16, 300))).decode()
        elif r < 0.035:
            s = str(uuid.UUID(int=rnd.getrandbits(128)))
        elif r < 0.045:
            chain = rnd.choice(SYNTH_CHAINS)
            s = text_with(random_address(chain, rnd), chain, rnd)
            planted += 1
        else:
            s = " ".join(rnd.choice(_PROSE) for _ in range(12))
        parts.append(s)
        size += len(s.encode()) + 1
    return " ".join(parts).encode(), planted


def best_of(fn: object, repeat: int) -> tuple[float, int]:
    best = float("inf")
    n = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        n = fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - t0)
    return best, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    data, planted = make_text(args.mb, args.seed)
    text = data.decode()
    pattern = re.compile(rb"[0-9A-Za-z+/=_:-]{25,}")
    mb = len(data) / 1e6
    rows = [
        ("plain regex (candidates only)", lambda: sum(1 for _ in pattern.finditer(data))),
        ("sluice find_addresses(bytes)", lambda: len(find_addresses(data))),
        ("sluice find_addresses(str)", lambda: len(find_addresses(text))),
    ]
    print(f"{platform.python_implementation()} {platform.python_version()}, {mb:.1f} MB, {planted} planted")
    print("| what | seconds | MB/s | found |")
    print("|---|---|---|---|")
    for name, fn in rows:
        dt, n = best_of(fn, args.repeat)
        print(f"| {name} | {dt:.3f} | {mb / dt:.1f} | {n} |")


if __name__ == "__main__":
    main()
