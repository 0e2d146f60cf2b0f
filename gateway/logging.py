"""structlog set-up, once per process.

JSON lines (orjson) on stdout by default; the console renderer when asked for or when stdout is a TTY and the
format is not forced. A filtered level costs nothing (``make_filtering_bound_logger``). Secrets never reach a log
line: :func:`redact` is applied to every event dict as a last line of defence, on top of never passing them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog

__all__ = ["configure_logging", "get_logger", "redact"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_SECRET_KEYS = frozenset({"password", "authorization", "token", "authorizationkey", "basic_password", "secret"})


def redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace values of secret-looking keys with ``"***"``."""
    for k in list(event):
        if k.lower() in _SECRET_KEYS:
            event[k] = "***"
    return event


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    """Configure structlog for the process. ``fmt``: ``json`` or ``console``."""
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    if fmt == "console":
        processors.append(structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty()))
        factory: Any = structlog.PrintLoggerFactory(sys.stdout)
    else:
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer(serializer=orjson.dumps)]
        factory = structlog.BytesLoggerFactory(sys.stdout.buffer)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )


def get_logger(**bind: Any) -> Any:
    """A bound logger (``structlog.stdlib``-free, filtered by level)."""
    return structlog.get_logger().bind(**bind) if bind else structlog.get_logger()
