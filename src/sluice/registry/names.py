"""Canonical forms of indicators: host names, masks, URLs, IP addresses and networks.

Theory of operation
-------------------
Every indicator is stored and matched in one ASCII form so that the register, the matcher and the
exports agree on what a name is:

* host names: surrounding white space and one trailing dot removed, lower case, each non-ASCII
  label converted with IDNA 2008 (RFC 5891 section 4) after the UTS #46 mapping, non-transitional
  (the ``idna`` package: ``idna.encode(label, uts46=True, transitional=False)``, what browsers and
  libidn2 do); labels of 1-63 characters from ``[a-z0-9_-]`` (the underscore is not a hostname
  character, but real registers list such names and DNS carries them), at most 253 characters
  in all.  :func:`display_host` gives the Unicode form back (IDNA 2008 U-label per ``xn--``
  label; a label that does not decode is shown as it is stored).

  What changed from IDNA 2003 (Python's ``encodings.idna``, used until issue 18): the deviation
  characters are kept, not mapped - ``faß.de`` is ``xn--fa-hia.de`` (was ``fass.de``), final
  sigma ``ς`` is ``xn--3xa`` (was ``σ``'s ``xn--4xa``), ZWJ/ZWNJ are kept where the CONTEXTJ
  rules allow them and refused elsewhere (were dropped); code points IDNA 2008 disallows
  (symbols such as ``☃``), labels that break the Bidi rule (``testא``: left-to-right and
  right-to-left letters in one label) and labels with ``-`` first, last or in positions 3-4 are
  refused (``name.bad_idna``).  Every other name - ASCII names and the Cyrillic, Latin and other
  letters of real registers - gives the same A-label as before, so stored names compare the
  same; an entry stored from a deviation name under IDNA 2003 (``fass.de``) keeps matching that
  ASCII name, and its source's next import replaces it with the IDNA 2008 form (a sync).
  Mixed scripts in one label (Latin ``a`` among Cyrillic letters) are valid IDNA 2008 and are
  kept: registers list such names as they are, and UTS #39 confusable checks are a policy
  question, not a canonical form.
* masks: ``*.`` followed by a canonical host name.
* URLs: scheme and host lower case, host canonical, default port dropped, fragment dropped, empty
  path written ``/``, characters outside printable ASCII percent-encoded as UTF-8 (what a client
  sends on the wire); everything else, including query strings, kept byte for byte.
* IP addresses: Python's ``ipaddress`` text form (IPv6 compressed, RFC 5952).  A network of one
  address (``/32``, ``/128``) is the address itself; host bits of a network are cleared.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import re
import socket
import sys
from typing import TYPE_CHECKING
from urllib.parse import quote

import idna

from sluice.registry.model import Kind

if TYPE_CHECKING:
    from publicsuffixlist import PublicSuffixList

__all__ = [
    "BadIndicator",
    "canon_host",
    "canon_ip",
    "canon_mask",
    "canon_url",
    "display_host",
    "split_url",
]

MAX_NAME_LEN = 253
"""Longest host name in characters (RFC 1035 section 2.3.4, without the final dot)."""
MAX_URL_LEN = 8192
"""Longest URL accepted."""

_ASCII_NAME = re.compile(r"[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*")
URL_PARTS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]{0,30})://([^/?#]*)(.*)", re.DOTALL)
"""``scheme://host[:port]`` then the rest: the parts of a URL (:func:`split_url`)."""
_HEX_COLON = re.compile(r"[0-9A-Fa-f:]{2,39}")
_DEFAULT_PORT = {"http": "80", "https": "443"}
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~"


