"""Reading a policy file: TOML in, a checked :class:`~sluice.policy.model.Policy` out.

Theory of operation: :mod:`tomllib` parses the text but keeps no positions, so a small scanner
(:class:`_Locator`) walks the same text once and records the line of every table header and of
every key within each table (the n-th ``[[rule]]`` header is rule n). Every problem found while
checking the parsed values is reported as a :class:`PolicyIssue` carrying that line, the rule's
index and name, the key and a stable dotted reason code; all problems of a file are collected
before :class:`PolicyError` is raised, so ``sluice policy check`` shows them all at once.

The file format is documented in ``docs/policy-notes.md``.
"""

from __future__ import annotations

__all__ = ["PolicyError", "PolicyIssue", "check_policy", "load_policy", "parse_policy"]

import difflib
import hashlib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sluice.detect.verdict import CLASSES
from sluice.errors import ConfigError
from sluice.io.limits import MAX_POLICY_BYTES, LimitExceeded, env_limit, read_bounded
from sluice.policy.model import Action, DefaultRule, Mode, Policy, Rule

PROTO_NUMBERS = {"icmp": 1, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "ah": 51, "icmp6": 58, "sctp": 132}
"""Protocol names a rule's ``proto`` accepts (numbers 0-255 are accepted too)."""
RULE_KEYS = (
    "name",
    "description",
    "action",
    "mode",
    "rate_kbit",
    "register",
    "register_kind",
    "register_source",
    "register_authority",
    "class",
    "family",
    "min_confidence",
    "host",
    "sni",
    "ports",
    "proto",
    "app",
)
"""Keys a ``[[rule]]`` table may have."""
TOP_KEYS = ("version", "description", "mode", "default", "rule")
"""Keys the top level may have."""
DEFAULT_KEYS = ("action", "mode", "rate_kbit")
"""Keys the ``[default]`` table may have."""
REGISTER_KINDS = ("domain", "domain-mask", "url", "ip", "subnet")
"""Values of ``register_kind``: the kinds of :class:`sluice.registry.Kind` a flow can match (not
imported, to keep the policy light to load). ``wallet`` entries name crypto addresses found in
content, never a flow's name or address, so a rule cannot select them."""
MAX_RATE_KBIT = 100_000_000
"""Largest throttle rate accepted (100 Gbit/s)."""

_HOST_PATTERN = re.compile(r"[\w*?-]+(?:\.[\w*?-]+)*", re.UNICODE)


@dataclass(frozen=True, slots=True)
class PolicyIssue:
    """One problem in a policy file."""

    line: int
    """1-based line of the offending key or table (0 when not known)."""
    reason: str
    """Stable dotted code (``policy.unknown_key``, ``policy.bad_action`` ...)."""
    message: str
    """What is wrong, in words."""
    rule_index: int = -1
    """0-based index of the rule concerned (-1: not in a rule)."""
    rule_name: str = ""
    """The rule's name, when it has one."""
    key: str = ""
    """The key concerned ("" for a whole table)."""
    path: str = ""
    """The policy file."""

    def __str__(self) -> str:
        where = f"{self.path or '<policy>'}:{self.line}"
        rule = ""
        if self.rule_index >= 0:
            rule = f"rule #{self.rule_index + 1}" + (f" {self.rule_name!r}" if self.rule_name else "") + ": "
        return f"{where}: {rule}{self.message} [{self.reason}]"


class PolicyError(ConfigError):
    """A policy file with problems; ``issues`` lists every one, with its line."""

    def __init__(self, issues: list[PolicyIssue]) -> None:
        self.issues = issues
        first = issues[0]
        option = first.key or (f"rule[{first.rule_index}]" if first.rule_index >= 0 else "policy")
        super().__init__(option, "\n".join(str(i) for i in issues))
        self.args = ("\n".join(str(i) for i in issues),)

    @property
    def line(self) -> int:
        """Line of the first problem."""
        return self.issues[0].line

    @property
    def reason(self) -> str:
        """Reason code of the first problem."""
        return self.issues[0].reason


