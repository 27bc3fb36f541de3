"""Typed calls to the Score server and the metadata (Song) server, with retries for transient failures."""

from __future__ import annotations

import base64
import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx

from score import __version__
from score.client.config import ClientConfig
from score.client.errors import ServerError
from score.client.tls import api_context
from score.client.wire import ObjectInfo, ObjectSpecification, UploadProgress, parse_info, parse_progress, parse_spec

log = logging.getLogger("score.client")
T = TypeVar("T")
BATCH_ITEMS = 1000  # objects per batch request (the server's limit)


def _message(response: httpx.Response) -> str:
    """The server's own explanation: Score's and Song's error JSON both carry ``message``."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:300] if text else response.reason_phrase
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or body)
    return str(body)


def token_claims(token: str) -> dict[str, Any] | None:
    """A JWT access token's claims, read without verification (the server verifies); None if opaque."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


def token_expiry(token: str, claims: dict[str, Any] | None = None) -> float | None:
    """The token's ``exp``, from ``claims`` when the caller has already decoded them."""
    found = claims if claims is not None else token_claims(token) or {}
    try:
        return float(found["exp"])
    except (KeyError, TypeError, ValueError):
        return None


def _explain(status: int, message: str, what: str, token: str) -> str:
    """A refusal in the user's terms: no token at all, an expired one, a rejected one, or a missing scope.

    Each says what to do once: the server's own advice ("get a new one") is not repeated after ours."""
    if status == 401:
        if not token:
            return (
                f"{what}: not authenticated: no access token was sent (the server says: {message}); "
                "set ACCESSTOKEN or access_token in the config file"
            )
        if (expiry := token_expiry(token)) is not None and expiry < time.time():
            stamp = datetime.fromtimestamp(expiry, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            return (
                f"{what}: not authenticated: your access token expired at {stamp}; get a new one and set it in "
                "ACCESSTOKEN or access_token in the config file"
            )
        if "expired" in message.lower():
            return f"{what}: not authenticated: {message}"  # an opaque token the server found expired
        return (
            f"{what}: not authenticated: the server rejected your access token ({message}); "
            "get a new one from your identity provider"
        )
    if status == 403:
        return f"{what}: permission denied ({message}); ask for the scope named above or use a token that has it"
    return f"{what}: {message}"


QUICK_RETRIES = 2  # a refused connection (nothing listens) is tried this many more times, ...
QUICK_DELAY = 0.5  # ... this long apart and longer: a server just starting gets ~1.5 s, a wrong URL fails at once


def unreachable_reason(exc: httpx.TransportError, timeout: float) -> tuple[str, bool]:
    """Why a call got no answer, in words (never the request's URL), and whether it is a refusal: nothing
    listens there, the host does not exist or TLS failed. Waiting does not change those, so they are tried
    again only briefly; a timeout or a broken connection (a busy or restarting server) gets the full back-off."""
    text = str(exc)
    lower = text.lower()
    if isinstance(exc, httpx.ConnectTimeout):
        return f"no connection within {timeout:g} s", False
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within {timeout:g} s", False
    if isinstance(exc, httpx.ConnectError):
        if "refused" in lower:
            return "connection refused", True
        if any(s in lower for s in ("name or service not known", "nodename nor servname", "name resolution")):
            return "host name not found", True
        if "ssl" in lower or "certificate" in lower:
            return f"TLS failed: {text}", True
        return f"cannot connect: {text}", True
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"the connection broke ({text})", False
    return f"{exc.__class__.__name__}: {text}", False


def _jittered(delay: float) -> float:
    """``delay`` spread over [0.5, 1.5) of itself: the clients that one replica's restart or one 503 turned
    away come back spread out, not all at once on the replica that is left."""
    return delay * random.uniform(0.5, 1.5)


class _Service:
    """One server's API: its address, the setting that names it (for messages) and a retry policy."""

    def __init__(
        self, base_url: str, config: ClientConfig, setting: str, notify: Callable[[str], None] | None = None
    ) -> None:
        headers = {"User-Agent": f"score-client/{__version__}"}
        if config.access_token:
            headers["Authorization"] = f"Bearer {config.access_token}"
        self.base_url = base_url
        self._setting = setting
        self._token = config.access_token
        self._retries = max(config.retries, 0)
        self._timeout = config.timeout
        self._notify = notify or log.warning
        # Idle connections are dropped before the server's 5 s keep-alive ends, not raced against its close.
        limits = httpx.Limits(keepalive_expiry=4.0)
        self._http = httpx.Client(
            base_url=base_url, headers=headers, timeout=config.timeout, limits=limits, verify=api_context()
        )

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, path: str, what: str, ok: tuple[int, ...] = (200,), **kwargs: Any) -> httpx.Response:
        """One API call. A refused connection is tried ``QUICK_RETRIES`` more times within ~1.5 s (nothing
        listens there); timeouts, broken connections and 408/429/502/503/504 get ``retries`` more tries with
        exponential back-off (a busy or restarting server). Each retry is announced with its reason."""
        delay = 0.2
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.UnsupportedProtocol as exc:
                raise ServerError(
                    f"{what}: {self.base_url} is not an http:// or https:// URL; fix {self._setting}"
                ) from exc
            except httpx.TransportError as exc:
                reason, refused = unreachable_reason(exc, self._timeout)
                limit = min(self._retries, QUICK_RETRIES) if refused else self._retries
                problem = f"cannot reach {self.base_url} ({reason})"
                error = ServerError(
                    f"{what}: {problem}{_after(attempt)}; check that the server is running and that "
                    f"{self._setting} is its address",
                    0,
                )
                wait = QUICK_DELAY * attempt if refused else _jittered(delay)
            else:
                if response.status_code in ok:
                    return response
                message = _message(response)
                error = ServerError(_explain(response.status_code, message, what, self._token), response.status_code)
                limit, wait = self._retries, _jittered(delay)
                problem = f"{self.base_url} answered HTTP {response.status_code} ({message[:200]})"
            if not error.retryable or attempt > limit:
                raise error
            self._notify(f"{what}: {problem}; retrying ({attempt}/{limit}) in {wait:.1f} s")
            time.sleep(wait)
            delay = min(delay * 2, 10.0)


