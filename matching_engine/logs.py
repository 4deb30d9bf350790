"""Structured logs with the standard library: one JSON object per line, on stderr.

Every line has ``time`` (RFC 3339, UTC), ``level``, ``logger`` and ``message``; the id of the
request being served (``request_id``, bound by the gateway in :data:`request_id`) and the
current trace and span ids when a trace is being recorded; and every field passed as
``extra={...}``. State changes log an ``event`` field (``mode.set``, ``breaker.transition``,
``recovery``, ``snapshot``, ``http.request`` ...) so that they can be filtered without
parsing messages. ``json=False`` gives the same content as plain text, for humans.

Nothing that authenticates should ever be logged: the gateway never logs headers, bodies or
query strings. :class:`RedactingFilter` is the last line of defence: whatever looks like an API
key, in the message, a field or a stack trace, has its secret masked before any handler sees it.
"""

from __future__ import annotations

import json as jsonlib
import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

from opentelemetry import trace

__all__ = [
    "JsonFormatter",
    "RedactingFilter",
    "TextFormatter",
    "configure_logging",
    "is_configured",
    "redact",
    "request_id",
]

#: The id of the request being served, for logs (``None`` outside a request).
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

_TRACE = 5  # uvicorn's level below debug, which its --log-level accepts
_API_KEY = re.compile(r"(me_[0-9a-f]{16})_[A-Za-z0-9_-]{43}")
_MASK = r"\1_[REDACTED]"

# Attributes every LogRecord has; anything else on a record came from ``extra``. (uvicorn adds
# its message again with terminal colours: not a field.)
_RECORD_ATTRIBUTES = frozenset(
    {
        *logging.LogRecord("", 0, "", 0, "", (), None).__dict__,
        "message",
        "asctime",
        "taskName",
        "color_message",
    }
)


def redact(text: str) -> str:
    """``text`` with the secret of anything that looks like an API key masked (the public key
    id is kept, so the line still says which key it was)."""
    return _API_KEY.sub(_MASK, text) if "me_" in text else text


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        name: value for name, value in record.__dict__.items() if name not in _RECORD_ATTRIBUTES
    }


class RedactingFilter(logging.Filter):
    """Mask API keys in a record's message, fields and stack traces, in place.

    Installed on the handler, so it sees the records of every logger that reaches it.
    """

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit the format: keep both, never raise here
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = redact(message), None
        for name, value in _extras(record).items():
            if isinstance(value, str):
                setattr(record, name, redact(value))
            elif not isinstance(value, int | float | bool | None):
                text = str(value)
                if redact(text) != text:
                    setattr(record, name, redact(text))
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def _context_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The request id and the trace of the moment the record was made."""
    fields: dict[str, Any] = {}
    rid = request_id.get()
    if rid is not None:
        fields["request_id"] = rid
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        fields["trace_id"] = format(span.trace_id, "032x")
        fields["span_id"] = format(span.span_id, "016x")
    return fields


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update(_context_fields(record))
        for name, value in _extras(record).items():
            payload.setdefault(name, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            payload["exception"] = record.exc_text
        if record.stack_info:
            payload["stack"] = self.formatStack(record.stack_info)
        return jsonlib.dumps(payload, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...``, for a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {**_context_fields(record), **_extras(record)}
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if fields:
            line += " " + " ".join(f"{name}={value}" for name, value in fields.items())
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class _StreamHandler(logging.Handler):
    """Write each record on a line of ``stream``, or of the ``sys.stderr`` of the moment (as
    :data:`logging.lastResort` does), so that redirecting stderr redirects the logs."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__()
        self._stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = self._stream if self._stream is not None else sys.stderr
            stream.write(self.format(record) + "\n")
            stream.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


_handler: logging.Handler | None = None


def is_configured() -> bool:
    """Whether the process logs somewhere already: :func:`configure_logging` ran, or the root
    logger has handlers (a ``--log-config`` given to uvicorn, a test runner's capture)."""
    return _handler is not None or bool(logging.getLogger().handlers)


def configure_logging(
    level: str, json: bool = True, *, stream: TextIO | None = None
) -> logging.Handler:
    """Send every log record at ``level`` or above to ``stream`` (stderr by default), one JSON
    object per line (or plain text without ``json``), with API keys masked.

    Installs one handler on the root logger, replacing the one an earlier call installed, and
    answers it.
    """
    global _handler
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    handler = _StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    handler.addFilter(RedactingFilter())
    root.addHandler(handler)
    root.setLevel(_TRACE if level.lower() == "trace" else level.upper())
    _handler = handler
    return handler