# -- where things are in the text --

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"""^\s*("(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_-]+)\s*(?:\.|=)""")


def _split_dotted(text: str) -> tuple[str, ...]:
    parts = re.findall(r""""((?:[^"\\]|\\.)*)"|'([^']*)'|([A-Za-z0-9_-]+)""", text)
    return tuple(a or b or c for a, b, c in parts)


class _Locator:
    """Lines of table headers and keys in a TOML text (see the module docstring)."""

    def __init__(self, text: str) -> None:
        self.tables: dict[tuple[tuple[str, ...], int], int] = {}
        self.keys: dict[tuple[tuple[str, ...], int, str], int] = {}
        counts: dict[tuple[str, ...], int] = {}
        current: tuple[tuple[str, ...], int] = ((), -1)
        in_string = ""
        for no, line in enumerate(text.splitlines(), 1):
            if in_string:
                if line.count(in_string) % 2 == 1:
                    in_string = ""
                continue
            m = _HEADER.match(line)
            if m:
                path = _split_dotted(m.group(2))
                if m.group(1) == "[[":
                    counts[path] = counts.get(path, -1) + 1
                    current = (path, counts[path])
                elif len(path) > 1 and path[:1] in {p[:1] for p in counts}:
                    # a sub-table of the latest array element: [rule.x] after [[rule]]
                    head = path[:1]
                    current = (path, counts.get(head, 0))
                    self.keys.setdefault((head, counts.get(head, 0), path[1]), no)
                else:
                    current = (path, -1)
                    if len(path) > 1:
                        self.keys.setdefault((path[:1], -1, path[1]), no)
                self.tables.setdefault(current, no)
                continue
            k = _KEY.match(line)
            if k:
                key = _split_dotted(k.group(1))[0] if k.group(1)[0] in "\"'" else k.group(1)
                self.keys.setdefault((current[0], current[1], key), no)
                for quote in ('"""', "'''"):
                    if line.count(quote) % 2 == 1:
                        in_string = quote

    def table(self, path: tuple[str, ...], index: int = -1) -> int:
        return self.tables.get((path, index), 0)

    def key(self, path: tuple[str, ...], index: int, key: str) -> int:
        return self.keys.get((path, index, key)) or self.table(path, index)


# -- checking values --


