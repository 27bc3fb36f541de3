"""Validation of the identifiers that reach file paths, storage keys and URLs."""

from __future__ import annotations

import re
import uuid

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return False
    return len(value) == 36


def is_safe_id(value: str) -> bool:
    """Ids that are safe as one path segment: letters, digits, ``_ . -``; no ``..``."""
    return bool(_SAFE_ID.match(value)) and ".." not in value


def require_safe_id(value: str, what: str = "id") -> str:
    if not is_safe_id(value):
        raise ValueError(f"invalid {what} {value!r}: use 1-128 letters, digits, '_', '.' or '-' (no '..', no '/')")
    return value


_UPLOAD_ID = re.compile(r"^[A-Za-z0-9._~+=-]{1,1024}\Z")


def is_upload_id(value: str) -> bool:
    """Store-issued multipart upload ids (hex here, opaque base64-ish strings on S3): never a path."""
    return bool(_UPLOAD_ID.match(value)) and ".." not in value
