"""Mail: SMTP submission with STARTTLS or implicit TLS (aiosmtpd), IMAP over TLS (dovecot run by hand).

The submission server is :mod:`sluice.lab.mail` (aiosmtpd, AUTH only after TLS); clients are
swaks, curl and Python's smtplib.  The IMAP server is Debian's dovecot with a config in the
work directory (no system service); clients are curl and Python's imaplib, which also polls the
mailbox while new mail arrives.  A message counts when the digest of its body is the same on
both ends.
"""

from __future__ import annotations

__all__ = ["Imap", "SmtpSubmission"]

import base64
import json
import mailbox
import re
import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import ClassVar

from sluice.lab.httpd import read_server_log
from sluice.lab.mail import body_digest
from sluice.lab.scenario import PROTO, FlowRule, Outcome, Scenario, Session
from sluice.lab.topology import LabError

_USERS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")
_DOMAINS = ("example.org", "example.net", "mail.example", "corp.example")


def _message(s: Session, i: int, sender: str, rcpt: str) -> bytes:
    """A random message: plain text, or text with a base64 attachment of up to ~1.5 MB."""
    words = [secrets.token_hex(s.rng.randrange(2, 6)) for _ in range(s.rng.randrange(20, 400))]
    text = "\n".join(" ".join(words[j : j + 10]) for j in range(0, len(words), 10))
    head = (
        f"From: {sender}\nTo: {rcpt}\nSubject: report {i} {secrets.token_hex(3)}\n"
        f"Message-ID: <{secrets.token_hex(8)}@{sender.split('@')[1]}>\n"
        f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\nMIME-Version: 1.0\n"
    )
    if s.rng.random() < 0.5:
        msg = head + "Content-Type: text/plain; charset=utf-8\n\n" + text + "\n"
        return msg.replace("\n", "\r\n").encode()
    blob = base64.encodebytes(s.rng.randbytes(s.rng.randrange(1_000, 1_500_000))).decode()
    msg = (
        head + 'Content-Type: multipart/mixed; boundary="b1"\n\n--b1\nContent-Type: text/plain\n\n'
        f"{text}\n--b1\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\n\n"
        f"{blob}--b1--\n"
    )
    return msg.replace("\n", "\r\n").encode()  # RFC 5322 line ends (servers read CRLF lines)


def _account(s: Session) -> tuple[str, str, str, str]:
    """(user, password, sender address, recipient address)."""
    user = s.choose("user", _USERS)
    dom = s.choose("domain", _DOMAINS)
    rcpt = f"{s.rng.choice([u for u in _USERS if u != user])}@{s.rng.choice(_DOMAINS)}"
    # a letter first: a url-safe token starts with "-" one time in 64, and the lab's mail tools
    # (argparse, swaks) then read the password as an option (a flaky lab test did)
    return user, "p" + secrets.token_urlsafe(12), f"{user}@{dom}", rcpt