class _Checker:
    def __init__(self, text: str, path: str) -> None:
        self.loc = _Locator(text)
        self.path = path
        self.issues: list[PolicyIssue] = []

    def add(
        self,
        reason: str,
        message: str,
        *,
        table: tuple[str, ...] = (),
        index: int = -1,
        key: str = "",
        name: str = "",
    ) -> None:
        line = self.loc.key(table, index, key) if key else self.loc.table(table, index)
        rule_index = index if table == ("rule",) else -1
        self.issues.append(PolicyIssue(line, reason, message, rule_index, name, key, self.path))

    def unknown_keys(
        self, d: dict[str, Any], allowed: tuple[str, ...], table: tuple[str, ...], index: int, name: str = ""
    ) -> None:
        for k in d:
            if k not in allowed:
                near = difflib.get_close_matches(k, allowed, n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                self.add(
                    "policy.unknown_key",
                    f"unknown key {k!r}{hint}",
                    table=table,
                    index=index,
                    key=k,
                    name=name,
                )

    def action(
        self, d: dict[str, Any], table: tuple[str, ...], index: int, name: str
    ) -> tuple[Action, int] | None:
        raw = d.get("action")
        if raw is None:
            self.add("policy.missing_action", "no 'action'", table=table, index=index, name=name)
            return None
        try:
            action = Action(raw)
        except ValueError:
            choices = ", ".join(a.value for a in Action)
            self.add(
                "policy.bad_action",
                f"action {raw!r} is not one of {choices}",
                table=table,
                index=index,
                key="action",
                name=name,
            )
            return None
        rate = d.get("rate_kbit")
        if action is Action.THROTTLE:
            if rate is None:
                self.add(
                    "policy.throttle_without_rate",
                    "action 'throttle' needs 'rate_kbit'",
                    table=table,
                    index=index,
                    key="action",
                    name=name,
                )
                return None
            if type(rate) is not int or not 0 < rate <= MAX_RATE_KBIT:
                self.add(
                    "policy.bad_rate",
                    f"rate_kbit must be an integer in 1..{MAX_RATE_KBIT}, not {rate!r}",
                    table=table,
                    index=index,
                    key="rate_kbit",
                    name=name,
                )
                return None
            return action, rate
        if rate is not None:
            self.add(
                "policy.rate_without_throttle",
                f"rate_kbit is only for action 'throttle', not {action.value!r}",
                table=table,
                index=index,
                key="rate_kbit",
                name=name,
            )
            return None
        return action, 0

    def mode(self, d: dict[str, Any], table: tuple[str, ...], index: int, name: str, default: Mode) -> Mode:
        raw = d.get("mode")
        if raw is None:
            return default
        try:
            return Mode(raw)
        except ValueError:
            self.add(
                "policy.bad_mode",
                f"mode {raw!r} is not 'enforce' or 'shadow'",
                table=table,
                index=index,
                key="mode",
                name=name,
            )
            return default

    def strings(self, d: dict[str, Any], key: str, index: int, name: str) -> tuple[str, ...] | None:
        raw = d.get(key)
        if raw is None:
            return ()
        items = [raw] if isinstance(raw, str) else raw
        if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
            self.add(
                "policy.bad_type",
                f"{key} must be a string or a list of strings",
                table=("rule",),
                index=index,
                key=key,
                name=name,
            )
            return None
        return tuple(items)


def _glob(pattern: str, *, host: bool) -> re.Pattern[str]:
    p = pattern.lower().rstrip(".") if host else pattern.lower()
    prefix = ""
    if host and p.startswith("*."):
        prefix, p = r"(?:.*\.)?", p[2:]
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in p)
    return re.compile(prefix + body, re.DOTALL)


def _bad_host_pattern(p: str) -> str:
    if not p:
        return "is empty"
    if not _HOST_PATTERN.fullmatch(p.rstrip(".")):
        return "is not a host name pattern (letters, digits, '-', '.', '*', '?'; no empty labels)"
    return ""


