"""MD5 representations: Score mixes lower-case hex (its own JSON) and base64 (HTTP Content-MD5, S3)."""

from __future__ import annotations

import base64
import binascii
import re

MD5_PATTERN = r"^[0-9a-fA-F]{32}$"
_HEX_MD5 = re.compile(MD5_PATTERN)
_B64_MD5 = re.compile(r"^[A-Za-z0-9+/]{22}==\Z")

MISSING = "<missing>"  # what the Java server writes as a part's sourceMd5 when it had none


def is_hex(value: str | None) -> bool:
    return bool(value) and _HEX_MD5.fullmatch(value or "") is not None


def is_base64(value: str | None) -> bool:
    return bool(value) and bool(_B64_MD5.match(value or ""))


def hex_to_base64(value: str) -> str:
    if not is_hex(value):
        raise ValueError(f"not a hex MD5 (32 hex digits): {value!r}")
    return base64.b64encode(bytes.fromhex(value)).decode("ascii")


def base64_to_hex(value: str) -> str:
    if not is_base64(value):
        raise ValueError(f"not a base64 MD5 (24 characters): {value!r}")
    try:
        return base64.b64decode(value, validate=True).hex()
    except binascii.Error as exc:  # pragma: no cover - regex already guards this
        raise ValueError(f"not a base64 MD5: {value!r}") from exc


def normalize(value: str) -> str:
    """Return the lower-case hex form of an MD5 given as hex or base64; raise ValueError otherwise."""
    value = value.strip()
    if is_hex(value):
        return value.lower()
    if is_base64(value):
        return base64_to_hex(value)
    raise ValueError(f"not an MD5 checksum (expected 32 hex digits): {value!r}")


def equal(a: str | None, b: str | None) -> bool:
    """Compare two MD5s whatever their encoding; unknown or malformed values are never equal."""
    if not a or not b:
        return False
    try:
        return normalize(a) == normalize(b)
    except ValueError:
        return False


def known(value: str | None) -> bool:
    """True if the value is a real checksum (not null, blank or the legacy ``<missing>``)."""
    return bool(value) and value != MISSING and (is_hex(value) or is_base64(value))
