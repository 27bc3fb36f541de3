"""Download one object (or a byte range of it): parts in parallel into a partial file, verified, renamed.

State lives in ``<output-dir>/.<objectId>/``: ``data.partial`` (bytes written in place), ``meta.json``
(what is being downloaded) and one ``part-NNNNNNNN`` file per finished, verified part. The final name
appears only after every part is in and the whole-file MD5 matched, by an atomic rename, so a kill at
any point leaves either the previous state (resumable) or the finished file, never a partial file under
the final name. Expired URLs are renewed by asking the server again, never by starting over.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from score.client.api import ScoreApi
from score.client.config import ClientConfig
from score.client.errors import ClientError, IntegrityError
from score.client.transfer.data import DataClient
from score.client.transfer.hashing import InOrderHasher, md5_of_range
from score.client.transfer.journal import fsync_dir, read_json, write_json
from score.client.transfer.output import OutputFile
from score.client.transfer.parallel import PartTally, UrlBook, run_parallel, transfer_part
from score.client.transfer.progress import NoProgress, Progress
from score.core import md5 as md5s
from score.core.models import ObjectSpecification

log = logging.getLogger("score.client")


@dataclass(frozen=True)
class PlannedPart:
    """Fetch ``[fetch_offset, +fetch_size)``; keep ``[skip, skip+keep)`` of it at ``write_at`` in the output."""

    number: int
    fetch_offset: int
    fetch_size: int
    source_md5: str | None
    skip: int
    keep: int
    write_at: int


@dataclass(frozen=True)
class DownloadResult:
    object_id: str
    path: Path
    size: int
    md5: str | None
    parts_fetched: int
    parts_skipped: int
    verified: bool


def plan(spec: ObjectSpecification, offset: int, length: int) -> list[PlannedPart]:
    """Parts to fetch for ``[offset, offset+length)`` of an object whose upload parts are ``spec.parts``.

    Parts are fetched whole, so each can be checked against the MD5 it was uploaded with; only the
    bytes inside the range are written.
    """
    end = offset + length
    planned = []
    for part in spec.parts:
        lo, hi = max(part.offset, offset), min(part.end, end)
        if lo >= hi:
            continue
        planned.append(
            PlannedPart(
                part.partNumber,
                part.offset,
                part.partSize,
                part.sourceMd5 if md5s.known(part.sourceMd5) else None,
                lo - part.offset,
                hi - lo,
                lo - offset,
            )
        )
    return planned


@dataclass(frozen=True)
class _Job:
    """One download in progress: what to fetch, from where, into which partial file."""

    object_id: str
    spec_range: tuple[int, int]  # (offset, length) of the specification the URLs come from
    parts: list[PlannedPart]
    urls: dict[int, str | None]
    state_dir: Path
    partial: Path
    name: str
    span: int


class Downloader:
    def __init__(self, config: ClientConfig, api: ScoreApi, progress: Progress | None = None) -> None:
        self._config = config
        self._api = api
        self._progress = progress or NoProgress()

    def download(
        self,
        object_id: str,
        target: Path,
        offset: int = 0,
        length: int = -1,
        validate: bool = True,
        force: bool = False,
    ) -> DownloadResult | None:
        """Download to ``target``; None if it already exists and ``force`` is off."""
        if target.exists() and not force:
            return None
        spec = self._api.download_spec(object_id)
        size = spec.objectSize
        if offset < 0 or offset > size:
            raise ClientError(f"--offset {offset} is outside object {object_id} ({size} bytes)")
        span = size - offset if length < 0 else length
        if offset + span > size:
            raise ClientError(f"--offset {offset} --length {length} goes beyond object {object_id} ({size} bytes)")
        whole = offset == 0 and span == size

        state_dir = target.parent / f".{object_id}"
        _check_free_space(target.parent, span, state_dir / "data.partial")
        if force and target.exists():
            target.unlink()
        identity = {
            "objectId": object_id,
            "uploadId": spec.uploadId,
            "objectSize": size,
            "objectMd5": spec.objectMd5,
            "offset": offset,
            "length": span,
            "wholeParts": validate or whole,
        }
        if (read_json(state_dir / "meta.json") or {}).get("identity") != identity or force:
            shutil.rmtree(state_dir, ignore_errors=True)  # a different object or range: start afresh
        state_dir.mkdir(parents=True, exist_ok=True)
        write_json(state_dir / "meta.json", {"identity": identity})
        partial = state_dir / "data.partial"

        # Verified ranges fetch whole upload parts (to check their MD5s); unverified ones only the range.
        spec_range = (0, -1) if validate or whole else (offset, span)
        if spec_range != (0, -1):
            spec = self._api.download_spec(object_id, *spec_range)
        parts = plan(spec, offset, span)
        finished = {p.number for p in parts if (state_dir / f"part-{p.number:08x}").exists()}
        urls = {p.partNumber: p.url for p in spec.parts}
        check_whole = validate and whole and md5s.known(spec.objectMd5)
        job = _Job(object_id, spec_range, parts, urls, state_dir, partial, target.name, span)
        # Direct I/O only for whole objects: their parts start at multiples of the part size.
        out = OutputFile(partial, span, direct=whole)
        try:
            object_md5 = spec.objectMd5 if check_whole else None
            fetched, digest = self._fetch_verified(job, out, finished, validate, object_md5)
            os.fsync(out.fd)
        finally:
            out.close()
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, target)
        fsync_dir(target.parent)
        shutil.rmtree(state_dir, ignore_errors=True)
        verified = digest is not None or (validate and all(p.source_md5 for p in parts))
        return DownloadResult(object_id, target, span, digest, fetched, len(finished), verified)

    def _fetch_verified(
        self,
        job: _Job,
        out: OutputFile,
        finished: set[int],
        validate: bool,
        object_md5: str | None,
    ) -> tuple[int, str | None]:
        """Fetch the missing parts and verify; return (parts fetched, whole-object MD5 or None).

        With a whole-object MD5 to check, every byte is hashed once, for that check; parts are hashed
        against their ``sourceMd5`` only if it fails, to find and re-fetch just the corrupt ones.
        Without one (ranges, legacy objects), each part is checked against its ``sourceMd5`` as it arrives.
        """
        pending = {p.number for p in job.parts} - finished
        fetched = 0
        for attempt in (1, 2):
            hasher = None
            if object_md5 is not None:
                on_disk = {i for i, p in enumerate(job.parts) if p.number not in pending}
                hasher = InOrderHasher(out.fd, [(p.write_at, p.keep) for p in job.parts], on_disk)
            todo = [p for p in job.parts if p.number in pending]
            self._progress.start(job.name, job.span, sum(p.keep for p in job.parts if p.number not in pending))
            try:
                self._fetch(job, out, todo, validate and object_md5 is None, hasher)
                digest = hasher.result() if hasher is not None else None
            except BaseException:
                if hasher is not None:
                    hasher.cancel()
                raise
            finally:
                self._progress.finish()
            fetched += len(todo)
            if digest is None or md5s.equal(digest, object_md5):
                return fetched, digest
            corrupt = [
                p
                for p in job.parts
                if p.source_md5 and not md5s.equal(md5_of_range(out.fd, p.write_at, p.keep), p.source_md5)
            ]
            if not corrupt:
                # Every part checks out: re-hash the file once before calling it damaged.
                digest = md5_of_range(out.fd, 0, job.span)
                if md5s.equal(digest, object_md5):
                    return fetched, digest
                break
            if attempt == 2:
                break
            log.warning(
                "object %s: %d corrupt part(s) found after the MD5 check; fetching them again",
                job.object_id,
                len(corrupt),
            )
            for part in corrupt:
                (job.state_dir / f"part-{part.number:08x}").unlink(missing_ok=True)
            pending = {p.number for p in corrupt}
        shutil.rmtree(job.state_dir, ignore_errors=True)
        raise IntegrityError(
            f"object {job.object_id}: the downloaded bytes hash to {digest} but the object's MD5 is {object_md5}; "
            "the partial download was discarded. If this repeats, the stored object is damaged: tell its owner"
        )

    def _fetch(
        self,
        job: _Job,
        out: OutputFile,
        todo: list[PlannedPart],
        hash_parts: bool,
        hasher: InOrderHasher | None,
    ) -> None:
        def fresh_urls() -> dict[int, str | None]:
            return {p.partNumber: p.url for p in self._api.download_spec(job.object_id, *job.spec_range).parts}

        book = UrlBook(job.urls, fresh_urls)
        data = DataClient(self._config.parallel, self._config.timeout, self._config.chunk_size)

        def fetch(part: PlannedPart) -> None:
            what = f"part {part.number} of {job.object_id}"

            def get(url: str, tally: PartTally) -> None:
                hashing = hash_parts and part.source_md5 is not None
                digest = data.get_range(
                    url,
                    part.fetch_offset,
                    part.fetch_size,
                    out,
                    part.write_at,
                    part.skip,
                    part.keep,
                    hashing,
                    tally,
                    what,
                    hasher,
                )
                if digest is not None and not md5s.equal(digest, part.source_md5):
                    raise IntegrityError(f"{what}: received bytes hash to {digest}, expected {part.source_md5}")

            try:
                transfer_part(get, part.number, what, book, self._progress, self._config.retries)
            except BaseException:
                if hasher is not None:
                    hasher.cancel()  # workers waiting for their buffers to be hashed must not wait for this part
                raise
            write_json(job.state_dir / f"part-{part.number:08x}", {"partNumber": part.number, "md5": part.source_md5})
            out.part_finished()

        try:
            run_parallel(fetch, todo, self._config.parallel)
        finally:
            data.close()


def _check_free_space(directory: Path, needed: int, partial: Path) -> None:
    """Refuse up front rather than fail (or fill the disk) half-way through."""
    directory.mkdir(parents=True, exist_ok=True)
    have = shutil.disk_usage(directory).free
    already = partial.stat().st_blocks * 512 if partial.exists() else 0
    if needed - already > have:
        raise ClientError(
            f"not enough free space in {directory}: the download needs {needed - already} more bytes, "
            f"{have} are free; free some space or choose another --output-dir"
        )
