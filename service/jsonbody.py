"""Strict JSON for request bodies: only what RFC 8259 calls JSON, and only what PostgreSQL ``jsonb`` stores.

``json.loads`` accepts ``NaN``, ``Infinity`` and ``-Infinity`` (not JSON), turns ``1e400`` into ``inf``, and
keeps ``"\\u0000"`` and lone surrogates such as ``"\\ud800"`` in strings; ``jsonb`` refuses NUL anywhere and
text must be valid UTF-8. ``parse`` refuses the first kind (``invalid_json``); ``storage_problem`` names the
first value of the second kind so the caller answers ``422 invalid_field`` with its path.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from decimal import Decimal
from typing import Any

MAX_DEPTH = 64  # nesting of arrays and objects in a body (RFC 8259 section 9 lets a parser set a limit)


class InvalidJson(ValueError):
    """The body is not JSON we accept; ``str(exc)`` says why."""


def no_constant(name: str) -> Any:
    """``parse_constant`` for ``json``: ``NaN``, ``Infinity`` and ``-Infinity`` are not JSON (RFC 8259)."""
    raise InvalidJson(f"{name} is not JSON")


def _number(text: str) -> float | Decimal:
    """A JSON number with a fraction or exponent: a float, rounded to double as ``json.loads`` does.

    PostgreSQL's ``numeric`` (inside ``jsonb``) prints positional notation and has no negative zero, while
    ``json.dumps`` writes ``1e+300``, ``1.5e-07`` and ``-0.0``: a stream event built from the text Python
    wrote would then differ from its replay out of the database. Those floats (the ones whose ``repr`` has an
    exponent, and ``-0.0``) become the ``Decimal`` of their ``repr``, which ``dumps`` writes as numeric
    prints it (``Decimal.__format__("f")`` keeps the scale as numeric's ``dscale`` does); other floats stay
    floats (their ``repr`` is already what numeric prints). ``inf`` (``1e400``) stays a float for
    ``storage_problem`` to refuse.
    """
    value = float(text)
    if value == 0.0:
        return _ZERO if math.copysign(1.0, value) < 0 else value
    shown = repr(value)
    if "e" in shown and math.isfinite(value):
        return Decimal(shown)
    return value


def _integer(text: str) -> int | float:
    """A JSON integer; ``inf`` (refused by ``storage_problem``) when no 64-bit float holds it.

    ``json.loads`` keeps integers exact, so ``1`` followed by 400 zeros was stored and delivered while
    ``1e400`` was refused: a browser's ``JSON.parse`` reads both as ``Infinity``. Past 4300 digits Python's
    ``int()`` raised, which was ``400 invalid_json`` with Python's message; such a number is JSON.
    """
    digits = len(text) - (text[0] == "-")
    if digits > _FLOAT_DIGITS:
        return -math.inf if text[0] == "-" else math.inf
    value = int(text)
    return value if abs(value) <= _FLOAT_MAX else (-math.inf if value < 0 else math.inf)


def finite_int(text: str) -> int:
    """``parse_int`` for token claims: a JSON integer, ``InvalidJson`` when no 64-bit float holds it."""
    value = _integer(text)
    if isinstance(value, float):
        raise InvalidJson("a number beyond a 64-bit float")
    return value


def finite_float(text: str) -> float:
    """``parse_float`` for token claims: a JSON number with a fraction or exponent, ``InvalidJson`` past a
    64-bit float (``1e400``)."""
    value = float(text)
    if not math.isfinite(value):
        raise InvalidJson("a number beyond a 64-bit float")
    return value


_FLOAT_MAX = int(sys.float_info.max)
_FLOAT_DIGITS = len(str(_FLOAT_MAX))  # 309: a longer integer is beyond any 64-bit float
_ZERO = Decimal("0.0")  # what numeric prints for -0.0 (and -0e5 ...): it has no negative zero


def unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for ``json``: an object whose member names are unique. RFC 8259 section 4 says
    they SHOULD be and leaves a duplicate's meaning to each reader: ``{"recipient":"a","recipient":"b"}``
    published to ``b``, the last one. Request bodies and token claims (RFC 7519 section 4) refuse it."""
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        name = next(name for name, _ in pairs if name in seen or seen.add(name))  # type: ignore[func-returns-value]
        raise InvalidJson(f"the member name {name[:40]!r} appears twice in one object")
    return value


def parse(body: bytes) -> Any:
    """The value of ``body`` (UTF-8 JSON text); ``InvalidJson`` for anything else or nesting past MAX_DEPTH."""
    try:
        # Decoded here: json.loads would also take UTF-16 and UTF-32, which RFC 8259 section 8.1 excludes.
        value = json.loads(
            body.decode("utf-8"),
            parse_constant=no_constant,
            parse_float=_number,
            parse_int=_integer,
            object_pairs_hook=unique_members,
        )
    except InvalidJson:
        raise
    except RecursionError:
        raise InvalidJson(f"nested deeper than {MAX_DEPTH} levels") from None
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise InvalidJson(str(exc)) from None
    if depth(value) > MAX_DEPTH:
        raise InvalidJson(f"nested deeper than {MAX_DEPTH} levels")
    return value


def depth(value: Any) -> int:
    """How deeply arrays and objects nest in ``value`` (a scalar is 0, ``[]`` is 1); iterative."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        level += 1
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level) for child in item)
    return deepest


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "NUL (\\u0000) cannot be stored"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "lone surrogates (\\ud800-\\udfff without a pair) are not Unicode text"
    return None


def storage_problem(value: Any) -> tuple[str, str] | None:
    """``(path, problem)`` of the first string, key or number ``jsonb`` cannot store, else ``None``.

    The path is relative to ``value``: ``""``, ``.key`` or ``[3]`` steps (keys as written).
    """
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if problem := _text_problem(item):
                return path, problem
        elif isinstance(item, float):
            if not math.isfinite(item):
                return path, "number out of range (beyond a 64-bit float)"
        elif isinstance(item, dict):
            for key, child in item.items():
                key_path = f"{path}.{key}"
                if problem := _text_problem(key):
                    return path, f"key {key!r}: {problem}"
                stack.append((child, key_path))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(item))
    return None


def stored(text: str) -> Any:
    """A ``jsonb`` value as PostgreSQL printed it, numbers with a fraction kept as ``Decimal`` (their exact
    text): ``dumps`` and the API's renderer write them back unchanged (``0.00000015``, ``100.0``)."""
    return json.loads(text, parse_float=Decimal)


def dumps(value: Any, *, sort_keys: bool = False, default: Callable[[Any], Any] | None = None) -> str:
    """Compact JSON text of a parsed body (``parse``), numbers written as PostgreSQL ``numeric`` prints them.

    The C encoder runs first; only a value holding a ``Decimal`` (see ``_number``) takes the small Python
    writer below, which writes each ``Decimal`` positionally (``format(d, "f")``).
    """
    try:
        return json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, sort_keys=sort_keys, default=default
        )
    except TypeError:
        return "".join(_write(value, sort_keys, default))


def _write(value: Any, sort_keys: bool, default: Callable[[Any], Any] | None) -> list[str]:
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:  # iterative: no recursion limit to meet, whatever the nesting
        item = stack.pop()
        if isinstance(item, _Raw):
            out.append(item.text)
        elif isinstance(item, Decimal):
            out.append(format(item, "f"))
        elif isinstance(item, dict):
            keys = sorted(item) if sort_keys else list(item)
            parts: list[Any] = [_Raw("{")]
            for i, key in enumerate(keys):
                prefix = "," if i else ""
                parts += [_Raw(prefix + json.dumps(key, ensure_ascii=False) + ":"), item[key]]
            parts.append(_Raw("}"))
            stack.extend(reversed(parts))
        elif isinstance(item, list):
            parts = [_Raw("[")]
            for i, child in enumerate(item):
                if i:
                    parts.append(_Raw(","))
                parts.append(child)
            parts.append(_Raw("]"))
            stack.extend(reversed(parts))
        else:
            out.append(json.dumps(item, ensure_ascii=False, default=default))
    return out


class _Raw:
    """Text ``_write`` emits as is (punctuation)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text
