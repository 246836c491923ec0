"""The crypto catalogue: the shipped file loads, names the exchanges the issue lists, refuses bad entries."""

from __future__ import annotations

import pytest

from sluice.crypto.catalogue import default_crypto_catalogue, loads_crypto_catalogue
from sluice.errors import ConfigError


def test_shipped_catalogue_has_the_exchanges_asked_for() -> None:
    cat = default_crypto_catalogue()
    ids = {e.id for e in cat.entries}
    assert {"binance", "bybit", "okx", "kraken", "coinbase", "kucoin", "htx", "gate", "mexc", "bitget"} <= ids
    assert "garantex" in ids
    assert all(e.source for e in cat.entries)
    got = cat.lookup("api.huobi.pro.")
    assert got is not None and got[0].family == "exchange:htx"
    got = cat.lookup("xmr-eu1.nanopool.org")
    assert got is not None and got[0].family == "stratum"
    assert cat.lookup("binance.com.evil.example") is None


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('[[entry]]\nid = "x"\nbrand = "X"\nkind = "casino"\ndomains = ["x.com"]\nsource = "s"', "kind"),
        ('[[entry]]\nid = "X!"\nbrand = "X"\nkind = "exchange"\ndomains = ["x.com"]\nsource = "s"', "id"),
        ('[[entry]]\nid = "x"\nbrand = "X"\nkind = "exchange"\ndomains = ["a b"]\nsource = "s"', "domains"),
        ('[[entry]]\nid = "x"\nbrand = "X"\nkind = "exchange"\ndomains = ["x.com"]', "source"),
        ("[[entry]\n", "crypto_catalogue"),
    ],
)
def test_bad_entries_are_refused_with_the_field(text: str, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        loads_crypto_catalogue(text)
    assert field in str(info.value)
