"""Audit trail: one JSON line per authorisation decision that issues URLs or refuses them, and one per
fixity finding (``action`` ``fixity``: an object found damaged, or the scrub finding it repaired; see
``services/fixity.py``).

Tokens never appear: callers pass the principal, whose ``token_id`` is a one-way fingerprint.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from fastapi import Request

from score.server.auth.principal import Principal
from score.server.observability.metrics import DECISIONS
from score.server.observability.request_ids import current_request_id

if TYPE_CHECKING:
    from score.server.services.fixity import FixityResult

_log = logging.getLogger("score.audit")
ROTATION_CHECK = 1.0  # seconds between looks for a rotated audit file


def client_address(request: Request, trusted_proxies: Sequence[IPv4Network | IPv6Network]) -> str:
    """Who is asking: the peer's address, or, when the peer is a trusted proxy, the right-most address in
    ``X-Forwarded-For`` that is not itself a trusted proxy. Anyone can send that header, so it counts only
    from the proxies the operator configured (``trusted_proxies``); from anyone else it is ignored."""
    peer = request.client.host if request.client else ""
    forwarded = request.headers.get("x-forwarded-for")
    if not forwarded or not _is_trusted(peer, trusted_proxies):
        return peer
    for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
        if not _is_trusted(hop, trusted_proxies):
            return hop[:64]  # a forged header cannot fill the log
    return peer


def _is_trusted(address: str, trusted: Sequence[IPv4Network | IPv6Network]) -> bool:
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


class AuditLog:
    def __init__(self, path: Path | None, trusted_proxies: Sequence[str] = ()) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._trusted = [ip_network(p, strict=False) for p in trusted_proxies]
        self._handle: TextIO | None = None
        self._rotation_checked = 0.0
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def _append(self, line: str) -> None:
        """Append one line to the audit file, kept open between lines (opening it per line serialised every
        request behind the lock) and opened again when it was moved or removed (log rotation), which is
        looked for at most every ``ROTATION_CHECK`` seconds: lines written meanwhile follow the moved file."""
        assert self._path is not None
        with self._lock:
            handle = self._handle
            now = time.monotonic()
            if handle is not None and now - self._rotation_checked >= ROTATION_CHECK:
                self._rotation_checked = now
                try:
                    current = os.stat(self._path)
                    mine = os.fstat(handle.fileno())
                    rotated = (current.st_dev, current.st_ino) != (mine.st_dev, mine.st_ino)
                except FileNotFoundError:
                    rotated = True
                if rotated:
                    handle.close()
                    handle = None
            if handle is None:
                handle = self._handle = self._path.open("a", encoding="utf-8")
            try:
                handle.write(line + "\n")
                handle.flush()
            except OSError:
                handle.close()
                self._handle = None
                raise

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
        client = client_address(request, self._trusted)
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
                "requestId": current_request_id(),
            },
            separators=(",", ":"),
        )
        DECISIONS.labels(action, "allow" if allowed else "deny").inc()
        _log.info(line)
        if self._path is not None:
            try:
                self._append(line)
            except OSError as exc:  # a full disk: the line above still reached the server's log
                _log.warning("could not append to %s (%s); the decision is in the server log only", self._path, exc)

    def fixity(self, result: FixityResult, actor: str) -> None:
        """One line for an object whose stored bytes are not the recorded ones (or are gone, or are again): the usual
        fields (``subject`` is who checked: ``score-server verify`` or the server's scrub; no token, client or
        request), ``decision`` the outcome, and the expected and actual size and MD5."""
        line = json.dumps(
            {
                "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "subject": actor,
                "token": None,
                "action": "fixity",
                "object": result.object_id,
                "study": None,
                "range": None,
                "decision": result.outcome.value,
                "reason": result.detail,
                "client": None,
                "userAgent": None,
                "requestId": None,
                "expected": {"md5": result.expected_md5, "size": result.expected_size},
                "actual": {"md5": result.actual_md5, "size": result.actual_size},
            },
            separators=(",", ":"),
        )
        _log.warning(line)
        if self._path is not None:
            try:
                self._append(line)
            except OSError as exc:
                _log.warning(
                    "could not append to %s (%s); the fixity finding is in the server log only", self._path, exc
                )