class BadIndicator(ValueError):
    """Text that is not a valid indicator; ``reason`` is a short dotted code."""

    def __init__(self, reason: str, text: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {text[:80]!r}")


_SIMPLE_LABEL = re.compile(r"[a-zA-Z0-9\-\u0430-\u044f\u0451\u0410-\u042f\u0401]+")
"""Labels whose IDNA nameprep is plain lower-casing (ASCII and basic Cyrillic letters)."""
_UNICODE_OF: dict[str, str] = {}
"""ACE label -> its Unicode form, for labels converted by the fast path (bounded)."""


STDLIB_PUNYCODE_LABELS = 256
"""Labels a process converts with the standard library's Punycode codec before it loads the
compiled one (unless numba is loaded already): a command that converts a few names (``registry
check``) does not wait ~0.8 s for numba, an import of a register does, once (~3 us a label
instead of ~30)."""
_stdlib_punycode_left = STDLIB_PUNYCODE_LABELS


def _punycode(text: str) -> str:
    """RFC 3492 Punycode encoding: the standard library's for the first few labels of a process,
    then :func:`_punycode_compiled` (the same output)."""
    global _stdlib_punycode_left
    if _stdlib_punycode_left > 0 and "numba" not in sys.modules:
        _stdlib_punycode_left -= 1
        return text.encode("punycode").decode("ascii")
    return _punycode_compiled(text)


def _punycode_compiled(text: str) -> str:
    """RFC 3492 Punycode encoding (same output as ``str.encode("punycode")``, compiled)."""
    import numpy as np

    from sluice.registry._puny import punycode_kernel

    cps = np.frombuffer(text.encode("utf-32-le"), np.uint32)
    out = np.empty(8 * len(text) + 16, np.uint8)
    return out[: punycode_kernel(cps, out)].tobytes().decode("ascii")


@functools.lru_cache(maxsize=65536)
def _to_ascii(label: str) -> str:
    """IDNA 2008 (UTS #46 mapping, non-transitional) A-label of one label (cached; the ``idna``
    package is pure Python, ~80 us a label).

    Labels of ASCII and basic Cyrillic letters, digits and hyphens (nearly every label of the
    Russian registers) take a fast path with the same result: their UTS #46 mapping is
    lower-casing, every such letter is PVALID and no Bidi rule applies; the hyphen rules are
    checked here as ``idna`` checks them.

    Raises:
        UnicodeError: the label is not valid IDNA 2008 (``idna.IDNAError`` is one).
    """
    if _SIMPLE_LABEL.fullmatch(label) is None:
        return idna.encode(label, uts46=True, transitional=False).decode("ascii")
    prepped = label.lower()
    if prepped.isascii():
        ace = prepped
    elif prepped.startswith("xn--"):
        raise UnicodeError("Label starts with ACE prefix")
    elif prepped[:1] == "-" or prepped[-1:] == "-" or prepped[2:4] == "--":
        raise UnicodeError("Label has a hyphen first, last or in the 3rd and 4th position")
    else:
        ace = "xn--" + _punycode(prepped)
    if not 0 < len(ace) < 64:
        raise UnicodeError("label empty or too long")
    if ace is not prepped:
        if len(_UNICODE_OF) >= 1 << 17:
            _UNICODE_OF.clear()
        _UNICODE_OF[ace] = prepped
    return ace


@functools.lru_cache(maxsize=65536)
def _to_unicode(label: str) -> str:
    """The IDNA 2008 U-label of an A-label (raises ``UnicodeError`` when it is not valid)."""
    return idna.decode(label)


def canon_host(text: str) -> str:
    """Canonical ASCII form of a host name.

    Args:
        text: a name as a source or a packet gives it (any case, Unicode or punycode, with or
            without the trailing dot).

    Returns:
        The lower-case ASCII (punycode) name without trailing dot.

    Raises:
        BadIndicator: ``name.empty``, ``name.too_long``, ``name.bad_label`` or ``name.bad_idna``.
    """
    name = text.strip()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise BadIndicator("name.empty", text)
    if len(name) > MAX_NAME_LEN * 4:
        raise BadIndicator("name.too_long", text)
    if name.isascii():
        name = name.lower()
    else:
        try:
            name = ".".join(lab.lower() if lab.isascii() else _to_ascii(lab) for lab in name.split("."))
        except (UnicodeError, ValueError) as exc:
            raise BadIndicator("name.bad_idna", text) from exc
    if len(name) > MAX_NAME_LEN:
        raise BadIndicator("name.too_long", text)
    if _ASCII_NAME.fullmatch(name) is None:
        raise BadIndicator("name.bad_label", text)
    return name


def canon_mask(text: str) -> str:
    """Canonical form of a domain mask: ``*.`` plus a canonical host name.

    Args:
        text: ``*.example.com`` (the ``*.`` is required).

    Returns:
        ``*.example.com`` in canonical form.

    Raises:
        BadIndicator: ``name.bad_mask`` or any :func:`canon_host` reason.
    """
    t = text.strip()
    if not t.startswith("*."):
        raise BadIndicator("name.bad_mask", text)
    return "*." + canon_host(t[2:])


def display_host(name: str) -> str:
    """Unicode form of a canonical host name or mask (labels ``xn--`` decoded).

    Args:
        name: canonical ASCII name.

    Returns:
        The Unicode form, or ``name`` itself when no label decodes.
    """
    if "xn--" not in name:
        return name
    out = []
    for lab in name.split("."):
        if lab.startswith("xn--"):
            with contextlib.suppress(UnicodeError, ValueError):
                lab = _UNICODE_OF.get(lab) or _to_unicode(lab)
        out.append(lab)
    return ".".join(out)


def canon_ip(text: str) -> tuple[Kind, str]:
    """Canonical form of an IP address or network.

    Args:
        text: ``1.2.3.4``, ``2001:db8::1``, ``10.0.0.0/8``, ``2001:db8::/32`` (full or
            compressed IPv6; host bits of a network are cleared).

    Returns:
        ``(Kind.IP, "1.2.3.4")`` or ``(Kind.SUBNET, "10.0.0.0/8")``.

    Raises:
        BadIndicator: ``ip.bad_address``.
    """
    t = text.strip()
    try:
        if "/" in t:
            net = ipaddress.ip_network(t, strict=False)
            if net.prefixlen == net.max_prefixlen:
                return Kind.IP, str(net.network_address)
            return Kind.SUBNET, str(net)
        if ":" in t and _HEX_COLON.fullmatch(t) is not None:
            with contextlib.suppress(OSError):  # inet_pton is ~10x faster than ipaddress' parser
                packed = socket.inet_pton(socket.AF_INET6, t)
                return Kind.IP, str(ipaddress.IPv6Address(packed))
        return Kind.IP, str(ipaddress.ip_address(t))
    except ValueError as exc:
        raise BadIndicator("ip.bad_address", text) from exc


def split_url(text: str) -> tuple[str, str, str]:
    """Split and canonicalise a URL.

    Args:
        text: an absolute URL (``http://Пример.рф/путь?q``).

    Returns:
        ``(scheme, host, canonical_url)``; ``host`` is a canonical name or an IP address text.

    Raises:
        BadIndicator: ``url.bad_syntax``, ``url.too_long``, ``url.bad_port`` or a host reason.
    """
    t = text.strip()
    if len(t) > MAX_URL_LEN:
        raise BadIndicator("url.too_long", text)
    m = URL_PARTS.fullmatch(t)
    if m is None:
        raise BadIndicator("url.bad_syntax", text)
    scheme, authority, rest = m.group(1).lower(), m.group(2), m.group(3)
    hostport = authority.rpartition("@")[2]
    port = ""
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0:
            raise BadIndicator("url.bad_syntax", text)
        host = canon_ip(hostport[1:close])[1]
        hostpart = f"[{host}]"
        after = hostport[close + 1 :]
        if after:
            if not after.startswith(":"):
                raise BadIndicator("url.bad_syntax", text)
            port = after[1:]
    else:
        h, _, port = hostport.partition(":")
        host = _host_or_ip(h, text)
        hostpart = host
    if port:
        if not port.isdigit() or int(port) > 65535:
            raise BadIndicator("url.bad_port", text)
        port = str(int(port))
        if _DEFAULT_PORT.get(scheme) == port:
            port = ""
    rest = rest.partition("#")[0]
    if not rest.startswith("/"):
        rest = "/" + rest
    if not rest.isascii() or " " in rest or '"' in rest:
        rest = quote(rest, safe=_URL_SAFE)
    return scheme, host, f"{scheme}://{hostpart}{':' + port if port else ''}{rest}"


def canon_url(text: str) -> str:
    """Canonical form of a URL (see :func:`split_url`).

    Args:
        text: an absolute URL.

    Returns:
        The canonical URL.

    Raises:
        BadIndicator: as :func:`split_url`.
    """
    return split_url(text)[2]


def _host_or_ip(h: str, text: str) -> str:
    if not h:
        raise BadIndicator("url.no_host", text)
    if h[-1:].isdigit() and h.replace(".", "").isdigit():
        return canon_ip(h)[1]
    return canon_host(h)


@functools.cache
def public_suffixes() -> PublicSuffixList:
    """The public suffix list (the copy packaged with ``publicsuffixlist``), parsed once per
    process for every user: the register's breadth check, service discovery, mirror stems."""
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()
