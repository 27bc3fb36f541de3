"""The MetadataSource protocol: what Score asks of Song (reference §5.1), plus the file record.

Two implementations: the embedded registry (``registry.py``, SQLite, in-process) and, in a later
issue, a remote Song client. Both answer the same questions the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

UNPUBLISHED = "UNPUBLISHED"
PUBLISHED = "PUBLISHED"
SUPPRESSED = "SUPPRESSED"


class MetadataUnavailable(Exception):
    """The metadata service could not be reached or answered with an error (API answers 503)."""


@dataclass(frozen=True)
class Entity:
    """Song's legacy file entity (``GET /entities/{id}``), plus the registered size and MD5."""

    id: str
    gnosId: str  # the analysis id
    fileName: str
    projectCode: str  # the study id
    access: str  # "open" | "controlled"
    fileSize: int | None = None
    fileMd5sum: str | None = None

    def to_wire(self) -> dict[str, object]:
        """The legacy entity JSON Score and its clients read."""
        return {
            "id": self.id,
            "gnosId": self.gnosId,
            "fileName": self.fileName,
            "projectCode": self.projectCode,
            "access": self.access,
        }


class MetadataSource(Protocol):
    def entity(self, object_id: str) -> Entity | None:
        """The file entity for an object id, or None if it is not registered."""
        ...

    def analysis_state(self, study_id: str, analysis_id: str) -> str | None:
        """``UNPUBLISHED`` / ``PUBLISHED`` / ``SUPPRESSED``, or None if the analysis is unknown."""
        ...

    def sibling_files(self, entity: Entity) -> list[Entity]:
        """Every file of ``entity``'s analysis (itself included): how an object's index file is found."""
        ...


@dataclass(frozen=True)
class StoredObject:
    """What Score holds for a finished object: the facts a publish check compares with Song's."""

    object_id: str
    size: int
    md5: str | None


class ObjectCatalog(Protocol):
    """Lets the registry ask Score, in-process, whether an object is uploaded (publish check)."""

    def stored_object(self, object_id: str) -> StoredObject | None: ...
