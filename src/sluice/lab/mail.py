"""The lab's mail programs: an aiosmtpd submission server, smtplib and imaplib clients.

Run inside a lab namespace:

* ``python -m sluice.lab.mail smtpd --bind IP --port N --mode starttls|smtps --cert C --key K
  --user U --password P --maildir DIR --log F``: SMTP submission with STARTTLS (or implicit TLS)
  and AUTH required; every accepted message goes into the Maildir ``DIR`` and one JSON line
  (``client``, ``from``, ``to``, ``bytes``, ``body_sha256``, ``tls``, ``auth``) into the log.
* ``python -m sluice.lab.mail send --host NAME --connect IP ... MSG...``: submit message files with
  smtplib, thinking ``--gap`` seconds between them.
* ``python -m sluice.lab.mail fetch --host NAME --connect IP ...``: log in with imaplib, fetch every
  message, then poll (``NOOP``) every ``--gap`` seconds for ``--duration`` seconds and fetch what
  arrives; prints one JSON line per message (``uid``, ``body_sha256``).

:func:`body_digest` is the message identity both ends agree on: SHA-256 of the body with line
ends normalised (SMTP and IMAP turn ``\\n`` into ``\\r\\n`` and may drop trailing blank lines).
"""

from __future__ import annotations

__all__ = ["body_digest", "main"]

import argparse
import hashlib
import imaplib
import json
import mailbox
import signal
import smtplib
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

_CONNECT_IP = ""


def body_digest(message: bytes) -> str:
    """SHA-256 of a message's body (after the first blank line), line ends normalised."""
    msg = message.replace(b"\r\n", b"\n")
    _, sep, body = msg.partition(b"\n\n")
    return hashlib.sha256((body if sep else b"").rstrip(b"\n")).hexdigest()


