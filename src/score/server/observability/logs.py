"""The server's log lines: plain text for a terminal, or one JSON object per line for a log pipeline.

Either way every line names the request it is about (``requestId``; "-" outside requests), so a refusal
in the audit log, a store error and the error body a user quotes can be matched. Tokens and signed URLs
never reach these loggers (the callers log fingerprints and keys only).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Literal

from score.server.observability.request_ids import RequestIdFilter

LogFormat = Literal["plain", "json"]
PLAIN = "%(asctime)s %(name)s %(levelname)s [%(request_id)s] %(message)s"


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "requestId", "message"[, "error"]}``, one per line."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "requestId": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, separators=(",", ":"))


def configure_logging(level: str, log_format: LogFormat = "plain") -> None:
    """Score's own loggers (audit, store access, cleanup) write to stderr in the chosen format."""
    logger = logging.getLogger("score")
    logger.setLevel(level.upper())
    if logger.handlers:
        return
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(PLAIN))
    logger.addHandler(handler)
    logger.propagate = False