def _check_rule(c: _Checker, d: dict[str, Any], i: int, names: dict[str, int], top_mode: Mode) -> Rule | None:
    t = ("rule",)
    name = d.get("name")
    ok = True
    if not isinstance(name, str) or not name.strip():
        c.add(
            "policy.missing_name",
            "every rule needs a non-empty string 'name'",
            table=t,
            index=i,
            key="name" if "name" in d else "",
        )
        name, ok = "", False
    elif name in names:
        c.add(
            "policy.duplicate_name",
            f"name {name!r} is already used by rule #{names[name] + 1}",
            table=t,
            index=i,
            key="name",
            name=name,
        )
        ok = False
    else:
        names[name] = i
    n_before = len(c.issues)
    c.unknown_keys(d, RULE_KEYS, t, i, name)
    act = c.action(d, t, i, name)
    mode = c.mode(d, t, i, name, top_mode)
    kw: dict[str, Any] = {}
    reg = d.get("register")
    if reg is not None and not isinstance(reg, bool) and reg != "proposed":
        c.add(
            "policy.bad_type",
            'register must be true, false or "proposed"',
            table=t,
            index=i,
            key="register",
            name=name,
        )
    kw["register"] = reg if isinstance(reg, bool) else None
    kw["proposed"] = reg == "proposed"
    if reg == "proposed" and mode is not Mode.SHADOW:
        c.add(
            "policy.proposed_not_shadow",
            'register = "proposed" matches indicators still under review: nothing a detector found is'
            ' enforced before review, so this rule needs mode = "shadow"',
            table=t,
            index=i,
            key="register",
            name=name,
        )
    for key, attr, host in (
        ("host", "_host_re", True),
        ("sni", "_sni_re", True),
        ("family", "_family_re", False),
        ("register_source", "_source_re", False),
        ("register_authority", "_authority_re", False),
    ):
        pats = c.strings(d, key, i, name)
        if pats is None:
            continue
        good = []
        for p in pats:
            why = _bad_host_pattern(p) if host else ("is empty" if not p.strip() else "")
            if why:
                c.add(
                    "policy.bad_pattern", f"{key} pattern {p!r} {why}", table=t, index=i, key=key, name=name
                )
            else:
                good.append(p)
        kw[attr] = tuple(_glob(p, host=host) for p in good)
        kw[key] = tuple(good)
    kw["register_kind"] = _choices(c, d, "register_kind", set(REGISTER_KINDS), i, name, "policy.bad_kind")
    kw["classes"] = _choices(c, d, "class", set(CLASSES), i, name, "policy.bad_class")
    kw["app"] = frozenset(c.strings(d, "app", i, name) or ())
    conf = d.get("min_confidence", 0.0)
    if type(conf) not in (int, float) or not 0.0 <= conf <= 1.0:
        c.add(
            "policy.bad_confidence",
            f"min_confidence must be a number in 0..1, not {conf!r}",
            table=t,
            index=i,
            key="min_confidence",
            name=name,
        )
        conf = 0.0
    kw["min_confidence"] = float(conf)
    kw["ports"] = _ports(c, d.get("ports"), i, name)
    kw["proto"] = _protos(c, d.get("proto"), i, name)
    if d.get("description") is not None and not isinstance(d["description"], str):
        c.add(
            "policy.bad_type", "description must be a string", table=t, index=i, key="description", name=name
        )
    if not ok or act is None or len(c.issues) > n_before:
        return None
    return Rule(name=name, action=act[0], rate_kbit=act[1], mode=mode, line=c.loc.table(t, i), **kw)


def _choices(
    c: _Checker, d: dict[str, Any], key: str, allowed: set[str], i: int, name: str, reason: str
) -> frozenset[str]:
    items = c.strings(d, key, i, name) or ()
    for x in items:
        if x not in allowed:
            c.add(
                reason,
                f"{key} {x!r} is not one of {', '.join(sorted(allowed))}",
                table=("rule",),
                index=i,
                key=key,
                name=name,
            )
    return frozenset(x for x in items if x in allowed)


def _ports(c: _Checker, raw: Any, i: int, name: str) -> tuple[tuple[int, int], ...]:
    if raw is None:
        return ()
    out = []
    for p in raw if isinstance(raw, list) else [raw]:
        lo = hi = -1
        if type(p) is int:
            lo = hi = p
        elif isinstance(p, str) and re.fullmatch(r"\d{1,5}-\d{1,5}", p.strip()):
            a, b = p.strip().split("-")
            lo, hi = int(a), int(b)
        if not 0 <= lo <= hi <= 65535:
            c.add(
                "policy.bad_port",
                f"port {p!r} is not a port (0-65535) or a range 'LOW-HIGH'",
                table=("rule",),
                index=i,
                key="ports",
                name=name,
            )
            continue
        out.append((lo, hi))
    return tuple(out)


def _protos(c: _Checker, raw: Any, i: int, name: str) -> frozenset[int]:
    if raw is None:
        return frozenset()
    out = set()
    for p in raw if isinstance(raw, list) else [raw]:
        if type(p) is int and 0 <= p <= 255:
            out.add(p)
        elif isinstance(p, str) and p.lower() in PROTO_NUMBERS:
            out.add(PROTO_NUMBERS[p.lower()])
        else:
            names = ", ".join(PROTO_NUMBERS)
            c.add(
                "policy.bad_proto",
                f"proto {p!r} is not one of {names} or a number 0-255",
                table=("rule",),
                index=i,
                key="proto",
                name=name,
            )
    return frozenset(out)


