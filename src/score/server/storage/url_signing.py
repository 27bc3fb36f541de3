"""HMAC-signed URLs for the local-disk store: what S3 pre-signing gives a cloud backend, in 100 lines.

The local store is the one backend whose data the server serves itself, so the server is both the
signer and the verifier and a shared secret (HMAC-SHA256) is all that is needed. The signature covers
the HTTP method, the object key and every query parameter (operation, upload id, part number, offset,
size, byte range, expiry): change any of them and the URL stops working, exactly like a SigV4 URL.

Pure logic: no framework, no file I/O, so it is trivially unit-tested. Signatures are secrets for their
lifetime: never log them, nor a full signed URL.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

SIGNATURE_PARAM = "signature"
EXPIRES_PARAM = "expires"
MIN_KEY_BYTES = 16
_VERSION = "score-local-v1"


class SignatureError(Exception):
    """A signed URL was refused; the message says why and what to do."""


class SignatureMismatch(SignatureError):
    def __init__(self, detail: str = "") -> None:
        suffix = f" ({detail})" if detail else ""
        super().__init__(
            "signature does not match" + suffix + ": the URL was altered or signed by another server; "
            "use the URL exactly as the server issued it, or ask the server for a new one"
        )


class UrlExpired(SignatureError):
    def __init__(self, expired_at: int) -> None:
        self.expired_at = expired_at
        when = datetime.fromtimestamp(expired_at, UTC).isoformat()
        super().__init__(f"URL expired at {when}; ask the server for a new URL")


def _signing_method(method: str) -> str:
    """HEAD reads what GET reads, so a GET signature is valid for both (as on S3)."""
    method = method.upper()
    return "GET" if method == "HEAD" else method


def canonical_string(method: str, key: str, params: Mapping[str, str]) -> str:
    """The exact text that is MACed.

    The key is percent-encoded and the parameters are sorted and form-encoded, so no two different
    (method, key, params) triples can produce the same text, whatever characters a key contains.
    """
    query = urlencode(sorted(params.items()))
    return "\n".join((_VERSION, _signing_method(method), quote(key, safe=""), query))


class UrlSigner:
    """Signs and verifies (method, key, query parameters) with one secret key."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_KEY_BYTES:
            raise ValueError(f"URL signing key is {len(secret)} bytes; use at least {MIN_KEY_BYTES} random bytes")
        self._secret = secret

    def _mac(self, method: str, key: str, params: Mapping[str, str]) -> str:
        text = canonical_string(method, key, params).encode("utf-8")
        return hmac.new(self._secret, text, hashlib.sha256).hexdigest()

    def sign(self, method: str, key: str, params: Mapping[str, str | int], expires_at: int) -> dict[str, str]:
        """Return the query parameters of a signed URL: ``params`` + ``expires`` + ``signature``.

        The order of ``params`` is kept (it only matters for readability of the URL).
        """
        if SIGNATURE_PARAM in params or EXPIRES_PARAM in params:
            raise ValueError(f"{SIGNATURE_PARAM!r} and {EXPIRES_PARAM!r} are set by the signer, not the caller")
        query = {name: str(value) for name, value in params.items()}
        query[EXPIRES_PARAM] = str(int(expires_at))
        query[SIGNATURE_PARAM] = self._mac(method, key, query)
        return query

    def verify(
        self, method: str, key: str, query: Iterable[tuple[str, str]], now: float | None = None
    ) -> dict[str, str]:
        """Check a request's query against its signature and expiry; return the signed parameters.

        Raises SignatureMismatch (altered, incomplete or foreign URL) or UrlExpired (valid but too old).
        The signature is checked first, so an attacker cannot learn anything by editing ``expires``.
        """
        params: dict[str, str] = {}
        for name, value in query:
            if name in params:
                raise SignatureMismatch(f"query parameter {name!r} appears twice")
            params[name] = value
        signature = params.pop(SIGNATURE_PARAM, None)
        if not signature:
            raise SignatureMismatch("the URL has no signature")
        expected = self._mac(method, key, params)
        if not hmac.compare_digest(expected.encode("ascii"), signature.lower().encode("utf-8", "replace")):
            raise SignatureMismatch()
        expires = params.get(EXPIRES_PARAM, "")
        if not expires.isdigit():
            raise SignatureMismatch("the URL has no valid expiry")
        if int(expires) < (time.time() if now is None else now):
            raise UrlExpired(int(expires))
        return params
