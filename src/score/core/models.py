"""Score's JSON wire model (reference §1), field names exactly as the Java server emits them.

Field names are camelCase on purpose: they are the wire format, and keeping them identical to the
JSON means no alias layer can drift from what existing Song deployments and Java clients send.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_serializer


class WireModel(BaseModel):
    """Base for wire objects: unknown fields (e.g. legacy ``relocated``) are ignored on read."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class Part(WireModel):
    """One byte range of an object; ``url`` is a pre-signed PUT (upload) or GET (download)."""

    partNumber: int
    partSize: int
    offset: int
    url: str | None = None
    md5: str | None = None
    sourceMd5: str | None = None

    @model_serializer(mode="wrap")
    def _omit_null_source_md5(self, handler: Any) -> dict[str, Any]:
        # The Java model annotates sourceMd5 with NON_NULL: absent, not null, when unknown.
        data = handler(self)
        if data.get("sourceMd5") is None:
            data.pop("sourceMd5", None)
        return data

    @property
    def end(self) -> int:
        """Exclusive end offset."""
        return self.offset + self.partSize

    def http_range(self) -> str:
        """The Range header value Score signs for this part (``bytes=a-b``, inclusive)."""
        return f"bytes={self.offset}-{self.offset + self.partSize - 1}"


class ObjectSpecification(WireModel):
    """Returned by initiate-upload and download; also the format of every ``.meta`` document."""

    objectKey: str
    objectId: str
    uploadId: str | None = None
    parts: list[Part]
    objectSize: int
    objectMd5: str | None = None


class UploadProgress(WireModel):
    objectId: str
    uploadId: str
    parts: list[Part]


class ObjectInfo(WireModel):
    """One row of ``GET /listing``."""

    id: str
    lastModified: int
    size: int


class CompletedPart(WireModel):
    """Payload of an upload part-completion marker (embedded in the marker's key name on S3)."""

    partNumber: int
    md5: str
    etag: str


class ErrorBody(WireModel):
    """Error JSON: Spring Boot's default shape plus the ``message`` the original omitted (bug #496)."""

    timestamp: str
    status: int
    error: str
    message: str
    path: str
    requestId: str | None = None  # also in the X-Request-ID header and the server's log lines about it
