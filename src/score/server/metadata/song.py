"""A ``MetadataSource`` backed by a remote Song server over HTTP (reference §5.1).

Score asks Song two questions: which file entity an object id is (``GET /entities/{id}``), and which
state its analysis is in (``GET /studies/{s}/analysis/{a}``). This client answers them the way Score
does, with three deliberate additions:

* it also reads the file's ``fileSize``/``fileMd5sum`` from the analysis, so Score can cross-check an
  upload against Song's file record instead of trusting the client alone;
* transient failures (connection errors, timeouts, 5xx) are retried a few times with a short back-off,
  while 4xx answers are final: retrying a refusal only delays it;
* only what cannot change is cached: which study and analysis an object id belongs to (registered at
  submit; an object never moves). The analysis state and the file's access, size and MD5 can change
  (unpublish, suppress, access or file update), so every access or state decision asks Song afresh, as
  the Java server does: a cached PUBLISHED after an unpublish broke publish-then-download scripts.
  The load stays bounded by sharing one analysis answer among all checks of one API request (see
  ``DecisionMemo``: a batch of many objects of one analysis asks for it once) and among concurrent
  identical requests (``SingleFlight``). Misses (404) are not cached, so a file registered just after a
  failed lookup is found on the next call.

No Authorization header is sent: Song's reads are public, and Score never forwards a caller's token.
Every failure becomes ``MetadataUnavailable`` (the API answers 503, which clients retry).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from score.core.ids import is_safe_id
from score.server.metadata.base import Entity, MetadataUnavailable, SingleFlight, current_decision_memo
from score.server.ttl_cache import TtlCache

_BACKOFF_SECONDS = 0.2  # first retry delay; doubles per attempt, capped below
_BACKOFF_CAP_SECONDS = 2.0
_ENTITY_FIELDS = ("id", "gnosId", "fileName", "projectCode", "access")


@dataclass(frozen=True)
class _Analysis:
    """What Score keeps of Song's analysis JSON: the state and each file's record (name, access, size, MD5)."""

    state: str | None
    files: dict[str, Entity]  # by object id


def _redact(url: str) -> str:
    """The URL without user info, so credentials embedded in a configured URL never reach a message."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


