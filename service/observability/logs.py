"""Structured logs: one JSON object per line with the request id and tenant, secrets redacted.

``logging_config`` builds ``settings.LOGGING``. Django applies it in every worker after the uvicorn worker
has set up its loggers, so the server's own loggers (``uvicorn.error``, ``uvicorn.access`` and gunicorn's
in the worker) are taken over too: every line a worker writes is JSON (or text with ``LOG_FORMAT=text``).

The access log is where secrets leak first: uvicorn logs the path *with* its query string, and an
``EventSource`` sends its token as ``?token=<JWT>``. ``RedactFilter`` sits on the access loggers (and on
the handler, for everything else) and rewrites the record's message and arguments before any handler or
Sentry breadcrumb sees them.
"""

from __future__ import annotations

import json
import logging
import traceback
from datetime import UTC, datetime
from typing import Any

from service.env import ConfigError
from service.http import request_id_var, tenant_var
from service.observability.redact import redact

FORMATS = ("json", "text")
ACCESS_LOGGERS = ("uvicorn.access", "gunicorn.access")
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "gunicorn.error")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s %(tenant)s] %(message)s"

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is logged as a field.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "request_id", "tenant", "taskName", "color_message",  # uvicorn's ANSI copy
}  # fmt: skip


def _redact_value(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class ContextFilter(logging.Filter):
    """Stamps ``request_id`` and ``tenant`` from the request's context variables onto every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        if not hasattr(record, "tenant"):
            record.tenant = tenant_var.get()
        return True


class RedactFilter(logging.Filter):
    """Removes API keys, JWTs, bearer credentials and ``token=`` query values from the message and args.

    Arguments are redacted one by one (the access log keeps its five for the JSON fields); when a secret
    only shows once the message is rendered (``"token=%s"`` with an opaque value), the record is replaced
    by its rendered, redacted message.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        # The access loggers and the handler both carry this filter: a record is redacted once (an access
        # line went through it eleven times, a tenth of a storm's CPU); the formatter's last pass stays.
        if getattr(record, "_redacted", False):
            return True
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_value(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _redact_value(value) for key, value in record.args.items()}
        if not isinstance(record.msg, str):
            return True
        try:
            rendered = record.getMessage()
        except (TypeError, ValueError, KeyError):  # bad arguments: logging reports it; keep the text safe
            record.msg = redact(record.msg)
            return True
        redacted = redact(rendered)
        if redacted != rendered:
            record.msg, record.args = redacted, ()
        record._redacted = True  # its message and arguments are clean (a message that is no str is not)
        return True


_second: tuple[int, str] = (-1, "")


def _timestamp(created: float) -> str:
    """RFC 3339 in UTC with microseconds (``2026-11-25T12:00:00.123456Z``); the part up to the second is
    formatted once per second (a per-line ``strftime`` was a fifth of an access line's cost)."""
    global _second
    whole = int(created)
    micros = round((created - whole) * 1_000_000)
    if micros == 1_000_000:
        whole, micros = whole + 1, 0
    if _second[0] != whole:
        _second = (whole, datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{_second[1]}.{micros:06d}Z"


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", "request_id", "tenant", ...}`` on one line.

    Access-log records (uvicorn's five arguments) also get ``client``, ``method``, ``path`` and ``status``.
    Whatever the record carries is redacted: a record ``RedactFilter`` has cleaned (message and arguments)
    only needs its context values checked; anything else it carries (extra fields, a traceback) sends the
    whole line through ``redact`` once more. (That last pass on every line was a quarter of an access
    line's cost, and a storm of reconnects writes one line per stream.)
    """

    def format(self, record: logging.LogRecord) -> str:
        clean = getattr(record, "_redacted", False)
        entry: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": _redact_value(getattr(record, "request_id", request_id_var.get())),
            "tenant": _redact_value(getattr(record, "tenant", tenant_var.get())),
        }
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, _version, status = record.args
            entry.update(client=client, method=method, path=path, status=status)
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in entry and not key.startswith("_"):
                entry[key] = value
                clean = False
        if record.exc_info:
            entry["exc_info"] = "".join(traceback.format_exception(*record.exc_info))
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = record.stack_info
        clean = clean and "exc_info" not in entry and "stack_info" not in entry  # tracebacks: not cleaned
        text = json.dumps(entry, default=str, ensure_ascii=False)
        return text if clean else redact(text)


class TextFormatter(logging.Formatter):
    """The human format (``LOG_FORMAT=text``): context in brackets, secrets redacted all the same."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        record.request_id = getattr(record, "request_id", request_id_var.get())
        record.tenant = getattr(record, "tenant", tenant_var.get())
        return redact(super().format(record))


#: Where log lines go: the server's standard output (containers collect it). ``manage.py`` switches this to
#: standard error before Django loads, so a command's stdout carries only its result (contract: operator
#: commands) and ``create_api_key acme | tail -1`` is the key.
STREAM = "ext://sys.stdout"


def logging_config(level: str = "INFO", fmt: str = "json", *, access_log: bool = True) -> dict[str, Any]:
    """The ``LOGGING`` dict: one handler (on ``STREAM``) for the root and the server's loggers, in ``fmt``."""
    fmt = fmt.strip().lower()
    if fmt not in FORMATS:
        raise ConfigError(f"LOG_FORMAT: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    handler = ["console"]
    server: dict[str, Any] = {"handlers": handler, "level": level, "propagate": False}
    access: dict[str, Any] = {
        "handlers": handler if access_log else [],
        "level": "INFO",
        "propagate": False,
        "filters": ["redact"],
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "context": {"()": ContextFilter},
            "redact": {"()": RedactFilter},
        },
        "formatters": {
            "json": {"()": JsonFormatter},
            "text": {"()": TextFormatter},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "stream": STREAM,
                "formatter": fmt,
                "filters": ["context", "redact"],
            }
        },
        "root": {"handlers": handler, "level": level},
        "loggers": {
            "django": {"handlers": [], "level": level, "propagate": True},  # drop Django's own text handlers
            "django.db.backends": {"level": "WARNING"},
            **{name: dict(server) for name in SERVER_LOGGERS},
            **{name: dict(access) for name in ACCESS_LOGGERS},
        },
    }