class SmtpSubmission(Scenario):
    """Mail submission (587 STARTTLS or 465 implicit TLS) with AUTH, one or more messages."""

    name = "smtp-submission"
    summary = "SMTP submission STARTTLS/implicit TLS + AUTH (aiosmtpd), swaks, curl or smtplib"
    traffic_class = "benign"
    family = "app:smtp"
    programs: ClassVar[dict[str, str]] = {"swaks": "swaks"}
    variants = ("starttls-swaks", "starttls-curl", "smtps-smtplib", "starttls-smtplib", "smtps-curl")

    def run(self, s: Session, variant: str) -> Outcome:
        mode, client = variant.split("-")
        a = s.addr
        name = s.hostname()
        cert = s.ca.issue(name)
        port = s.port("port", 587 if mode == "starttls" else 465, 0.8)
        user, pw, sender, rcpt = _account(s)
        n = s.rng.randrange(1, 4) if client != "swaks" else 1
        msgs = [s.file(f"msg{i}.eml", _message(s, i, sender, rcpt).decode()) for i in range(n)]
        want = [body_digest(m.read_bytes()) for m in msgs]
        log = s.workdir / "smtpd.jsonl"
        s.topo.spawn(
            "server",
            "smtpd",
            [
                *(s.python, "-m", "sluice.lab.mail", "smtpd", "--bind", a.server_ip, "--port", str(port)),
                *("--name", name, "--mode", mode, "--maildir", str(s.workdir / "Maildir")),
                *("--cert", str(cert.cert), "--key", str(cert.key), "--log", str(log)),
                *("--user", user, "--password", pw),
            ],
        )
        s.topo.wait_port("server", port)
        gap = s.rng.uniform(0.2, max(0.3, s.duration_s / max(n, 1)))
        stacks = {"swaks": "swaks-openssl", "curl": "curl-openssl", "smtplib": "python-smtplib"}
        s.identify(stack=stacks[client], impl="aiosmtpd")
        if client == "swaks":
            argv = ["swaks", "--server", a.server_ip, "--port", str(port), "--ehlo", "client.lab"]
            argv += ["--tls-on-connect" if mode == "smtps" else "--tls", "--tls-sni", name]
            argv += ["--tls-verify", "--tls-ca-path", str(s.ca.cert)]
            argv += [
                "--auth",
                s.choose("auth", ("PLAIN", "LOGIN")),
                "--auth-user",
                user,
                "--auth-password",
                pw,
            ]
            argv += ["--from", sender, "--to", rcpt, "--data", str(msgs[0])]
            r = s.topo.run("client", argv, check=False, timeout=60)
            software = ["swaks"]
        elif client == "curl":
            scheme = "smtps" if mode == "smtps" else "smtp"
            argv = ["curl", "-sS", "--ssl-reqd", "--cacert", str(s.ca.cert)]
            argv += ["--resolve", f"{name}:{port}:{a.server_ip}", "--user", f"{user}:{pw}"]
            argv += ["--mail-from", sender, "--mail-rcpt", rcpt]
            for i, m in enumerate(msgs):
                if i:
                    time.sleep(gap)
                r = s.topo.run(
                    "client",
                    [*argv, "--upload-file", str(m), f"{scheme}://{name}:{port}/client.lab"],
                    check=False,
                    timeout=60,
                )
            software = ["curl"]
        else:
            argv = [s.python, "-m", "sluice.lab.mail", "send", "--mode", mode, "--host", name]
            argv += ["--connect", a.server_ip, "--port", str(port), "--cafile", str(s.ca.cert)]
            argv += ["--user", user, "--password", pw, "--from", sender, "--to", rcpt, "--gap", f"{gap:.2f}"]
            r = s.topo.run("client", [*argv, *map(str, msgs)], check=False, timeout=60)
            software = ["python3"]
        recs = [x for x in read_server_log(log) if x.get("client") == a.client_ip]
        got = [x.get("body_sha256") for x in recs if x.get("tls") and x.get("auth")]
        out = Outcome(
            rules=[FlowRule("carrier", PROTO["tcp"], a.server_ip, port, "benign", "app:smtp")],
            software=[*software, "python3"],
        )
        ok = sum(1 for d in want if d in got)
        out.checks |= {"messages_sent": n, "messages_delivered": ok, "server_sessions": len(recs)}
        if ok != n:
            out.problems.append(f"{ok} of {n} messages arrived intact: {r.stderr.strip()[-200:]}")
        out.carried_bytes = sum(len(m.read_bytes()) for m in msgs)
        return out


def _dovecot_conf(s: Session, port: int, imaps: bool, cert: Path, key: Path, users: Path) -> Path:
    w = s.workdir
    (w / "dovecot" / "state").mkdir(parents=True, exist_ok=True)
    ports = (0, port) if imaps else (port, 0)
    listener = (
        f"inet_listener imap {{\n    port = {ports[0]}\n  }}\n"
        f"  inet_listener imaps {{\n    port = {ports[1]}\n    ssl = yes\n  }}"
    )
    return s.file(
        "dovecot.conf",
        f"""base_dir = {w}/dovecot
state_dir = {w}/dovecot/state
log_path = {w}/dovecot.log
protocols = imap
listen = {s.addr.server_ip}
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = {s.choose("imap_tls_min", ("TLSv1.2", "TLSv1.3"))}
disable_plaintext_auth = yes
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {users}
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={w}/mail/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  chroot =
  {listener}
}}
service anvil {{
  chroot =
}}
""",
    )


