"""The Score answers the client reads (reference §1), as plain dataclasses, parsed and checked here.

The server's models (``score.core.models``) are pydantic models, which FastAPI needs for its schema and
validation. The client read its answers through them too; without them (and pydantic) the command line loads
in 104 ms instead of 152, before its first request: 6% of a download of 400 small files. These four shapes
are all the client reads; fields are named exactly as on the wire, unknown fields are ignored (as there),
and an answer of the wrong shape is a ``ClientError`` that says which field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from score.client.errors import ClientError


@dataclass(frozen=True)
class Part:
    """One byte range of an object; ``url`` is a pre-signed PUT (upload) or GET (download)."""

    partNumber: int
    partSize: int
    offset: int
    url: str | None = None
    md5: str | None = None
    sourceMd5: str | None = None

    @property
    def end(self) -> int:
        """Exclusive end offset."""
        return self.offset + self.partSize


@dataclass(frozen=True)
class ObjectSpecification:
    """An upload's or a download's specification (initiate, status, download)."""

    objectKey: str
    objectId: str
    parts: list[Part]
    objectSize: int
    uploadId: str | None = None
    objectMd5: str | None = None


@dataclass(frozen=True)
class UploadProgress:
    """An upload in progress: its parts, those recorded with their MD5."""

    objectId: str
    uploadId: str
    parts: list[Part]


@dataclass(frozen=True)
class ObjectInfo:
    """One row of ``GET /listing``."""

    id: str
    lastModified: int
    size: int


def parse_spec(data: Any) -> ObjectSpecification:
    fields = _object(data, "an object specification")
    return ObjectSpecification(
        objectKey=_text(fields, "objectKey"),
        objectId=_text(fields, "objectId"),
        parts=_parts(fields),
        objectSize=_whole(fields, "objectSize"),
        uploadId=_optional_text(fields, "uploadId"),
        objectMd5=_optional_text(fields, "objectMd5"),
    )


def parse_progress(data: Any) -> UploadProgress:
    fields = _object(data, "an upload's status")
    return UploadProgress(_text(fields, "objectId"), _text(fields, "uploadId"), _parts(fields))


def parse_info(data: Any) -> ObjectInfo:
    fields = _object(data, "a listing row")
    return ObjectInfo(_text(fields, "id"), _whole(fields, "lastModified"), _whole(fields, "size"))


def _parts(fields: dict[str, Any]) -> list[Part]:
    listed = fields.get("parts")
    if not isinstance(listed, list):
        raise _malformed(f"its parts are {_shown(listed)}, not a list")
    return [_part(_object(p, "a part")) for p in listed]


def _part(fields: dict[str, Any]) -> Part:
    return Part(
        partNumber=_whole(fields, "partNumber"),
        partSize=_whole(fields, "partSize"),
        offset=_whole(fields, "offset"),
        url=_optional_text(fields, "url"),
        md5=_optional_text(fields, "md5"),
        sourceMd5=_optional_text(fields, "sourceMd5"),
    )


def _object(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise _malformed(f"{what} is {_shown(data)}, not a JSON object")
    return data


def _whole(fields: dict[str, Any], name: str) -> int:
    value = fields.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _malformed(f"{name} is {_shown(value)}, not a whole number")
    return value


def _text(fields: dict[str, Any], name: str) -> str:
    value = fields.get(name)
    if not isinstance(value, str):
        raise _malformed(f"{name} is {_shown(value)}, not text")
    return value


def _optional_text(fields: dict[str, Any], name: str) -> str | None:
    return None if fields.get(name) is None else _text(fields, name)


def _shown(value: Any) -> str:
    return "missing" if value is None else repr(value)[:80]


def _malformed(problem: str) -> ClientError:
    return ClientError(
        f"the server's answer is not one Score sends ({problem}); check that STORAGE_URL names a Score server"
    )
