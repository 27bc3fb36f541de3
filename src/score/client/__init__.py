"""score-client: verified, resumable, parallel transfers through a Score server.

As a library: ``from score.client import ScoreClient`` (see ``score.client.library``). Importing this package
loads nothing else: the command line starts as fast as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from score.client.errors import ClientError
    from score.client.library import ScoreClient, TransferFailed

__all__ = ["ClientError", "ScoreClient", "TransferFailed"]


def __getattr__(name: str) -> Any:
    """The library's names, imported when first used (``score-client`` itself never pays for them)."""
    if name in ("ScoreClient", "TransferFailed"):
        from score.client import library

        return getattr(library, name)
    if name == "ClientError":
        from score.client.errors import ClientError

        return ClientError
    raise AttributeError(f"module 'score.client' has no attribute {name!r}")
