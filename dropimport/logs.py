"""The context of log lines (account, import, file, protocol) and the two formats of the logs.

Library code sets the context with `context(...)` around the work on one upload or import and
only creates loggers; the CLI alone calls `configure_logging`, whose handler adds the context
to every line: `account=acme import_id=... file=contacts.csv` in text, keys in JSON.

The context lives in a ContextVar, so each thread sees its own: an FTP session, the watcher,
each dramatiq worker thread.
"""

import contextlib
import json
import logging
import logging.config
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Final

#: The fields a line carries when they apply, in this order.
FIELDS: Final = ("account", "import_id", "file")  # Final: literal keys, to index a FileEvent
#: And on the agent's lines about a session or an upload: the door it came in by (ftp, sftp).
LINE_FIELDS: Final = (*FIELDS, "protocol")

_context: ContextVar[dict[str, object] | None] = ContextVar(
    "dropimport_log_context", default=None
)


def current() -> dict[str, object]:
    """The fields set in this thread's context."""
    return _context.get() or {}


@contextlib.contextmanager
def context(**fields: object) -> Iterator[None]:
    """Add `fields` (None values ignored) to every line logged inside the block."""
    token = _context.set(_with(fields))
    try:
        yield
    finally:
        _context.reset(token)


def bind(**fields: object) -> None:
    """Add `fields` to this thread's context for the rest of its life (an FTP session)."""
    _context.set(_with(fields))


def _with(fields: dict[str, object]) -> dict[str, object]:
    return {**current(), **{key: value for key, value in fields.items() if value is not None}}


class ContextFilter(logging.Filter):
    """Puts the context's fields on each record (a field passed in `extra` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in current().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def _fields(record: logging.LogRecord) -> dict[str, object]:
    return {key: getattr(record, key) for key in LINE_FIELDS if getattr(record, key, None)}


#: Controls, and what str.splitlines() also takes for line ends, escaped in text lines.
_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F, 0x85)} | {
    0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x2028: "\\u2028", 0x2029: "\\u2029"}

_JSON_ESCAPES = {code: f"\\u{code:04x}" for code in (0x85, 0x2028, 0x2029)}


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message account=... import_id=... file=...`"""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        line = " ".join([line, *(f"{key}={value}" for key, value in _fields(record).items())])
        # A customer chooses its file names: none may break the line or forge another (the
        # traceback, added after, keeps its own lines).
        return line.translate(_ESCAPES)


class JSONFormatter(logging.Formatter):
    """One JSON object a line, for log shippers: time, level, logger, message, the context
    fields, and the traceback of an exception."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
            "process": record.process,
            "thread": record.threadName,
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        # json escapes the controls but for these, which some readers take for line ends.
        return json.dumps(line, ensure_ascii=False, default=str).translate(_JSON_ESCAPES)


def resolve(log_format: str | None, stream: IO[str] | None = None) -> str:
    """The format to use: the one asked for, else text on a terminal and JSON elsewhere."""
    if log_format:
        return log_format
    stream = stream or sys.stderr
    return "text" if hasattr(stream, "isatty") and stream.isatty() else "json"


def configure_logging(log_format: str | None = None, level: int = logging.INFO) -> None:
    """Logging for a long-running command, on stderr: `text` or `json` (None: see resolve)."""
    formatter = {"text": TextFormatter, "json": JSONFormatter}[resolve(log_format)]
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": {"line": {"()": formatter}},
        "handlers": {"stderr": {
            "class": "logging.StreamHandler", "stream": "ext://sys.stderr",
            "filters": ["context"], "formatter": "line",
        }},
        "root": {"level": level, "handlers": ["stderr"]},
        # Their routine lines (every FTP command, every connection) would bury ours.
        "loggers": {name: {"level": "WARNING"} for name in ("pyftpdlib", "pika", "asyncssh")},
    })