class Imap(Scenario):
    """IMAP over TLS (993) or IMAP+STARTTLS (143) to dovecot: fetch, then poll while mail arrives."""

    name = "imap"
    summary = "IMAPS / IMAP+STARTTLS to dovecot (run by hand), curl or imaplib polling for new mail"
    traffic_class = "benign"
    family = "app:imap"
    programs: ClassVar[dict[str, str]] = {"dovecot": "dovecot-imapd"}
    variants = ("imaps-imaplib", "starttls-curl", "starttls-imaplib", "imaps-curl")

    def run(self, s: Session, variant: str) -> Outcome:
        mode, client = variant.split("-")
        a = s.addr
        name = s.hostname()
        cert = s.ca.issue(name)
        imaps = mode == "imaps"
        port = s.port("port", 993 if imaps else 143, 0.8)
        user, pw, sender, _ = _account(s)
        users = s.file("dovecot.users", f"{user}:{{PLAIN}}{pw}\n", 0o600)
        shutil.chown(users, "dovecot")  # dovecot's auth process reads it
        box_dir = s.workdir / "mail" / user / "Maildir"
        box_dir.parent.mkdir(parents=True)
        box = mailbox.Maildir(box_dir, create=True)
        n = s.rng.randrange(2, 9)
        want: dict[str, int] = {}
        for i in range(n):
            data = _message(s, i, f"{s.rng.choice(_USERS)}@{s.rng.choice(_DOMAINS)}", sender)
            box.add(data)
            want[body_digest(data)] = len(data)
        shutil.chown(s.workdir / "mail", "nobody", "nogroup")
        for p in (s.workdir / "mail").rglob("*"):
            shutil.chown(p, "nobody", "nogroup")
        conf = _dovecot_conf(s, port, imaps, cert.cert, cert.key, users)
        s.topo.spawn("server", "dovecot", ["dovecot", "-F", "-c", str(conf)])
        s.topo.wait_port("server", port)
        s.identify(stack="python-imaplib" if client == "imaplib" else "curl-openssl", impl="dovecot")
        out = Outcome(
            rules=[FlowRule("carrier", PROTO["tcp"], a.server_ip, port, "benign", "app:imap")],
            software=["dovecot", "python3" if client == "imaplib" else "curl"],
        )
        got: list[str] = []
        if client == "imaplib":
            gap = s.choose("poll_s", (0.3, 0.5, 1.0))
            late = _message(s, n, f"{s.rng.choice(_USERS)}@{s.rng.choice(_DOMAINS)}", sender)
            want[body_digest(late)] = len(late)
            n += 1
            timer = threading.Timer(max(0.2, s.duration_s / 2), box.add, (late,))
            timer.start()
            argv = [s.python, "-m", "sluice.lab.mail", "fetch", "--mode", mode, "--host", name]
            argv += ["--connect", a.server_ip, "--port", str(port), "--cafile", str(s.ca.cert)]
            argv += ["--user", user, "--password", pw, "--gap", str(gap)]
            argv += ["--duration", str(max(s.duration_s, 1.0) + 2 * gap)]
            r = s.topo.run("client", argv, check=False, timeout=s.duration_s + 60)
            timer.join()
            got = [json.loads(x)["body_sha256"] for x in r.stdout.splitlines() if x.startswith("{")]
        else:
            scheme = "imaps" if imaps else "imap"
            argv = ["curl", "-sS", "--ssl-reqd", "--cacert", str(s.ca.cert), "--user", f"{user}:{pw}"]
            argv += ["--resolve", f"{name}:{port}:{a.server_ip}", "--rate", f"{s.rng.randrange(30, 240)}/m"]
            dl = s.workdir / "fetched"
            dl.mkdir()
            for uid in range(1, n + 1):
                argv += ["-o", str(dl / f"{uid}.eml"), f"{scheme}://{name}:{port}/INBOX;UID={uid}"]
            r = s.topo.run("client", argv, check=False, timeout=s.duration_s + 60)
            got = [body_digest(p.read_bytes()) for p in sorted(dl.glob("*.eml"))]
        ok = sum(1 for d in want if d in got)
        logins = re.findall(r"Login: user=<([^>]*)>.*?rip=([\d.]+).*?TLS", _read(s.workdir / "dovecot.log"))
        out.checks |= {"messages": n, "messages_fetched": ok, "logins_tls": len(logins)}
        if ok != n:
            out.problems.append(f"{ok} of {n} messages fetched intact: {r.stderr.strip()[-200:]}")
        if (user, a.client_ip) not in logins:
            out.problems.append(f"dovecot logged no TLS login of {user} from {a.client_ip}: {logins}")
        out.carried_bytes = sum(size for d, size in want.items() if d in got)
        return out


def _read(p: Path) -> str:
    try:
        return p.read_text(errors="replace")
    except FileNotFoundError as exc:
        raise LabError("lab.no_log", str(p)) from exc
