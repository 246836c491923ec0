"""Real-shaped pages and their clones for the mirror tests (generated, seeded)."""

from __future__ import annotations

import random

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
