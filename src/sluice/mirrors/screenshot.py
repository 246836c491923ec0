"""Screenshots with Debian's headless Chromium and their perceptual hash (the design trait).

The hash is the DCT pHash: the image in grey, 32x32, its 2-D DCT, the 8x8 lowest frequencies
(without the DC term's influence on the median) compared with their median: 64 bits.  Two
renderings of one design differ in a few bits; distance = Hamming distance.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt
from PIL import Image

__all__ = ["CHROMIUM", "page_phash", "phash", "phash_distance", "screenshot"]

CHROMIUM = "/usr/bin/chromium"
"""Debian's Chromium (Playwright cannot download browsers here)."""
SCREENSHOT_TIMEOUT_S = 60.0
"""Longest a screenshot may take (a loaded 2-core machine starts Chromium slowly)."""


def _dct_matrix(n: int) -> npt.NDArray[np.float64]:
    k = np.arange(n)
    m = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n)) * np.sqrt(2 / n)
    m[0] /= np.sqrt(2)
    return np.asarray(m, dtype=np.float64)


_D32 = _dct_matrix(32)


def phash(image: Image.Image | Path | str) -> int:
    """64-bit DCT perceptual hash of an image."""
    img = image if isinstance(image, Image.Image) else Image.open(image)
    g = np.asarray(img.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    low = (_D32 @ g @ _D32.T)[:8, :8].flatten()
    med = float(np.median(low[1:]))
    return sum(1 << i for i, v in enumerate(low) if v > med)


def phash_distance(a: int, b: int) -> int:
    """Hamming distance of two hashes (0-64)."""
    return bin(a ^ b).count("1")


def screenshot(
    url: str,
    out: Path,
    *,
    width: int = 1280,
    height: int = 900,
    chromium: str = CHROMIUM,
    extra_args: Sequence[str] = (),
) -> Path:
    """Render ``url`` with headless Chromium into a PNG.

    Args:
        url: the page.
        out: the PNG to write.
        width: window width.
        height: window height.
        chromium: the browser binary.
        extra_args: more Chromium switches.

    Returns:
        ``out``.

    Raises:
        OSError: Chromium is missing, failed or wrote no image.
    """
    if not shutil.which(chromium):
        raise OSError(f"{chromium} not found (Debian package chromium)")
    with tempfile.TemporaryDirectory(prefix="sluice-chromium-") as prof:
        cmd = [
            chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--no-first-run", "--disable-extensions", "--mute-audio", f"--user-data-dir={prof}",
            f"--window-size={width},{height}", f"--screenshot={out}", "--virtual-time-budget=3000",
            *extra_args, url,
        ]  # fmt: skip
        try:
            subprocess.run(cmd, capture_output=True, timeout=SCREENSHOT_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as exc:
            raise OSError(f"chromium took more than {SCREENSHOT_TIMEOUT_S} s") from exc
    if not out.exists() or out.stat().st_size == 0:
        raise OSError(f"chromium wrote no screenshot of {url}")
    return out


def page_phash(url: str, address: str, *, chromium: str = CHROMIUM) -> int:
    """pHash of ``url`` as headless Chromium renders it, reaching only the page's own host at
    ``address`` (the one the fetcher resolved and checked: private ranges stay refused unless
    the fetcher allowed them); every other host resolves nowhere, so a page cannot make the
    browser fetch from elsewhere.

    Raises:
        OSError: no host or address, or Chromium failed.
    """
    host = urlsplit(url).hostname or ""
    if not host or not address:
        raise OSError(f"no host or address to render {url}")
    target = f"[{address}]" if ":" in address else address
    rules = f"--host-resolver-rules=MAP {host} {target},MAP * ~NOTFOUND"
    with tempfile.TemporaryDirectory(prefix="sluice-shot-") as d:
        return phash(screenshot(url, Path(d) / "page.png", chromium=chromium, extra_args=[rules]))