class SongMetadata:
    """Reads entities and analysis states from a remote Song (``base_url`` is Song's root URL)."""

    def __init__(
        self,
        base_url: str,
        timeout: float = 10.0,
        retries: int = 2,
        cache_ttl: float = 30.0,
        max_cache_entries: int = 10_000,
    ) -> None:
        """``cache_ttl`` bounds how long an object's study and analysis ids are kept (never state or access)."""
        self.base_url = base_url.rstrip("/")
        self.retries = max(retries, 0)
        self._shown_url = _redact(self.base_url)
        self._identities = TtlCache(cache_ttl, max_cache_entries, name="song_identities")
        self._flights = SingleFlight()
        self._http = httpx.Client(timeout=timeout, headers={"Accept": "application/json"}, follow_redirects=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SongMetadata:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ---- MetadataSource ---------------------------------------------------------------------------

    def entity(self, object_id: str) -> Entity | None:
        """The file entity with its current access, size and MD5 (from the analysis, asked afresh)."""
        if not is_safe_id(object_id):
            return None
        identity = self._identities.get(object_id)
        fresh = identity is None
        if identity is None:
            identity = self._flights.run(("entity", object_id), lambda: self._fetch_entity(object_id))
            if identity is None:
                return None
            self._identities.put(object_id, identity)
        analysis = self._analysis(identity.projectCode, identity.gnosId)
        record = analysis.files.get(object_id) if analysis else None
        if record is not None and record.access:  # Song's file record: the current access, size and MD5
            return replace(identity, access=record.access, fileSize=record.fileSize, fileMd5sum=record.fileMd5sum)
        if fresh:
            return identity
        # The analysis does not list the file (or its access): only the legacy entity can tell the access now.
        current = self._flights.run(("entity", object_id), lambda: self._fetch_entity(object_id))
        if current is None:
            return None
        if record is not None:
            current = replace(current, fileSize=record.fileSize, fileMd5sum=record.fileMd5sum)
        return current

    def sibling_files(self, entity: Entity) -> list[Entity]:
        """The analysis' files from Song's analysis JSON (shared with the request's other checks)."""
        analysis = self._analysis(entity.projectCode, entity.gnosId)
        return list(analysis.files.values()) if analysis else []

    def analysis_entities(self, analysis_id: str) -> list[Entity]:
        """Song's legacy entity search (``GET /entities?gnosId=``) names the study; the analysis JSON then gives
        every file with its current access."""
        if not is_safe_id(analysis_id):
            return []
        page = self._get_json(f"/entities?gnosId={quote(analysis_id)}&size=1", missing=(400, 404))
        content = page.get("content") if page else None
        first = content[0] if isinstance(content, list) and content and isinstance(content[0], dict) else None
        study = first.get("projectCode") if first else None
        if not isinstance(study, str):
            return []
        analysis = self._analysis(study, analysis_id)
        return list(analysis.files.values()) if analysis else []

    def analysis_state(self, study_id: str, analysis_id: str) -> str | None:
        """Song's ``analysisState``; None when Song answers 404 or 400 (unknown / other study), as Score does."""
        analysis = self._analysis(study_id, analysis_id)
        if analysis is None:
            return None
        if analysis.state is None:
            raise MetadataUnavailable(
                f"Song at {self._shown_url} is failing: analysis {analysis_id} of study {study_id} "
                "has no analysisState string"
            )
        return analysis.state

    # ---- internals --------------------------------------------------------------------------------

    def _fetch_entity(self, object_id: str) -> Entity | None:
        body = self._get_json(f"/entities/{quote(object_id)}", missing=(404,))
        return None if body is None else self._parse_entity(object_id, body)

    def _analysis(self, study_id: str, analysis_id: str) -> _Analysis | None:
        """The analysis as Song has it now: shared within one request (the memo) and among concurrent callers."""
        if not (is_safe_id(study_id) and is_safe_id(analysis_id)):
            return None
        key = ("analysis", study_id, analysis_id)

        def fetch() -> _Analysis | None:
            return self._flights.run(key, lambda: self._fetch_analysis(study_id, analysis_id))

        memo = current_decision_memo()
        return fetch() if memo is None else memo.get_or_compute((id(self), key), fetch)

    def _fetch_analysis(self, study_id: str, analysis_id: str) -> _Analysis | None:
        body = self._get_json(f"/studies/{quote(study_id)}/analysis/{quote(analysis_id)}", missing=(400, 404))
        if body is None:
            return None
        state = body.get("analysisState")
        files: dict[str, Entity] = {}
        raw_files = body.get("files")
        for record in raw_files if isinstance(raw_files, list) else []:
            if isinstance(record, dict) and isinstance(record.get("objectId"), str):
                size, md5 = record.get("fileSize"), record.get("fileMd5sum")
                name, access = record.get("fileName"), record.get("fileAccess")
                files[record["objectId"]] = Entity(
                    id=record["objectId"],
                    gnosId=analysis_id,
                    fileName=name if isinstance(name, str) else "",
                    projectCode=study_id,
                    access=access if isinstance(access, str) else "",
                    fileSize=size if isinstance(size, int) and not isinstance(size, bool) else None,
                    fileMd5sum=md5 if isinstance(md5, str) else None,
                )
        for object_id, record in files.items():  # an object's study and analysis never change: remember them
            if record.fileName and is_safe_id(object_id) and self._identities.get(object_id) is None:
                self._identities.put(object_id, record)
        return _Analysis(state=state if isinstance(state, str) else None, files=files)

    def _parse_entity(self, object_id: str, body: dict[str, Any]) -> Entity:
        bad = [name for name in _ENTITY_FIELDS if not isinstance(body.get(name), str)]
        if bad:
            raise MetadataUnavailable(
                f"Song at {self._shown_url} is failing: the entity for {object_id} lacks {', '.join(bad)}"
            )
        if body["id"] != object_id:
            raise MetadataUnavailable(
                f"Song at {self._shown_url} is failing: asked for entity {object_id} but got {body['id']}"
            )
        return Entity(
            id=body["id"],
            gnosId=body["gnosId"],
            fileName=body["fileName"],
            projectCode=body["projectCode"],
            access=body["access"],
        )

    def _get_json(self, path: str, missing: tuple[int, ...]) -> dict[str, Any] | None:
        """GET with retries on transport errors and 5xx; ``missing`` statuses mean "not there" (None)."""
        attempts = self.retries + 1
        problem = ""
        for attempt in range(attempts):
            if attempt:
                time.sleep(min(_BACKOFF_SECONDS * 2 ** (attempt - 1), _BACKOFF_CAP_SECONDS))
            try:
                response = self._http.get(self.base_url + path)
            except httpx.TransportError as exc:
                problem = f"unreachable ({type(exc).__name__}: {exc})"
                continue
            if response.status_code >= 500:
                problem = f"failing (HTTP {response.status_code} on GET {path})"
                continue
            if response.status_code in missing:
                return None
            if response.status_code != 200:
                raise MetadataUnavailable(
                    f"Song at {self._shown_url} is failing: HTTP {response.status_code} on GET {path}"
                )
            try:
                body = response.json()
            except ValueError:
                body = None
            if not isinstance(body, dict):
                raise MetadataUnavailable(
                    f"Song at {self._shown_url} is failing: GET {path} did not answer a JSON object"
                )
            return body
        raise MetadataUnavailable(f"Song at {self._shown_url} is {problem} after {attempts} attempt(s)")
