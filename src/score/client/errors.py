"""Client-side errors: each carries a message that says what went wrong and what to do."""

from __future__ import annotations


class ClientError(Exception):
    """A failure to report to the user; the CLI prints the message and exits non-zero."""


class ServerError(ClientError):
    """The Score or metadata server refused or failed a call."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status

    @property
    def retryable(self) -> bool:
        """Unreachable, timed out, throttled or briefly unavailable; not 507 (the store is full: waiting
        a few seconds will not make room) and not 500 (a defect)."""
        return self.status in (0, 408, 429, 502, 503, 504)


class TransferError(ClientError):
    """Moving bytes to or from the object store failed after every retry."""


class IntegrityError(ClientError):
    """Bytes do not hash to what they should."""


def helped_by_rerun(error: ClientError) -> bool:
    """Whether running the same command again may succeed where this failed: the server or the store was
    unreachable, overloaded or failed mid-transfer (what was moved is kept). A refusal (wrong MD5, object
    exists, no permission, expired token) fails the same way until the user changes something."""
    if isinstance(error, ServerError):
        return error.retryable
    return isinstance(error, TransferError)
