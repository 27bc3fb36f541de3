"""Download specifications (reference §2.4): which URLs a client uses to read an object or a range.

Fixes over the original: a missing object is a 404 with a message (not a 500), a range beyond the
object is a 400 with a message, and a ranged specification never claims the whole object's MD5 as
the range's: its parts follow the upload's part boundaries, so every part wholly inside the range
keeps the ``sourceMd5`` it was uploaded with and can be verified.
"""

from __future__ import annotations

from score.core.models import ObjectSpecification, Part
from score.core.parts import slice_parts
from score.server.errors import BadRequest
from score.server.services.uploads import UploadService, guard
from score.server.settings import ServerSettings
from score.server.storage.base import ObjectStore
from score.server.storage.layout import data_key


class DownloadService:
    def __init__(self, store: ObjectStore, settings: ServerSettings, objects: UploadService) -> None:
        self._store = store
        self._settings = settings
        self._objects = objects  # what exists is the upload service's judgement

    def stored_spec(self, object_id: str) -> ObjectSpecification:
        """The object's permanent specification (``UploadService.stored_spec``): 404 with the reason when none."""
        return self._objects.stored_spec(object_id)

    def specification(
        self, object_id: str, offset: int, length: int, external: bool, exclude_urls: bool
    ) -> ObjectSpecification:
        stored = self.stored_spec(object_id)
        size = stored.objectSize
        if offset < 0:
            raise BadRequest(f"offset must not be negative (got {offset})")
        if length < -1:
            raise BadRequest(f"length must be -1 (to the end) or a byte count (got {length})")
        if offset > size:
            raise BadRequest(f"offset {offset} is beyond the end of object {object_id} ({size} bytes)")
        whole = offset == 0 and length in (-1, size)
        span = size - offset if length == -1 else length
        if offset + span > size:
            raise BadRequest(
                f"range [{offset}, {offset + span}) goes beyond the end of object {object_id} ({size} bytes); "
                "ask for a shorter length or -1 for 'to the end'"
            )

        if external:
            # Score's quirk kept for clients that rely on it: one part, partSize -1, objectSize = length.
            url = None if exclude_urls else self._sign(stored.objectKey, None, None)
            part = Part(partNumber=1, partSize=-1, offset=0, url=url)
            return stored.model_copy(update={"parts": [part], "objectSize": length})

        if whole:
            parts = [p.model_copy(update={"url": None, "md5": None}) for p in stored.parts]
            object_size, object_md5 = size, stored.objectMd5
        else:
            parts = slice_parts(stored.parts, offset, span)
            object_size, object_md5 = span, None  # the whole object's MD5 says nothing about a range
        if not exclude_urls:
            parts = [p.model_copy(update={"url": self._sign(stored.objectKey, p.offset, p.partSize)}) for p in parts]
        return stored.model_copy(update={"parts": parts, "objectSize": object_size, "objectMd5": object_md5})

    def sentinel_url(self) -> str:
        return self._sign(data_key(self._settings.sentinel), None, None, ttl=300)

    def _sign(self, key: str, offset: int | None, length: int | None, ttl: int | None = None) -> str:
        expires = ttl or self._settings.download_url_ttl
        return guard(lambda: self._store.sign_read(key, offset, length, expires))
