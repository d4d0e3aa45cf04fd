"""The log lines of `gatewayz serve` (issue 16): `--log-format text` for a terminal, `json` for a
log pipeline (one JSON object a line on stderr: what Docker, Kubernetes, Loki or CloudWatch Logs
read without a parser).

One `logging.config.dictConfig` covers uvicorn's loggers (`uvicorn.error`, and `uvicorn.access`
with `--access-log`), the gateway's (`gatewayz.*`: warnings, billing notices, one line per
inference request with `GATEWAYZ_REQUEST_LOG=1`) and the root logger (libraries' warnings). A
JSON line holds `time` (UTC, ISO 8601), `level`, `logger`, `message`, the fields a call passed as
`extra=` (`request_id`, the request record of `GATEWAYZ_REQUEST_LOG`, ...), an access line's
`client`, `method`, `path`, `status`, and `exception` with the traceback.

The gateway logs ids, never a key or a token, but an exception's message is not its own to
choose (an upstream URL with `?key=`, a header quoted by a bug): `Redact`, a filter on every
handler, masks anything shaped like a key or a bearer token (the patterns Sentry's `before_send`
uses, `shared.observe.errors.redact`) in the message, the traceback and the fields. On Lambda
the Powertools Logger writes the request lines, and `redact_handlers` puts the same filter on the
runtime's own log handler (`shared/observe/lambda_handler.py`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

FORMATS = ("text", "json")

# Attributes every LogRecord has: anything else on a record came from `extra=`.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS and not k.startswith("_")}


class Redact(logging.Filter):
    """Masks key- and token-shaped strings in a record before a handler writes it. A handler
    filter (not a logger's), so records of every child logger pass through it; it edits the
    record, which Sentry's logging integration has already seen (it scrubs its own copy)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from shared.observe.errors import redact

        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        for name, value in _extras(record).items():
            setattr(record, name, redact(value))
        return True


def redact_handlers(logger: logging.Logger | None = None) -> None:
    """Put `Redact` on the handlers of `logger` (default: the root's, e.g. Lambda's own)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, Redact) for f in handler.filters):
            handler.addFilter(Redact())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
        }
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            # uvicorn logs '%s - "%s %s HTTP/%s" %d' with these five arguments.
            line["message"] = "request"
            line.update(zip(_ACCESS_FIELDS, record.args, strict=True))
        else:
            line["message"] = record.getMessage()
        line.update(_extras(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:  # Redact may have masked it already
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message`, then the `extra=` fields as one JSON object."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = _extras(record)
        if not extras:
            return text
        head, sep, tail = text.partition("\n")  # the traceback, if any, stays below the line
        return f"{head} {orjson.dumps(extras, default=str).decode()}{sep}{tail}"


def log_config(fmt: str, level: str) -> dict[str, Any]:
    """The dictConfig of `gatewayz serve`. `level` is uvicorn's (--log-level); the gateway's own
    loggers say INFO and above (they log little: one line per request only when asked)."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    handler = {
        "class": "logging.StreamHandler",
        "formatter": fmt,
        "stream": "ext://sys.stderr",
        "filters": ["redact"],
    }
    gateway_level = "DEBUG" if level.lower() == "debug" else "INFO"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "text": {"()": f"{__name__}.TextFormatter"},
            "json": {"()": f"{__name__}.JsonFormatter"},
        },
        "filters": {"redact": {"()": f"{__name__}.Redact"}},
        "handlers": {"stderr": handler},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn.access": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "gatewayz": {"handlers": ["stderr"], "level": gateway_level, "propagate": False},
        },
        "root": {"handlers": ["stderr"], "level": "WARNING"},
    }
