"""Real-shaped pages and their clones for the mirror tests (generated, seeded)."""

from __future__ import annotations

import random
from pathlib import Path

from sluice.registry.stores import open_store
from sluice.registry.sync import import_files

_WORDS = [
    "ставки",
    "спорт",
    "футбол",
    "хоккей",
    "теннис",
    "линия",
    "коэффициенты",
    "бонус",
    "регистрация",
    "вход",
    "пополнение",
    "вывод",
    "матч",
    "турнир",
    "лига",
    "прогноз",
    "экспресс",
    "live",
    "трансляция",
    "результат",
    "статистика",
    "клиент",
    "поддержка",
    "правила",
    "безопасность",
    "лицензия",
    "приложение",
    "мобильная",
    "версия",
    "акции",
    "игроки",
    "выигрыш",
    "событие",
    "bet",
    "sport",
    "football",
    "odds",
    "bonus",
    "live",
    "casino",
    "slots",
    "jackpot",
    "account",
    "deposit",
    "withdraw",
    "promo",
]

ICON = bytes(range(256)) * 4
"""A favicon's bytes (the same for the site and its clones)."""


def landing(
    seed: int = 1, *, words: int = 500, title: str = "FonBet — ставки на спорт", skin: str = "blue"
) -> str:
    """A bookmaker landing page: nav, login form, Metrika counter, text paragraphs, footer."""
    rng = random.Random(seed)
    text = [rng.choice(_WORDS) for _ in range(words)]
    paras = "\n".join(f"<p>{' '.join(text[i : i + 25])}</p>" for i in range(0, words, 25))
    return f"""<!doctype html>
<html lang="ru"><head><meta charset="utf-8"><title>{title}</title>
<meta name="description" content="Букмекерская контора: ставки на спорт онлайн">
<link rel="icon" href="/favicon.ico"><style>body{{background:{skin}}} .nav a{{color:{skin}}}</style>
<script>(function(m,e,t,r,i,k,a){{}})(window,document,"script","https://mc.yandex.ru/metrika/tag.js","ym");
ym(48151623, "init", {{clickmap:true}});</script></head>
<body><div class="nav"><a href="/live">Live</a> <a href="/line">Линия</a> <a href="/casino">Казино</a>
<a href="/bonus">Бонусы</a> <a href="/app">Приложение</a></div>
<form action="/login" method="post"><input name="login"><input type="password" name="password">
<button>Войти</button></form><main>{paras}</main>
<footer><a href="/rules">Правила</a> <a href="/help">Помощь</a></footer></body></html>"""


def edited(html: str, share: float, seed: int = 7) -> str:
    """The page with ``share`` of the words of its paragraphs replaced by other words."""
    rng = random.Random(seed)
    out = []
    for line in html.split("\n"):
        if line.startswith("<p>"):
            ws = line[3:-4].split()
            for i in range(len(ws)):
                if rng.random() < share:
                    ws[i] = rng.choice(["погода", "рецепт", "новости", "кино", "музыка", "travel", "garden"])
            line = "<p>" + " ".join(ws) + "</p>"
        out.append(line)
    return "\n".join(out)


def unrelated(seed: int = 99) -> str:
    """A look-alike name's page that is about something else (a blog about gardening)."""
    rng = random.Random(seed)
    words = [
        "garden",
        "tomato",
        "soil",
        "water",
        "seeds",
        "spring",
        "flowers",
        "compost",
        "harvest",
        "greenhouse",
        "shade",
        "roses",
    ]
    paras = "\n".join("<p>" + " ".join(rng.choice(words) for _ in range(25)) + "</p>" for _ in range(20))
    return f"""<!doctype html><html><head><title>Fonbet garden notes</title></head>
<body><header><h1>My garden</h1></header><article>{paras}</article>
<aside><ul><li><a href="/archive">Archive</a></li></ul></aside></body></html>"""


# -- a network namespace with web servers in it (root) -----------------------------------------


def namespace_problem(*tools: str) -> str:
    """Why the namespace tests cannot run here ("" when they can)."""
    import os
    import shutil

    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", *tools):
        if not shutil.which(tool):
            return f"{tool} not installed"
    return ""


def wait_port(addr: str, port: int, timeout: float = 30.0) -> None:
    """Return once something accepts connections on addr:port (readiness, not a sleep)."""
    import socket
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection((addr, port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listens on {addr}:{port}")


class Namespace:
    """A network namespace joined to this one by a veth pair: ``host`` here, ``peer`` inside.
    ``start`` runs servers inside; leaving the ``with`` block stops them and removes it all."""

    def __init__(self, name: str, host: str, peer: str) -> None:
        self.name, self.host, self.peer = name, host, peer
        self.procs: list[object] = []

    def __enter__(self) -> Namespace:
        import subprocess

        ns, sh = self.name, ["ip", "netns", "exec", self.name]
        for cmd in (
            ["ip", "netns", "add", ns],
            ["ip", "link", "add", f"{ns}a", "type", "veth", "peer", "name", f"{ns}b"],
            ["ip", "link", "set", f"{ns}b", "netns", ns],
            ["ip", "addr", "add", f"{self.host}/30", "dev", f"{ns}a"],
            ["ip", "link", "set", f"{ns}a", "up"],
            [*sh, "ip", "addr", "add", f"{self.peer}/30", "dev", f"{ns}b"],
            [*sh, "ip", "link", "set", f"{ns}b", "up"],
            [*sh, "ip", "link", "set", "lo", "up"],
        ):
            subprocess.run(cmd, check=True)
        return self

    def start(self, cmd: list[str], **kw: object) -> None:
        """Run ``cmd`` inside the namespace until the block ends."""
        import subprocess

        self.procs.append(subprocess.Popen(["ip", "netns", "exec", self.name, *cmd], **kw))  # type: ignore[call-overload]

    def __exit__(self, *exc: object) -> None:
        import subprocess

        for p in self.procs:
            assert isinstance(p, subprocess.Popen)
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run(["ip", "netns", "del", self.name], check=False, stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "link", "del", f"{self.name}a"], check=False, stderr=subprocess.DEVNULL)


def nginx_conf(tmp: object, peer: str, roots: dict[str, object], extra: str = "") -> str:
    """An nginx.conf serving each name from its root on peer:80 (``extra``: more server blocks)."""
    servers = "\n".join(
        f"server {{ listen {peer}:80; server_name {n}; root {r}; }}" for n, r in roots.items()
    )
    return (
        f"daemon off; user root; worker_processes 1; pid {tmp}/nginx.pid;\n"
        f"error_log {tmp}/err.log;\n"
        f"events {{ worker_connections 64; }}\nhttp {{ access_log off; {servers}\n{extra} }}\n"
    )


def peer_transport(peer: str, ports: dict[str, int]) -> object:
    """An httpx transport sending every request to ``peer`` (the port by host name, 80 by default),
    keeping the Host header: the namespace's servers tell the sites apart by name."""
    import httpx

    class _Transport(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            h = request.url.host
            p = ports.get(h, 80)
            request.url = request.url.copy_with(host=peer, port=p)
            request.headers["Host"] = h if p == 80 else f"{h}:{p}"
            return super().handle_request(request)

    return _Transport()


def blocked_register(tmp_path: Path, *names: str) -> Path:
    """A SQLite register listing ``names`` as blocked domains (source ``rkn-test``)."""
    db = tmp_path / "reg.sqlite"
    lst = tmp_path / "blocked.txt"
    lst.write_text("".join(f"{n}\n" for n in names))
    store = open_store(db, create=True)
    import_files(store, [lst], "domains", source="rkn-test")
    store.close()
    return db
