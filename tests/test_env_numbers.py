"""Numbers read from the environment and the command line take ASCII digits only (``service.numbers``).

``int()``/``float()`` accept ``"١٢"``, ``"_8000"`` (no: ``"8_000"``), ``"+80"``, ``" 80 "``, ``"inf"``, ``"1e3"``;
a deployment typo must fail at start-up with the variable's name, not run on a surprising value.
"""

from __future__ import annotations

import argparse
import runpy
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service import devserver
from service.env import ConfigError, env_float, env_int
from service.numbers import ascii_decimal, ascii_int
from tenants.management.options import positive_int

ROOT = Path(__file__).resolve().parent.parent
BAD_INTS = [
    "١٢",
    "_8000",
    "8_000",
    "+80",
    "-1",
    "0x50",
    "8000.0",
    "1e3",
    "²",
    "\u0665",
    "8 000",
    "\uff18\uff10",
    "",
    "9" * 20,
]
BAD_FLOATS = [
    "\u0661.\u0665",
    "_1",
    "1_0",
    "+1",
    "-1",
    "inf",
    "nan",
    "Infinity",
    "1e3",
    "0x1p3",
    ".",
    "1.5.2",
    "١٢",
]


@pytest.mark.parametrize("raw", [r for r in BAD_INTS if r])
def test_env_int_refuses_what_is_not_ascii_digits_naming_the_variable(monkeypatch, raw: str):
    monkeypatch.setenv("BEACON_TEST_NUMBER", raw)
    with pytest.raises(ConfigError, match=r"^BEACON_TEST_NUMBER: .*ASCII digits"):
        env_int("BEACON_TEST_NUMBER", 5)


@pytest.mark.parametrize("raw", BAD_FLOATS)
def test_env_float_refuses_what_is_not_an_ascii_decimal_naming_the_variable(monkeypatch, raw: str):
    monkeypatch.setenv("BEACON_TEST_SECONDS", raw)
    with pytest.raises(ConfigError, match=r"^BEACON_TEST_SECONDS: .*ASCII digits"):
        env_float("BEACON_TEST_SECONDS", 1.0)


@pytest.mark.parametrize(("raw", "value"), [("8000", 8000), (" 8000\t", 8000), ("0", 0), ("007", 7)])
def test_env_int_takes_ascii_digits(monkeypatch, raw: str, value: int):
    monkeypatch.setenv("BEACON_TEST_NUMBER", raw)
    assert env_int("BEACON_TEST_NUMBER", 5) == value


@pytest.mark.parametrize(
    ("raw", "value"), [("2", 2.0), ("0.5", 0.5), (".5", 0.5), ("5.", 5.0), (" 20 ", 20.0)]
)
def test_env_float_takes_ascii_decimals(monkeypatch, raw: str, value: float):
    monkeypatch.setenv("BEACON_TEST_SECONDS", raw)
    assert env_float("BEACON_TEST_SECONDS", 1.0) == value


def test_unset_or_empty_gives_the_default_and_limits_still_apply(monkeypatch):
    monkeypatch.delenv("BEACON_TEST_NUMBER", raising=False)
    assert env_int("BEACON_TEST_NUMBER", 5) == 5
    monkeypatch.setenv("BEACON_TEST_NUMBER", "")
    assert env_int("BEACON_TEST_NUMBER", 5) == 5
    monkeypatch.setenv("BEACON_TEST_NUMBER", "70000")
    with pytest.raises(ConfigError, match=r"^BEACON_TEST_NUMBER: must be at most 65535"):
        env_int("BEACON_TEST_NUMBER", 5, maximum=65535)


@given(st.text(max_size=12))
def test_ascii_readers_accept_exactly_ascii_digit_forms(raw: str):
    value = ascii_int(raw)
    if raw.isascii() and raw.isdigit() and len(raw) <= 19:
        assert value == int(raw)
    else:
        assert value is None
    number = ascii_decimal(raw)
    if number is not None:
        assert raw.isascii() and set(raw) <= set("0123456789.") and raw.count(".") <= 1
        assert number == float(raw)


@pytest.mark.parametrize("raw", BAD_INTS)
def test_devserver_ports_take_ascii_digits(raw: str, capsys):
    if not raw:
        assert devserver.env_port({"PORT": raw}, "PORT", 8000) == 8000
        return
    assert devserver.env_port({"PORT": raw}, "PORT", 8000) is None
    assert "PORT must be a port number" in capsys.readouterr().err
    assert devserver.env_port({"PORT": "70000"}, "PORT", 8000) is None
    assert devserver.env_port({"PORT": " 8001 "}, "PORT", 8000) == 8001


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("WEB_CONCURRENCY", "٢"),
        ("WEB_CONCURRENCY", "+2"),
        ("PORT", "١٢"),
        ("PORT", "_8000"),
        ("PORT", "70000"),
        ("METRICS_PORT", "9_464"),
        ("DRAIN_SECONDS", "inf"),
        ("DRAIN_SECONDS", "1e1"),
        ("DRAIN_SECONDS", "٢"),
    ],
)
def test_gunicorn_config_refuses_numbers_that_are_not_ascii_digits(
    monkeypatch, tmp_path, name: str, raw: str
):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    for other in ("WEB_CONCURRENCY", "PORT", "BIND", "METRICS_PORT", "DRAIN_SECONDS"):
        monkeypatch.delenv(other, raising=False)
    monkeypatch.setenv(name, raw)
    with pytest.raises(SystemExit, match=name):
        runpy.run_path(str(ROOT / "deploy" / "gunicorn.conf.py"))
    monkeypatch.delenv(name)
    monkeypatch.setenv("PORT", "8123")
    assert runpy.run_path(str(ROOT / "deploy" / "gunicorn.conf.py"))["bind"] == ["0.0.0.0:8123"]


@pytest.mark.parametrize("raw", ["١٢", "+5", "1_0", "²", "0", "-3"])
def test_tenant_limit_options_take_ascii_digits(raw: str):
    with pytest.raises(argparse.ArgumentTypeError):
        positive_int(raw)
    assert positive_int("12") == 12


@pytest.mark.parametrize("port", ["١٢", "+80", "_1", "99999", "8 0"])
def test_url_ports_take_ascii_digits_naming_the_variable(monkeypatch, port: str):
    from service.env import database_from_url, env_url

    with pytest.raises(ConfigError, match=r"^DATABASE_URL: the port"):
        database_from_url(f"postgresql://u@db:{port}/beacon")
    monkeypatch.setenv("BROKER_URL", f"redis://cache:{port}/0")
    with pytest.raises(ConfigError, match=r"^BROKER_URL: the port"):
        env_url("BROKER_URL", "", {"redis"})
    assert database_from_url("postgresql://u@db:5433/beacon")["PORT"] == "5433"
