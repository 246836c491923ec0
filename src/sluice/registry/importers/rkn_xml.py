"""Roskomnadzor register, XML dump (``dump.xml``: ``reg:register`` of ``content`` elements).

Each ``content`` carries ``blockType`` (absent or ``default``: by URL, as the CSV kind inference;
``domain``; ``domain-mask``; ``ip``), one ``decision`` (attributes ``date``, ``number``, ``org``)
and any number of ``url``, ``domain``, ``ip``, ``ipv6``, ``ipSubnet``, ``ipv6Subnet`` elements.
The root's ``updateTime`` is the dump's time stamp.

The parser is expat driven directly and streaming, with the defences of defusedxml: any entity
declaration (internal or external, the billion-laughs family) refuses the file, external DTDs and
parameter entities are never loaded, text of one element is capped at
:data:`~sluice.registry.importers._input.MAX_LINE_CHARS`, and a document that ends before its
root element closes is refused as truncated.
"""

from __future__ import annotations

import xml.parsers.expat
from typing import Any, NoReturn

from sluice.registry.importers._common import ParseResult, Progress
from sluice.registry.importers._input import MAX_LINE_CHARS, MOJIBAKE_MIN_PAIRS, count_mojibake
from sluice.registry.importers.rkn_csv import add_record
from sluice.registry.model import LegalBasis, RegistryError
from sluice.registry.names import BadIndicator

__all__ = ["parse_rkn_xml"]

FMT = "rkn-xml"
_CHUNK = 1 << 20
_IP_TAGS = frozenset({"ip", "ipv6", "ipSubnet", "ipv6Subnet"})
_TEXT_TAGS = _IP_TAGS | {"url", "domain"}
_BLOCK_TYPES = frozenset({"default", "domain", "domain-mask", "ip"})


class _Refused(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(detail)


class _Handler:
    """Expat callbacks building one record per ``content`` element."""

    def __init__(self, result: ParseResult, parser: xml.parsers.expat.XMLParserType) -> None:
        self.res = result
        self.p = parser
        self.depth = 0
        self.root_ok = False
        self.closed = False
        self.in_content = False
        self.line = 0
        self.block = "default"
        self.basis = LegalBasis()
        self.fields: dict[str, list[str]] = {}
        self.text: list[str] | None = None
        self.text_len = 0

    def start(self, name: str, attrs: dict[str, str]) -> None:
        self.depth += 1
        if self.depth == 1:
            if name.rpartition(":")[2] != "register":
                raise _Refused("registry.rkn_xml.bad_root", f"root element is <{name}>")
            self.root_ok = True
            self.res.dump_time = attrs.get("updateTime", "")
        elif self.depth == 2 and name == "content":
            self.in_content = True
            self.line = self.p.CurrentLineNumber
            self.block = attrs.get("blockType", "default") or "default"
            self.basis = LegalBasis()
            self.fields = {}
        elif self.in_content and self.depth == 3:
            if name == "decision":
                self.basis = LegalBasis(
                    attrs.get("org", "").strip(),
                    attrs.get("number", "").strip(),
                    attrs.get("date", "").strip(),
                )
            elif name in _TEXT_TAGS:
                self.text = []
                self.text_len = 0

    def chars(self, data: str) -> None:
        if self.text is not None:
            self.text_len += len(data)
            if self.text_len > MAX_LINE_CHARS:
                raise _Refused("registry.damaged", f"element text over {MAX_LINE_CHARS} chars")
            self.text.append(data)

    def end(self, name: str) -> None:
        self.depth -= 1
        if self.depth == 0:
            self.closed = True
        elif self.in_content and self.depth == 2 and self.text is not None:
            self.fields.setdefault(name, []).append("".join(self.text).strip())
            self.text = None
        elif self.in_content and self.depth == 1:
            self.in_content = False
            self._record()

    def _record(self) -> None:
        res = self.res
        res.rows += 1
        if self.block not in _BLOCK_TYPES:
            res.reject(self.line, "rkn_xml.bad_block_type", self.block)
            return
        f = self.fields
        ips = [x for t in ("ip", "ipv6", "ipSubnet", "ipv6Subnet") for x in f.get(t, []) if x]
        urls = [u for u in f.get("url", []) if u]
        domains = [d for d in f.get("domain", []) if d]
        b = self.basis
        if count_mojibake(" ".join([b.authority, b.number, *domains])) >= MOJIBAKE_MIN_PAIRS:
            raise _Refused(
                "registry.mojibake",
                f"record at line {self.line}: decision or domain is UTF-8 decoded as"
                f" cp1251/latin-1 ({b.authority!r} {' '.join(domains)!r})",
            )
        try:
            add_record(res, ips, domains, urls, self.basis, self.block)
        except BadIndicator as exc:
            res.reject(self.line, f"rkn_xml.{exc.reason}", " ".join(domains + urls + ips))


def _no_entities(*_args: Any) -> NoReturn:
    raise _Refused("registry.xml_entities", "entity declarations are refused (XML bomb defence)")


def parse_rkn_xml(data: bytes, path: str = "", progress: Progress | None = None) -> ParseResult:
    """Parse one RKN XML dump.

    Args:
        data: the file's bytes (any encoding expat knows, windows-1251 included).
        path: file name for messages.
        progress: called with bytes processed.

    Returns:
        The parse result.

    Raises:
        RegistryError: ``registry.truncated``, ``registry.damaged``, ``registry.xml_entities``,
            ``registry.rkn_xml.bad_root``, ``registry.mojibake`` (a decision or domain garbled
            by a wrong decode; URLs are data and not looked at).
    """
    res = ParseResult(FMT, path=path)
    p = xml.parsers.expat.ParserCreate()
    h = _Handler(res, p)
    p.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    p.StartElementHandler = h.start
    p.EndElementHandler = h.end
    p.CharacterDataHandler = h.chars
    p.EntityDeclHandler = _no_entities
    p.UnparsedEntityDeclHandler = _no_entities
    p.ExternalEntityRefHandler = _no_entities
    p.buffer_text = True
    try:
        for off in range(0, len(data), _CHUNK):
            p.Parse(data[off : off + _CHUNK], False)
            if progress is not None:
                progress(min(len(data), off + _CHUNK))
        p.Parse(b"", True)
    except _Refused as exc:
        raise RegistryError(exc.reason, exc.detail, path) from None
    except xml.parsers.expat.ExpatError as exc:
        if h.root_ok and not h.closed and exc.code in _EOF_CODES:
            raise RegistryError(
                "registry.truncated", f"document ends before </register>: {exc}", path
            ) from None
        raise RegistryError("registry.damaged", f"not well-formed XML: {exc}", path) from None
    except (ValueError, LookupError) as exc:
        raise RegistryError("registry.damaged", f"XML: {exc}", path) from None
    if not h.closed:
        raise RegistryError("registry.truncated", "document ends before </register>", path)
    return res


_EOF_CODES = frozenset(
    {
        xml.parsers.expat.errors.codes[xml.parsers.expat.errors.XML_ERROR_NO_ELEMENTS],
        xml.parsers.expat.errors.codes[xml.parsers.expat.errors.XML_ERROR_UNCLOSED_TOKEN],
        xml.parsers.expat.errors.codes[xml.parsers.expat.errors.XML_ERROR_PARTIAL_CHAR],
        xml.parsers.expat.errors.codes[xml.parsers.expat.errors.XML_ERROR_UNCLOSED_CDATA_SECTION],
    }
)
