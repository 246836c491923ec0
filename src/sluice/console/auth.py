"""Who may do what: users and roles, password hashes, sessions with CSRF tokens, API tokens,
the login rate limit and the console's audit trail.

Theory of operation
-------------------
Three roles, each including the one before: ``viewer`` reads everything; ``reviewer`` also
decides proposals, proposes names, analyses captures and dry-runs policies; ``admin`` also
imports into the register and manages users.  The role is read from ``console_users`` on every
request, so a change (or disabling a user) takes effect at once, for sessions and tokens alike.

Passwords are hashed with scrypt (:func:`hashlib.scrypt`, N=2^14, r=8, p=1, 16 random bytes of
salt), stored as ``scrypt$N$r$p$salt$hash`` (base64) and compared in constant time.

A browser session is a random 32-byte value in an HttpOnly, SameSite=Strict cookie; the table
keeps only its SHA-256, with a per-session CSRF token that every state-changing request made
with the cookie must echo (form field ``csrf`` or header ``X-CSRF-Token``).  An API token
(``slc_`` + 32 random bytes) is sent as ``Authorization: Bearer``; only its SHA-256 is stored;
it carries a role no higher than its owner's (the lower of the two applies) and can be revoked.
Requests with a token need no CSRF token: browsers never attach it on their own.

Login is limited: after :data:`MAX_FAILURES` failures within :data:`FAILURE_WINDOW_S` for one
user name, or :data:`MAX_FAILURES_PER_ADDRESS` from one address, further attempts are refused
(``console.rate_limited``) until the window has passed, even with the right password.

Every change is audited in ``console_audit``: logins (and failures), logouts, token
creation and revocation, user changes, and every register change the console requests
(import, accept, reject, propose) with who, when, from which address and the outcome.  The
register audits its own changes in its own tables as well.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sluice.console.db import Database
from sluice.errors import SluiceError

__all__ = [
    "FAILURE_WINDOW_S",
    "MAX_FAILURES",
    "MAX_FAILURES_PER_ADDRESS",
    "AuthError",
    "Principal",
    "Role",
    "Session",
    "Users",
    "hash_password",
    "verify_password",
]

MAX_FAILURES = 5
"""Failed logins of one user name within :data:`FAILURE_WINDOW_S` before logins are refused."""
MAX_FAILURES_PER_ADDRESS = 20
"""Failed logins from one address within :data:`FAILURE_WINDOW_S` before logins are refused."""
FAILURE_WINDOW_S = 900
"""The rate limit's window (seconds)."""
SESSION_LIFETIME_S = 12 * 3600
"""How long a browser session lasts (seconds)."""
TOKEN_LIFETIME_S = 365 * 86400
"""Default lifetime of an API token (seconds)."""
MIN_PASSWORD_LEN = 10
"""Shortest password accepted (characters)."""
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
"""scrypt cost parameters (RFC 7914): about 16 MiB and 50 ms per hash."""
TOKEN_USE_RESOLUTION_S = 60
"""A token's ``last_used`` is written at most this often (seconds), not on every request."""
TOKEN_PREFIX = "slc_"  # noqa: S105 - a prefix, not a secret
"""API tokens start with this, so that secret scanners can find them."""
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


class AuthError(SluiceError):
    """A refused authentication or authorisation; ``reason`` is a stable dotted code.

    Attributes:
        reason: ``console.unauthenticated``, ``console.forbidden``, ``console.bad_login``,
            ``console.rate_limited``, ``console.csrf``, ``console.bad_user`` ...
        status: the HTTP status it maps to.
        retry_after: seconds to wait (rate limit), else 0.
    """

    def __init__(self, reason: str, detail: str, status: int, retry_after: int = 0) -> None:
        self.reason = reason
        self.status = status
        self.detail = detail
        self.retry_after = retry_after
        super().__init__(detail)


class Role(enum.StrEnum):
    """What a user may do; each role includes the ones before it."""

    VIEWER = "viewer"
    """Reads everything."""
    REVIEWER = "reviewer"
    """Also decides proposals, proposes names, analyses captures, dry-runs policies."""
    ADMIN = "admin"
    """Also imports into the register and manages users."""

    @property
    def rank(self) -> int:
        """0, 1, 2 in the order above."""
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        """Whether this role includes ``needed``."""
        return self.rank >= needed.rank


@dataclass(frozen=True, slots=True)
class Principal:
    """Who makes a request."""

    user_id: int
    """The user's id."""
    name: str
    """The user's name."""
    role: Role
    """The effective role (a token's role never exceeds its owner's)."""
    via: str
    """``session`` or ``token:<id>``."""
    address: str
    """The client's address."""
    csrf: str = ""
    """The session's CSRF token ("" for tokens)."""


