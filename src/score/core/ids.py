"""Validation of the identifiers that reach file paths, storage keys and URLs."""

from __future__ import annotations

import re
import uuid

# Letters, digits, '_', '-' and '.', starting with a letter or digit, never two dots in a row; also the
# pattern the OpenAPI document gives (JSON Schema's ECMA regex: '$' is the end of the string there).
SAFE_ID_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9_-]|\.[A-Za-z0-9_-])*\.?$"
SAFE_ID_MAX = 128
_SAFE_ID = re.compile(SAFE_ID_PATTERN)


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return False
    return len(value) == 36


def is_safe_id(value: str) -> bool:
    """Ids that are safe as one path segment: letters, digits, ``_ . -``; no ``..``; at most 128."""
    return isinstance(value, str) and len(value) <= SAFE_ID_MAX and _SAFE_ID.fullmatch(value) is not None


def require_safe_id(value: str, what: str = "id") -> str:
    if not is_safe_id(value):
        raise ValueError(f"invalid {what} {value!r}: use 1-128 letters, digits, '_', '.' or '-' (no '..', no '/')")
    return value


UPLOAD_ID_PATTERN = r"^[A-Za-z0-9._~+=-]{1,200}$"  # S3-compatible stores issue ~30-150 characters
_UPLOAD_ID = re.compile(UPLOAD_ID_PATTERN)
# The uploadIds of whole-object uploads (one signed PUT, no store upload, no state): set by the server, read
# by the client to know there is no upload state to ask for.
WHOLE_PUT_PREFIX = "~put."


def is_upload_id(value: str) -> bool:
    """Store-issued multipart upload ids (hex here, opaque base64-ish strings on S3): never a path."""
    return isinstance(value, str) and _UPLOAD_ID.fullmatch(value) is not None and ".." not in value