def _after(attempt: int) -> str:
    return f"; tried {attempt} times" if attempt > 1 else ""


class ScoreApi(_Service):
    def __init__(self, config: ClientConfig, notify: Callable[[str], None] | None = None) -> None:
        super().__init__(config.storage_url, config, "STORAGE_URL (storage_url in the config file)", notify)
        self._batches = True  # the server offers the /batch API, until it answers otherwise

    def exists(self, object_id: str) -> bool:
        return bool(self.call("GET", f"/upload/{object_id}", f"checking whether {object_id} exists").json())

    def initiate(self, object_id: str, size: int, md5: str | None, overwrite: bool) -> ObjectSpecification:
        params: dict[str, Any] = {"fileSize": size, "overwrite": str(overwrite).lower()}
        if md5:
            params["md5"] = md5
        what = f"starting the upload of {object_id}"
        response = self.call("POST", f"/upload/{object_id}/uploads", what, params=params)
        return parse_spec(response.json())

    def status(self, object_id: str, size: int) -> UploadProgress | None:
        """The upload in progress, or None when there is none (404)."""
        response = self.call(
            "GET",
            f"/upload/{object_id}/status",
            f"checking the upload in progress of {object_id}",
            ok=(200, 404),
            params={"fileSize": size},
        )
        return None if response.status_code == 404 else parse_progress(response.json())

    def finalize_part(self, object_id: str, upload_id: str, part_number: int, md5: str, etag: str) -> None:
        self.call(
            "POST",
            f"/upload/{object_id}/parts",
            f"recording part {part_number} of {object_id}",
            params={"uploadId": upload_id, "partNumber": part_number, "md5": md5, "etag": etag},
        )

    def finalize(self, object_id: str, upload_id: str, md5: str | None) -> None:
        self.call(
            "POST",
            f"/upload/{object_id}",
            f"finalizing the upload of {object_id}",
            params={"uploadId": upload_id, **({"md5": md5} if md5 else {})},
        )

    def cancel(self, object_id: str) -> None:
        self.call("DELETE", f"/upload/{object_id}", f"cancelling the upload of {object_id}", ok=(200, 404))

    def download_spec(
        self, object_id: str, offset: int = 0, length: int = -1, external: bool = False, exclude_urls: bool = False
    ) -> ObjectSpecification:
        params = {
            "offset": offset,
            "length": length,
            "external": str(external).lower(),
            "exclude-urls": str(exclude_urls).lower(),
        }
        response = self.call("GET", f"/download/{object_id}", f"getting download URLs for {object_id}", params=params)
        return parse_spec(response.json())

    def download_specs(
        self, object_ids: list[str], offset: int = 0, length: int = -1, exclude_urls: bool = False
    ) -> dict[str, ObjectSpecification | str]:
        """Specifications of many objects: ``POST /batch/download/specs`` per 1,000 (one round trip instead
        of one each); a server without it (the Java Score server), or a range, gets one call per object,
        several at a time. Each answer is a specification, or the message of the object's refusal."""
        answers: dict[str, ObjectSpecification | str] = {}
        ids = list(dict.fromkeys(object_ids))
        if (offset, length) == (0, -1):
            extra = {"excludeUrls": exclude_urls}
            for answer in self._in_batches(
                "/batch/download/specs", "objectIds", ids, "getting download URLs for {}", extra
            ):
                for spec in answer.get("specs", []):
                    parsed = parse_spec(spec)
                    answers[parsed.objectId] = parsed
                for error in answer.get("errors", []):
                    doing = f"getting download URLs for {error['objectId']}"
                    answers[error["objectId"]] = _explain(error["status"], error["message"], doing, self._token)
        rest = [i for i in ids if i not in answers]

        def one(object_id: str) -> ObjectSpecification | str:
            try:
                return self.download_spec(object_id, offset, length, exclude_urls=exclude_urls)
            except ServerError as exc:
                return str(exc)

        if rest:
            with ThreadPoolExecutor(max_workers=min(8, len(rest)), thread_name_prefix="specs") as pool:
                answers.update(zip(rest, pool.map(one, rest), strict=True))
        return answers

    def initiate_many(self, items: list[dict[str, Any]]) -> dict[str, ObjectSpecification | ServerError]:
        """Start many uploads: ``POST /batch/upload/initiate`` per 1,000 (items: ``objectId``, ``fileSize``,
        ``md5``, ``overwrite``, ``replaceInProgress``); a server without it gets Score's own calls per file.
        Each answer is the upload's specification, or the refusal as a ServerError (409: the object exists,
        or an upload of it is in progress)."""
        answers: dict[str, ObjectSpecification | ServerError] = {}
        for answer in self._in_batches("/batch/upload/initiate", "uploads", items, "starting the uploads of {}"):
            for spec in answer.get("specs", []):
                parsed = parse_spec(spec)
                answers[parsed.objectId] = parsed
            for error in answer.get("errors", []):
                answers[error["objectId"]] = self._refusal(error, f"starting the upload of {error['objectId']}")
        for item in items:
            if item["objectId"] not in answers:
                answers[item["objectId"]] = self._initiate_one(item)
        return answers

    def _initiate_one(self, item: dict[str, Any]) -> ObjectSpecification | ServerError:
        """Score's calls for one upload: exists and status checks as the batch call makes them, then initiate."""
        object_id, size = item["objectId"], item["fileSize"]
        try:
            if not item.get("overwrite") and self.exists(object_id):
                return ServerError(f"object {object_id} already exists; use --force to replace it", 409)
            if not item.get("replaceInProgress", True) and self.status(object_id, size) is not None:
                return ServerError(
                    f"an upload of object {object_id} is already in progress, started elsewhere; "
                    "use --force to discard it and start over",
                    409,
                )
            return self.initiate(object_id, size, item.get("md5"), overwrite=bool(item.get("overwrite")))
        except ServerError as exc:
            return exc

    def finalize_many(self, items: list[dict[str, Any]]) -> dict[str, ServerError | None]:
        """Finalize many uploads, each with its parts: ``POST /batch/upload/finalize`` per 1,000; a server
        without it gets a record call per part and a finalize per file. None for each one finalized."""
        answers: dict[str, ServerError | None] = {}
        for answer in self._in_batches("/batch/upload/finalize", "uploads", items, "finalizing the uploads of {}"):
            answers.update(dict.fromkeys(answer.get("finalized", [])))
            for error in answer.get("errors", []):
                answers[error["objectId"]] = self._refusal(error, f"finalizing the upload of {error['objectId']}")
        for item in items:
            if item["objectId"] in answers:
                continue
            try:
                for part in item.get("parts") or []:
                    self.finalize_part(
                        item["objectId"], item["uploadId"], part["partNumber"], part["md5"], part["etag"]
                    )
                self.finalize(item["objectId"], item["uploadId"], item.get("md5"))
                answers[item["objectId"]] = None
            except ServerError as exc:
                answers[item["objectId"]] = exc
        return answers

    def _in_batches(
        self, path: str, field: str, items: list[Any], doing: str, extra: dict[str, Any] | None = None
    ) -> Iterator[dict[str, Any]]:
        """POST ``items`` to one of this server's batch endpoints, ``BATCH_ITEMS`` at a time, and yield each
        answer. A server without it (404/405: an older one, or the Java server) is not asked again: the
        caller makes Score's own calls for whatever got no answer."""
        for start in range(0, len(items), BATCH_ITEMS) if self._batches else ():
            chunk = items[start : start + BATCH_ITEMS]
            what = doing.format(f"{len(chunk)} object{'s' if len(chunk) != 1 else ''}")
            response = self.call("POST", path, what, ok=(200, 404, 405), json={field: chunk, **(extra or {})})
            if response.status_code != 200:
                self._batches = False
                return
            yield response.json()

    def _refusal(self, error: dict[str, Any], what: str) -> ServerError:
        return ServerError(_explain(error["status"], error["message"], what, self._token), error["status"])

    def ping(self) -> str:
        return self.call("GET", "/download/ping", "pinging the storage server").text.strip()

    def listing(self) -> list[ObjectInfo]:
        return [parse_info(i) for i in self.call("GET", "/listing", "listing objects").json()]