def _smtpd(a: argparse.Namespace) -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

    box = mailbox.Maildir(a.maildir, create=True)
    logf = open(a.log, "a", encoding="utf-8")  # noqa: SIM115 (lives until exit)
    lock = threading.Lock()

    class Handler:
        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
            data = envelope.original_content or b""
            box.add(data)
            rec = {
                "client": session.peer[0] if isinstance(session.peer, tuple) else str(session.peer),
                "from": envelope.mail_from,
                "to": envelope.rcpt_tos,
                "bytes": len(data),
                "body_sha256": body_digest(data),
                "tls": a.mode == "smtps" or session.ssl is not None,
                "auth": session.authenticated,
            }
            with lock:
                logf.write(json.dumps(rec) + "\n")
                logf.flush()
            return "250 2.0.0 Ok: queued"

    def authenticator(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == a.user.encode()
            and auth_data.password == a.password.encode()
        )
        return AuthResult(success=ok, handled=False)

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    kw: dict[str, Any] = {
        "hostname": a.bind,
        "port": a.port,
        "server_hostname": a.name,
        "authenticator": authenticator,
    }
    if a.mode == "smtps":  # aiosmtpd only counts STARTTLS as TLS for auth_require_tls
        kw |= {"ssl_context": ctx, "auth_require_tls": False}
    else:
        kw |= {"tls_context": ctx, "require_starttls": True, "auth_require_tls": True}
    ctl = Controller(Handler(), **kw)
    ctl.start()
    print(f"listening on {a.bind}:{a.port} ({a.mode})", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    ctl.stop()


class _Smtp(smtplib.SMTP):
    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return socket.create_connection((_CONNECT_IP, port), timeout)


class _SmtpSsl(smtplib.SMTP_SSL):
    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = socket.create_connection((_CONNECT_IP, port), timeout)
        return self.context.wrap_socket(sock, server_hostname=host)


def _send(a: argparse.Namespace) -> None:
    ctx = ssl.create_default_context(cafile=a.cafile)
    smtp: smtplib.SMTP
    if a.mode == "smtps":
        smtp = _SmtpSsl(a.host, a.port, context=ctx, timeout=30)
    else:
        smtp = _Smtp(a.host, a.port, timeout=30)
        smtp.ehlo(a.helo)
        smtp.starttls(context=ctx)
    smtp.ehlo(a.helo)
    smtp.login(a.user, a.password)
    for i, path in enumerate(a.messages):
        if i:
            time.sleep(a.gap)
        data = Path(path).read_bytes()
        smtp.sendmail(a.sender, [a.rcpt], data)
        print(json.dumps({"sent": path, "body_sha256": body_digest(data)}), flush=True)
    smtp.quit()


class _Imap(imaplib.IMAP4):
    def _create_socket(self, timeout: float | None) -> socket.socket:
        return socket.create_connection((_CONNECT_IP, self.port), timeout)


class _ImapSsl(imaplib.IMAP4_SSL):
    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock = socket.create_connection((_CONNECT_IP, self.port), timeout)
        ctx: ssl.SSLContext = self.ssl_context
        return ctx.wrap_socket(sock, server_hostname=self.host)


def _fetch(a: argparse.Namespace) -> None:
    ctx = ssl.create_default_context(cafile=a.cafile)
    imap: imaplib.IMAP4
    if a.mode == "imaps":
        imap = _ImapSsl(a.host, a.port, ssl_context=ctx, timeout=30)
    else:
        imap = _Imap(a.host, a.port, timeout=30)
        imap.starttls(ssl_context=ctx)
    imap.login(a.user, a.password)
    imap.select("INBOX")
    seen: set[str] = set()

    def fetch_new() -> None:
        _, data = imap.uid("SEARCH", "ALL")
        for raw in (data[0] or b"").split():
            uid = raw.decode()
            if uid in seen:
                continue
            seen.add(uid)
            _, parts = imap.uid("FETCH", uid, "(RFC822)")
            msg = next((p[1] for p in parts if isinstance(p, tuple)), b"")
            print(json.dumps({"uid": int(uid), "body_sha256": body_digest(msg)}), flush=True)

    fetch_new()
    t_end = time.monotonic() + a.duration
    while time.monotonic() < t_end:
        time.sleep(a.gap)
        imap.noop()
        fetch_new()
    imap.close()
    imap.logout()


def main(argv: list[str] | None = None) -> None:
    """Run the server until SIGTERM, or one client session."""
    global _CONNECT_IP
    ap = argparse.ArgumentParser(prog="sluice.lab.mail")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sv = sub.add_parser("smtpd")
    sv.add_argument("--bind", required=True)
    sv.add_argument("--port", type=int, required=True)
    sv.add_argument("--name", default="mail.lab")
    sv.add_argument("--mode", choices=("starttls", "smtps"), default="starttls")
    sv.add_argument("--maildir", required=True)
    for sp in (sv,):
        sp.add_argument("--cert", required=True)
        sp.add_argument("--key", required=True)
        sp.add_argument("--log", required=True)
    snd = sub.add_parser("send")
    snd.add_argument("--mode", choices=("starttls", "smtps"), default="starttls")
    snd.add_argument("--helo", default="client.lab")
    snd.add_argument("--from", dest="sender", required=True)
    snd.add_argument("--to", dest="rcpt", required=True)
    snd.add_argument("--gap", type=float, default=0.5)
    snd.add_argument("messages", nargs="+")
    fe = sub.add_parser("fetch")
    fe.add_argument("--mode", choices=("imaps", "starttls"), default="imaps")
    fe.add_argument("--gap", type=float, default=1.0)
    fe.add_argument("--duration", type=float, default=3.0)
    for sp in (snd, fe):
        sp.add_argument("--host", required=True)
        sp.add_argument("--connect", required=True)
        sp.add_argument("--port", type=int, required=True)
        sp.add_argument("--cafile", required=True)
    for sp in (sv, snd, fe):
        sp.add_argument("--user", required=True)
        sp.add_argument("--password", required=True)
    a = ap.parse_args(argv)
    if a.cmd == "smtpd":
        _smtpd(a)
    else:
        _CONNECT_IP = a.connect
        (_send if a.cmd == "send" else _fetch)(a)


if __name__ == "__main__":
    main()