def check_policy(text: str, path: str = "") -> tuple[Policy | None, list[PolicyIssue]]:
    """Parse and check a policy text, collecting every problem.

    Args:
        text: the TOML text.
        path: the file name, for messages.

    Returns:
        The policy (None when there are problems) and the problems, in file order.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"at line (\d+)", str(exc))
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        return None, [
            PolicyIssue(int(m.group(1)) if m else 0, "policy.syntax", f"TOML syntax: {msg}", path=path)
        ]
    c = _Checker(text, path)
    c.unknown_keys(data, TOP_KEYS, (), -1)
    version = data.get("version", 1)
    if version != 1:
        c.add("policy.bad_version", f"version {version!r} is not supported (only 1)", key="version")
    top_mode = c.mode(data, (), -1, "", Mode.ENFORCE)
    default = DefaultRule()
    dd = data.get("default", {})
    if not isinstance(dd, dict):
        c.add("policy.bad_type", "default must be a table", key="default")
    else:
        c.unknown_keys(dd, DEFAULT_KEYS, ("default",), -1)
        act = c.action(dd, ("default",), -1, "") if "action" in dd else (Action.ALLOW, 0)
        if "action" not in dd and "rate_kbit" in dd:
            act = c.action({"action": "allow", **dd}, ("default",), -1, "")
        mode = c.mode(dd, ("default",), -1, "", top_mode)
        if act is not None:
            default = DefaultRule(act[0], mode, act[1])
    raw_rules = data.get("rule", [])
    rules: list[Rule] = []
    if not isinstance(raw_rules, list) or not all(isinstance(r, dict) for r in raw_rules):
        c.add("policy.bad_type", "rules must be [[rule]] tables", key="rule")
        raw_rules = []
    names: dict[str, int] = {}
    for i, d in enumerate(raw_rules):
        rule = _check_rule(c, d, i, names, top_mode)
        if rule is not None:
            rules.append(rule)
    if c.issues:
        return None, sorted(c.issues, key=lambda x: (x.line, x.rule_index))
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return Policy(tuple(rules), default, digest, path), []


def parse_policy(text: str, path: str = "") -> Policy:
    """Parse and check a policy text.

    Args:
        text: the TOML text.
        path: the file name, for messages.

    Returns:
        The policy.

    Raises:
        PolicyError: every problem, each with its line.
    """
    policy, issues = check_policy(text, path)
    if issues or policy is None:
        raise PolicyError(issues)
    return policy


def read_policy_text(path: str | Path) -> str:
    """A policy file's text, read within ``SLUICE_MAX_POLICY_BYTES`` (default
    :data:`~sluice.io.limits.MAX_POLICY_BYTES`, 4 MiB): a device or a pipe never ends.

    Raises:
        PolicyError: ``policy.too_large``.
        UnicodeDecodeError: not UTF-8.
        OSError: the file cannot be read.
    """
    limit = env_limit("SLUICE_MAX_POLICY_BYTES", MAX_POLICY_BYTES)
    try:
        with Path(path).open("rb") as f:
            data = read_bounded(f, limit, "policy file size", "SLUICE_MAX_POLICY_BYTES")
    except LimitExceeded as exc:
        raise PolicyError([PolicyIssue(0, "policy.too_large", str(exc), path=str(path))]) from None
    return data.decode("utf-8")


def load_policy(path: str | Path) -> Policy:
    """Read and check a policy file.

    Args:
        path: the TOML file.

    Returns:
        The policy.

    Raises:
        PolicyError: (a :class:`~sluice.errors.ConfigError`) every problem, each with its line;
            ``policy.too_large`` past ``SLUICE_MAX_POLICY_BYTES`` (default 4 MiB).
        OSError: the file cannot be read.
    """
    p = Path(path)
    try:
        text = read_policy_text(p)
    except UnicodeDecodeError as exc:
        raise PolicyError(
            [PolicyIssue(0, "policy.encoding", f"not UTF-8: {exc.reason}", path=str(p))]
        ) from None
    return parse_policy(text, str(p))