@dataclass(frozen=True)
class FileEntity:
    """A registered file: Song's legacy entity, plus size and MD5 when the analysis files call gives them."""

    object_id: str
    analysis_id: str
    file_name: str
    study_id: str
    access: str = ""
    size: int | None = None
    md5: str | None = None


class MetadataApi(_Service):
    def __init__(self, config: ClientConfig, notify: Callable[[str], None] | None = None) -> None:
        setting = "METADATA_URL (metadata_url in the config file; by default STORAGE_URL/song)"
        super().__init__(config.metadata_url, config, setting, notify)

    def entity(self, object_id: str) -> FileEntity:
        what = f"looking up object {object_id} in the metadata server"
        body = self.call("GET", f"/entities/{object_id}", what).json()
        return FileEntity(
            body["id"],
            body.get("gnosId", ""),
            body.get("fileName", ""),
            body.get("projectCode", ""),
            body.get("access", ""),
        )

    def analysis_entities(self, analysis_id: str, study_id: str | None = None) -> list[FileEntity]:
        """Every file of an analysis, through the legacy paged ``/entities`` call Score uses."""
        entities: dict[str, FileEntity] = {}
        page = 0
        while True:
            params: dict[str, Any] = {"gnosId": analysis_id, "size": 2000, "page": page}
            if study_id:
                params["projectCode"] = study_id
            body = self.call("GET", "/entities", f"listing the files of analysis {analysis_id}", params=params).json()
            for item in body.get("content", []):
                entities.setdefault(
                    item["id"],
                    FileEntity(
                        item["id"],
                        item.get("gnosId", ""),
                        item.get("fileName", ""),
                        item.get("projectCode", ""),
                        item.get("access", ""),
                    ),
                )
            if body.get("last", True):
                return list(entities.values())
            page += 1

    def analysis_files(self, study_id: str, analysis_id: str) -> list[FileEntity]:
        """Files with their registered sizes and MD5s (``GET /studies/{s}/analysis/{a}/files``)."""
        body = self.call(
            "GET",
            f"/studies/{study_id}/analysis/{analysis_id}/files",
            f"listing the files of analysis {analysis_id} in study {study_id}",
        ).json()
        return [
            FileEntity(
                f["objectId"],
                f.get("analysisId", analysis_id),
                f["fileName"],
                f.get("studyId", study_id),
                f.get("fileAccess", ""),
                f.get("fileSize"),
                f.get("fileMd5sum"),
            )
            for f in body
        ]

    def studies(self) -> list[str]:
        """Every study id (``GET /studies/all``)."""
        body = self.call("GET", "/studies/all", "listing the studies").json()
        return [str(s) for s in body] if isinstance(body, list) else []

    def published_analyses(self, study_id: str) -> list[dict[str, Any]]:
        """Song's analysis JSON (files included) of every PUBLISHED analysis of a study."""
        body = self.call(
            "GET",
            f"/studies/{study_id}/analysis",
            f"listing the published analyses of study {study_id}",
            params={"analysisStates": "PUBLISHED"},
        ).json()
        return [a for a in body if isinstance(a, dict)] if isinstance(body, list) else []

    def analysis(self, study_id: str, analysis_id: str) -> dict[str, Any]:
        """Song's analysis JSON (``GET /studies/{s}/analysis/{a}``): state, times and files."""
        body = self.call(
            "GET", f"/studies/{study_id}/analysis/{analysis_id}", f"looking up analysis {analysis_id}"
        ).json()
        return body if isinstance(body, dict) else {}


def with_retries(call: Callable[[], T], attempts: int, what: str, retry_on: tuple[type[Exception], ...]) -> T:
    """Run ``call`` up to ``attempts`` times with back-off; the last failure propagates."""
    delay = 0.2
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except retry_on as exc:
            if attempt == attempts:
                raise
            log.debug("%s failed (%s); retry %d/%d", what, exc, attempt, attempts - 1)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
    raise AssertionError("unreachable")