@dataclass(frozen=True, slots=True)
class Session:
    """A new browser session: the cookie value (shown once) and its CSRF token."""

    cookie: str
    """The value to set in the cookie."""
    csrf: str
    """The token forms and scripts echo."""
    principal: Principal
    """Who it belongs to."""


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def hash_password(password: str) -> str:
    """A scrypt hash of ``password`` as ``scrypt$N$r$p$salt$hash``."""
    salt = secrets.token_bytes(16)
    h = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(h)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a hash made by :func:`hash_password` (constant time)."""
    try:
        scheme, n, r, p, salt, want = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(base64.b64decode(want)),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(want))


_DUMMY_HASH = hash_password(secrets.token_hex(16))
"""Checked against when the user does not exist, so that timing does not tell names apart."""


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def check_name(name: str) -> str:
    """A user name, checked (lower-case letters, digits, ``.``, ``_``, ``-``; 1-64).

    Raises:
        AuthError: ``console.bad_user``.
    """
    if not _NAME.fullmatch(name):
        raise AuthError(
            "console.bad_user", "a user name is 1-64 lower-case letters, digits, '.', '_' or '-'", 422
        )
    return name


def check_password(password: str) -> str:
    """A new password, checked for length.

    Raises:
        AuthError: ``console.weak_password``.
    """
    if len(password) < MIN_PASSWORD_LEN or len(password) > 1024:
        raise AuthError("console.weak_password", f"a password has {MIN_PASSWORD_LEN} to 1024 characters", 422)
    return password


def parse_role(text: str) -> Role:
    """A role from its name.

    Raises:
        AuthError: ``console.bad_role``.
    """
    try:
        return Role(text)
    except ValueError:
        raise AuthError("console.bad_role", f"role {text!r} is not viewer, reviewer or admin", 422) from None


class Users:
    """Users, sessions, tokens, the login rate limit and the audit trail, in one database."""

    def __init__(self, db: Database, *, clock: Any = time.time) -> None:
        self.db = db
        self.clock = clock
        self._used: dict[int, float] = {}

    # -- audit --

    def audit(
        self,
        who: Principal | None,
        action: str,
        target: str,
        outcome: str = "ok",
        detail: dict[str, Any] | None = None,
        *,
        actor: str = "",
        address: str = "",
    ) -> None:
        """Append one row to the console's audit trail."""
        self.db.run(
            "INSERT INTO console_audit (at, actor, role, via, address, action, target, outcome, detail)"
            " VALUES (?,?,?,?,?,?,?,?,?)",
            (
                _now_iso(),
                who.name if who else actor,
                who.role.value if who else "",
                who.via if who else "",
                who.address if who else address,
                action,
                target,
                outcome,
                json.dumps(detail or {}, ensure_ascii=False, sort_keys=True, default=str),
            ),
        )

    def audit_rows(self, limit: int = 100, before: int | None = None) -> list[dict[str, Any]]:
        """The latest audit rows, newest first (``before``: only ids below it)."""
        sql = "SELECT id, at, actor, role, via, address, action, target, outcome, detail FROM console_audit"
        params: list[object] = []
        if before is not None:
            sql += " WHERE id < ?"
            params.append(before)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        cols = ("id", "at", "actor", "role", "via", "address", "action", "target", "outcome", "detail")
        out = []
        for row in self.db.all(sql, params):
            d = dict(zip(cols, row, strict=True))
            d["id"] = int(d["id"])
            d["detail"] = json.loads(d["detail"])
            out.append(d)
        return out

    # -- users --

    def count(self) -> int:
        """How many users exist."""
        row = self.db.one("SELECT COUNT(*) FROM console_users")
        return int(row[0]) if row else 0

    def create(self, name: str, role: Role, password: str, by: Principal | None = None) -> int:
        """Add a user.

        Raises:
            AuthError: ``console.bad_user``, ``console.weak_password``, ``console.user_exists``.
        """
        check_name(name)
        check_password(password)
        if self.db.one("SELECT id FROM console_users WHERE name = ?", (name,)):
            raise AuthError("console.user_exists", f"user {name!r} exists", 409)
        now = _now_iso()
        uid = self.db.insert(
            "INSERT INTO console_users (name, role, password, disabled, created_at, updated_at)"
            " VALUES (?,?,?,0,?,?) RETURNING id",
            (name, role.value, hash_password(password), now, now),
        )
        self.audit(by, "user.create", name, detail={"role": role.value}, actor="(command line)")
        return uid

    def all_users(self) -> list[dict[str, Any]]:
        """Every user (no hashes)."""
        rows = self.db.all(
            "SELECT id, name, role, disabled, created_at, updated_at FROM console_users ORDER BY name"
        )
        return [
            {
                "id": int(i),
                "name": n,
                "role": r,
                "disabled": bool(d),
                "created_at": c,
                "updated_at": u,
            }
            for i, n, r, d, c, u in rows
        ]

    def get(self, name: str) -> dict[str, Any]:
        """One user.

        Raises:
            AuthError: ``console.no_user``.
        """
        for u in self.all_users():
            if u["name"] == name:
                return u
        raise AuthError("console.no_user", f"no user {name!r}", 404)

    def update(
        self,
        name: str,
        by: Principal | None,
        *,
        role: Role | None = None,
        password: str | None = None,
        disabled: bool | None = None,
    ) -> dict[str, Any]:
        """Change a user's role, password or disabled flag; a password change or disabling ends
        the user's sessions.

        Raises:
            AuthError: ``console.no_user``, ``console.weak_password``, ``console.last_admin``.
        """
        user = self.get(name)
        if (role is not None and role is not Role.ADMIN) or disabled:
            self._keep_an_admin(user)
        sets: list[str] = []
        params: list[object] = []
        changed: dict[str, Any] = {}
        if role is not None:
            sets.append("role = ?")
            params.append(role.value)
            changed["role"] = role.value
        if password is not None:
            sets.append("password = ?")
            params.append(hash_password(check_password(password)))
            changed["password"] = "changed"  # noqa: S105 - audit text
        if disabled is not None:
            sets.append("disabled = ?")
            params.append(int(disabled))
            changed["disabled"] = disabled
        if sets:
            sets.append("updated_at = ?")
            params += [_now_iso(), user["id"]]
            self.db.run(f"UPDATE console_users SET {', '.join(sets)} WHERE id = ?", params)  # noqa: S608
            if password is not None or disabled:
                self.db.run("DELETE FROM console_sessions WHERE user_id = ?", (user["id"],))
        self.audit(by, "user.update", name, detail=changed, actor="(command line)")
        return self.get(name)

    def _keep_an_admin(self, user: dict[str, Any]) -> None:
        if user["role"] != Role.ADMIN.value or user["disabled"]:
            return
        row = self.db.one(
            "SELECT COUNT(*) FROM console_users WHERE role = 'admin' AND disabled = 0 AND id <> ?",
            (user["id"],),
        )
        if not row or int(row[0]) == 0:
            raise AuthError("console.last_admin", "the last enabled admin cannot be demoted or disabled", 409)

    # -- login and sessions --

    def _limited(self, name: str, address: str) -> int:
        """Seconds until a login may be tried again (0: now)."""
        since = int(self.clock()) - FAILURE_WINDOW_S
        for col, value, limit in (
            ("name", name, MAX_FAILURES),
            ("address", address, MAX_FAILURES_PER_ADDRESS),
        ):
            row = self.db.one(
                f"SELECT COUNT(*), MIN(at) FROM console_login_failures WHERE {col} = ? AND at > ?",  # noqa: S608
                (value, since),
            )
            if row and int(row[0]) >= limit:
                return max(1, int(row[1]) + FAILURE_WINDOW_S - int(self.clock()))
        return 0

    def login(self, name: str, password: str, address: str) -> Session:
        """Check a name and password and open a session.

        Raises:
            AuthError: ``console.rate_limited`` (429) or ``console.bad_login`` (401).
        """
        wait = self._limited(name, address)
        if wait:
            self.audit(None, "login", name, "rate_limited", actor=name, address=address)
            raise AuthError(
                "console.rate_limited", f"too many failed logins; try again in {wait} s", 429, wait
            )
        row = self.db.one("SELECT id, role, password, disabled FROM console_users WHERE name = ?", (name,))
        ok = verify_password(password, row[2] if row else _DUMMY_HASH)
        if row is None or not ok or row[3]:
            self.db.run(
                "INSERT INTO console_login_failures (name, address, at) VALUES (?,?,?)",
                (name, address, int(self.clock())),
            )
            self.audit(None, "login", name, "failed", actor=name, address=address)
            raise AuthError("console.bad_login", "wrong user name or password", 401)
        cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self.db.run(
            "INSERT INTO console_sessions (digest, user_id, csrf, created_at, expires, address)"
            " VALUES (?,?,?,?,?,?)",
            (_digest(cookie), int(row[0]), csrf, _now_iso(), int(self.clock()) + SESSION_LIFETIME_S, address),
        )
        who = Principal(int(row[0]), name, Role(row[1]), "session", address, csrf)
        self.audit(who, "login", name)
        return Session(cookie, csrf, who)

    def session(self, cookie: str, address: str) -> Principal | None:
        """The principal of a session cookie, or None (unknown, expired, user disabled)."""
        row = self.db.one(
            "SELECT u.id, u.name, u.role, s.csrf FROM console_sessions s"
            " JOIN console_users u ON u.id = s.user_id"
            " WHERE s.digest = ? AND s.expires > ? AND u.disabled = 0",
            (_digest(cookie), int(self.clock())),
        )
        if row is None:
            return None
        return Principal(int(row[0]), row[1], Role(row[2]), "session", address, row[3])

    def logout(self, cookie: str, who: Principal) -> None:
        """End a session."""
        self.db.run("DELETE FROM console_sessions WHERE digest = ?", (_digest(cookie),))
        self.audit(who, "logout", who.name)

    # -- API tokens --

    def create_token(
        self, who: Principal, name: str, role: Role | None = None, lifetime_s: int = TOKEN_LIFETIME_S
    ) -> dict[str, Any]:
        """A new API token of ``who`` (role at most ``who``'s); the secret is in the result only.

        Raises:
            AuthError: ``console.forbidden`` (role above the owner's), ``console.bad_token``.
        """
        want = role or who.role
        if not who.role.allows(want):
            raise AuthError("console.forbidden", f"a {who.role} cannot make a {want} token", 403)
        label = name.strip()
        if not label or len(label) > 100:
            raise AuthError("console.bad_token", "a token name has 1-100 characters", 422)
        if lifetime_s < 60 or lifetime_s > 10 * TOKEN_LIFETIME_S:
            raise AuthError("console.bad_token", "a token lives 60 s to 10 years", 422)
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        expires = int(self.clock()) + lifetime_s
        tid = self.db.insert(
            "INSERT INTO console_tokens (digest, user_id, name, role, created_at, expires)"
            " VALUES (?,?,?,?,?,?) RETURNING id",
            (_digest(secret), who.user_id, label, want.value, _now_iso(), expires),
        )
        self.audit(who, "token.create", f"token #{tid}", detail={"name": label, "role": want.value})
        out = self.tokens(who, all_users=True, ids=[tid])[0]
        out["token"] = secret
        return out

    def tokens(
        self, who: Principal, *, all_users: bool = False, ids: list[int] | None = None
    ) -> list[dict[str, Any]]:
        """Tokens of ``who`` (or everyone's), newest first, without secrets."""
        sql = (
            "SELECT t.id, u.name, t.name, t.role, t.created_at, t.expires, t.revoked_at, t.last_used"
            " FROM console_tokens t JOIN console_users u ON u.id = t.user_id"
        )
        where, params = [], []
        if not all_users:
            where.append("t.user_id = ?")
            params.append(who.user_id)
        if ids is not None:
            where.append(f"t.id IN ({','.join('?' * len(ids))})")
            params += ids
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY t.id DESC"
        return [
            {
                "id": int(i),
                "user": u,
                "name": n,
                "role": r,
                "created_at": c,
                "expires_at": datetime.fromtimestamp(int(e), UTC).isoformat(timespec="seconds"),
                "revoked_at": rv,
                "last_used": lu,
            }
            for i, u, n, r, c, e, rv, lu in self.db.all(sql, params)
        ]

    def revoke_token(self, who: Principal, tid: int) -> dict[str, Any]:
        """Revoke a token (one's own; an admin any).

        Raises:
            AuthError: ``console.no_token`` (404; also for someone else's token).
        """
        found = self.tokens(who, all_users=who.role is Role.ADMIN, ids=[tid])
        if not found:
            raise AuthError("console.no_token", f"no token #{tid}", 404)
        if not found[0]["revoked_at"]:
            self.db.run("UPDATE console_tokens SET revoked_at = ? WHERE id = ?", (_now_iso(), tid))
            self.audit(who, "token.revoke", f"token #{tid}", detail={"owner": found[0]["user"]})
        return self.tokens(who, all_users=True, ids=[tid])[0]

    def token(self, secret: str, address: str) -> Principal | None:
        """The principal of a bearer token, or None (unknown, revoked, expired, user disabled)."""
        if not secret.startswith(TOKEN_PREFIX):
            return None
        row = self.db.one(
            "SELECT t.id, u.id, u.name, u.role, t.role FROM console_tokens t"
            " JOIN console_users u ON u.id = t.user_id"
            " WHERE t.digest = ? AND t.revoked_at = '' AND t.expires > ? AND u.disabled = 0",
            (_digest(secret), int(self.clock())),
        )
        if row is None:
            return None
        tid, uid, name, user_role, token_role = row
        role = min(Role(user_role), Role(token_role), key=lambda r: r.rank)
        if self.clock() - self._used.get(int(tid), 0.0) > TOKEN_USE_RESOLUTION_S:
            self._used[int(tid)] = self.clock()
            self.db.run("UPDATE console_tokens SET last_used = ? WHERE id = ?", (_now_iso(), int(tid)))
        return Principal(int(uid), name, role, f"token:{int(tid)}", address)
