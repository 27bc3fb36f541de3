"""Audit trail: one JSON line per authorisation decision that issues URLs or refuses them.

Tokens never appear: callers pass the principal, whose ``token_id`` is a one-way fingerprint.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path

from fastapi import Request

from score.server.auth.principal import Principal

_log = logging.getLogger("score.audit")


class AuditLog:
    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def record(
        self,
        request: Request,
        principal: Principal,
        action: str,
        object_id: str,
        allowed: bool,
        reason: str,
        study_id: str | None = None,
        byte_range: str | None = None,
    ) -> None:
        forwarded = request.headers.get("x-forwarded-for")
        client = forwarded.split(",")[0].strip() if forwarded else (request.client.host if request.client else "")
        line = json.dumps(
            {
                "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "subject": principal.subject,
                "token": principal.token_id or None,
                "action": action,
                "object": object_id,
                "study": study_id,
                "range": byte_range,
                "decision": "allow" if allowed else "deny",
                "reason": reason,
                "client": client,
                "userAgent": request.headers.get("user-agent", "unknown"),
            },
            separators=(",", ":"),
        )
        _log.info(line)
        if self._path is not None:
            with self._lock, self._path.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")
