"""Upload one file: initiate or resume, send missing parts in parallel, verify, finalize.

Resume: a journal beside the file (``.<objectId>/upload.json``, bound to the file's size and mtime)
remembers the upload id; the server's status marks completed parts, which are never sent again, and
gives the MD5 of parts the store holds but nobody recorded (the client died between a part's PUT and its
record), which are recorded instead of sent again when the file's part hashes the same. The journal notes
when finalize was asked, so a client killed after the server finished (the object exists) but before it
removed its journal ends its re-run by confirming that finalize, not with "already exists".
Integrity: every part goes with its MD5 (``Content-MD5``, hashed ahead of sending, many parts at once on
SIMD lanes: ``upload_hashing``), which the store checks and its ETag must equal; the whole file's MD5 is
computed beside the transfer and must equal the declared MD5 before the server is asked to finalize
(which checks it again against the declared and registered MD5s). Each sent part is recorded with the
server beside the transfer; a part the server will not record is sent again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from score.client.api import ScoreApi
from score.client.config import ClientConfig
from score.client.errors import ClientError, IntegrityError, ServerError
from score.client.transfer.data import DataClient
from score.client.transfer.journal import read_json, write_json
from score.client.transfer.parallel import PartTally, UrlBook, run_parallel, transfer_part
from score.client.transfer.progress import NoProgress, Progress
from score.client.transfer.upload_hashing import PartMd5s, WholeFileMd5
from score.core import md5 as md5s
from score.core.models import Part, UploadProgress
from score.crashpoints import crash_point

log = logging.getLogger("score.client")


@dataclass(frozen=True)
class UploadResult:
    object_id: str
    size: int
    md5: str
    parts_sent: int
    parts_skipped: int


def _file_identity(path: Path) -> dict[str, int]:
    stat = path.stat()
    return {"size": stat.st_size, "mtimeNs": stat.st_mtime_ns}


def state_dir_for(path: Path, object_id: str, config: ClientConfig) -> Path:
    """Beside the file (Score's place), unless configured otherwise or the file's folder is read-only."""
    if config.upload_state_dir:
        return Path(config.upload_state_dir) / f".{object_id}"
    if os.access(path.parent, os.W_OK):
        return path.parent / f".{object_id}"
    folder = hashlib.sha256(str(path.resolve().parent).encode()).hexdigest()[:16]
    return Path.home() / ".cache" / "score" / "uploads" / folder / f".{object_id}"


class Uploader:
    def __init__(self, config: ClientConfig, api: ScoreApi, progress: Progress | None = None) -> None:
        self._config = config
        self._api = api
        self._progress = progress or NoProgress()

    def upload(self, path: Path, object_id: str, md5: str | None, force: bool) -> UploadResult:
        try:
            readable = path.is_file()
        except OSError as exc:  # e.g. a name longer than the system allows
            raise ClientError(f"cannot read {str(path)[:120]}: {exc.strerror or exc}") from None
        if not readable:
            raise ClientError(f"{str(path)[:200]} is not a readable file")
        declared = None
        if md5:
            try:
                declared = md5s.normalize(md5)
            except ValueError as exc:
                raise ClientError(f"--md5 for {path}: {exc}") from exc
        identity = _file_identity(path)
        size = identity["size"]
        state_dir = state_dir_for(path, object_id, self._config)
        journal_path = state_dir / "upload.json"
        if not force and self._api.exists(object_id):
            finished = self._confirm_interrupted_finalize(object_id, identity, journal_path)
            if finished is None:
                raise ClientError(f"object {object_id} already exists; use --force to replace it")
            shutil.rmtree(state_dir, ignore_errors=True)
            return finished

        whole = WholeFileMd5.for_file(path, size, identity["mtimeNs"])  # overlaps the API calls below
        part_md5s: PartMd5s | None = None
        try:
            upload_id, parts = self._resume_or_start(object_id, size, declared, force, identity, journal_path)
            todo = [p for p in parts if p.md5 is None]  # recorded parts carry md5; the rest may be held
            part_md5s = PartMd5s(path, [(p.offset, p.partSize) for p in todo], self._config.parallel, whole.read_ahead)
            done_bytes = sum(p.partSize for p in parts if p.md5 is not None)
            self._progress.start(path.name, size, done_bytes)
            try:
                held = self._send_parts(path, object_id, upload_id, todo, part_md5s) if todo else 0
                part_md5s.check()
                computed = whole.result()
            finally:
                self._progress.finish()
        finally:  # a failed upload leaves no thread hashing on behind it
            whole.stop()
            if part_md5s is not None:
                part_md5s.stop()
        if _file_identity(path) != identity:
            raise IntegrityError(f"{path} changed while it was being uploaded; upload it again")
        if declared and computed != declared:
            self._api.cancel(object_id)
            shutil.rmtree(state_dir, ignore_errors=True)
            raise IntegrityError(
                f"{path} hashes to {computed} but its declared MD5 is {declared}; nothing was stored. "
                "Check the file or the MD5 you gave, then upload again"
            )
        crash_point("upload.parts_done")
        journal = read_json(journal_path) or {}
        write_json(journal_path, {**journal, "finalizing": computed, "parts": len(parts)})
        self._api.finalize(object_id, upload_id, computed)
        crash_point("upload.finalized")
        shutil.rmtree(state_dir, ignore_errors=True)
        return UploadResult(object_id, size, computed, len(todo) - held, len(parts) - len(todo) + held)

    def _confirm_interrupted_finalize(
        self, object_id: str, identity: dict[str, int], journal_path: Path
    ) -> UploadResult | None:
        """The object exists: if this file's interrupted run had asked to finalize it, confirm that finalize
        (the server answers success only if the object is that very upload) and report the upload done."""
        journal = read_json(journal_path)
        if not journal or journal.get("file") != identity or not journal.get("finalizing"):
            return None
        md5 = str(journal["finalizing"])
        try:
            self._api.finalize(object_id, str(journal.get("uploadId")), md5)
        except ServerError as exc:
            if exc.status in (400, 404):
                return None  # the object is someone else's upload
            raise
        log.info("the interrupted upload %s of %s had been finalized", journal.get("uploadId"), object_id)
        parts = int(journal.get("parts") or 0)
        return UploadResult(object_id, identity["size"], md5, 0, parts)

    def _resume_or_start(
        self,
        object_id: str,
        size: int,
        declared: str | None,
        force: bool,
        identity: dict[str, int],
        journal_path: Path,
    ) -> tuple[str, list[Part]]:
        journal = read_json(journal_path)
        if force and journal is not None and journal.get("file") == identity and journal.get("md5") == declared:
            # --force discards uploads in progress, but not this very file's own interrupted --force run
            # (an overwrite): resume that one instead of sending every part again.
            progress = self._progress_or_none(object_id, size)
            if progress is not None and progress.uploadId == journal.get("uploadId"):
                log.info("resuming upload %s of %s (started with --force)", progress.uploadId, object_id)
                return progress.uploadId, progress.parts
        if not force:
            try:
                progress = self._api.status(object_id, size)
            except ServerError as exc:
                if exc.status == 400 and journal is not None:
                    raise ClientError(
                        f"the file changed since the interrupted upload of {object_id} ({exc}); "
                        "use --force to start over"
                    ) from exc
                raise
            if progress is not None:
                if journal is None or journal.get("uploadId") != progress.uploadId:
                    raise ClientError(
                        f"an upload of object {object_id} is already in progress, started elsewhere; "
                        "use --force to discard it and start over"
                    )
                if journal.get("file") != identity or (declared and journal.get("md5") not in (None, declared)):
                    raise ClientError(
                        f"the file changed since the interrupted upload of {object_id} began; use --force to start over"
                    )
                log.info("resuming upload %s of %s", progress.uploadId, object_id)
                return progress.uploadId, progress.parts
        spec = self._api.initiate(object_id, size, declared, overwrite=force)
        write_json(journal_path, {"objectId": object_id, "uploadId": spec.uploadId, "file": identity, "md5": declared})
        crash_point("upload.initiated")
        return spec.uploadId or "", spec.parts

    def _progress_or_none(self, object_id: str, size: int) -> UploadProgress | None:
        """The upload in progress, or None when there is none or it is for another size."""
        try:
            return self._api.status(object_id, size)
        except ServerError as exc:
            if exc.status == 400:
                return None
            raise

    def _send_parts(self, path: Path, object_id: str, upload_id: str, parts: list[Part], hasher: PartMd5s) -> int:
        """Send (or, where the store already holds them, just record) ``parts``; return how many were held."""
        size = path.stat().st_size
        held: list[int] = []  # list.append is atomic: the senders share it

        def fresh_urls() -> dict[int, str | None]:
            progress = self._api.status(object_id, size)
            if progress is None or progress.uploadId != upload_id:
                raise ClientError(f"the upload of {object_id} was cancelled or replaced on the server; upload again")
            return {p.partNumber: p.url for p in progress.parts}

        urls = UrlBook({p.partNumber: p.url for p in parts}, fresh_urls)
        data = DataClient(self._config.parallel, self._config.timeout, self._config.chunk_size)
        # Recording a part (a call the server answers after a few store requests, slow while the store is
        # busy taking the other parts) runs beside the transfer, so a sender goes straight on to its next part.
        recorder = ThreadPoolExecutor(max_workers=2, thread_name_prefix="record-part")
        recording: dict[int, Future[None]] = {}

        def send(part: Part, record_later: bool) -> None:
            what = f"part {part.partNumber} of {object_id}"

            def put(url: str, tally: PartTally) -> None:
                md5 = hasher.part_md5(part.offset)
                if part.sourceMd5 and part.sourceMd5.lower() == md5 and record_later:
                    etag = md5  # the store already holds exactly these bytes: record them, send nothing
                    tally(part.partSize)
                    held.append(part.partNumber)
                else:
                    etag = data.put_part(url, path, part.offset, part.partSize, md5, tally, what)
                    crash_point("upload.part_sent")
                if etag and md5s.is_hex(etag) and etag.lower() != md5:
                    raise IntegrityError(f"{what}: the store received bytes hashing to {etag}, we sent {md5}")
                record = (object_id, upload_id, part.partNumber, md5, etag or md5)
                if record_later:
                    recording[part.partNumber] = recorder.submit(self._recorded, *record)
                else:
                    self._recorded(*record)

            transfer_part(put, part.partNumber, what, urls, self._progress, self._config.retries)

        try:
            run_parallel(lambda part: send(part, record_later=True), parts, self._config.parallel)
            unrecorded = [p for p in parts if _failed(recording[p.partNumber], f"recording part {p.partNumber}")]
            # The server would not record these (after its own retries): send them again, recording each
            # before going on, so a part that cannot be recorded fails the upload with the server's reason.
            run_parallel(lambda part: send(part, record_later=False), unrecorded, self._config.parallel)
        finally:
            recorder.shutdown(wait=True, cancel_futures=True)
            data.close()
        return len(set(held) - {p.partNumber for p in unrecorded})

    def _recorded(self, object_id: str, upload_id: str, part_number: int, md5: str, etag: str) -> None:
        self._api.finalize_part(object_id, upload_id, part_number, md5, etag)
        crash_point("upload.part_recorded")


def _failed(recorded: Future[None], what: str) -> bool:
    error = recorded.exception()
    if error is None:
        return False
    if not isinstance(error, ClientError):
        raise error
    log.info("%s failed (%s); sending the part again", what, error)
    return True
