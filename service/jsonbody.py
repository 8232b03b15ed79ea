"""Strict JSON for request bodies: only what RFC 8259 calls JSON, and only what PostgreSQL ``jsonb`` stores.

``json.loads`` accepts ``NaN``, ``Infinity`` and ``-Infinity`` (not JSON), turns ``1e400`` into ``inf``, and
keeps ``"\\u0000"`` and lone surrogates such as ``"\\ud800"`` in strings; ``jsonb`` refuses NUL anywhere and
text must be valid UTF-8. ``parse`` refuses the first kind (``invalid_json``); ``storage_problem`` names the
first value of the second kind so the caller answers ``422 invalid_field`` with its path.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 64  # nesting of arrays and objects in a body (RFC 8259 section 9 lets a parser set a limit)


class InvalidJson(ValueError):
    """The body is not JSON we accept; ``str(exc)`` says why."""


def _no_constant(name: str) -> Any:
    raise InvalidJson(f"{name} is not JSON")


def parse(body: bytes) -> Any:
    """The value of ``body`` (UTF-8 JSON text); ``InvalidJson`` for anything else or nesting past MAX_DEPTH."""
    try:
        # Decoded here: json.loads would also take UTF-16 and UTF-32, which RFC 8259 section 8.1 excludes.
        value = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except InvalidJson:
        raise
    except RecursionError:
        raise InvalidJson(f"nested deeper than {MAX_DEPTH} levels") from None
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        # ValueError: an integer of more than 4300 digits (Python's int limit) among others.
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
