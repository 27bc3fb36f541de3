"""A download job saved as one tar archive: every file a range of one output file, on the job's own engine.

``DownloadJob(..., sink=ArchiveSink(path))`` plans, fetches and verifies as for separate files (the same
pool, part fetching, per-part and whole-object MD5 checks); only where the bytes go differs:

* The archive is laid out first (``archive.lay_out``: sizes and MD5s come from the specifications) and
  built as ``FILE.tar.partial``; every part of every file is written in place, at its final offset.
* Resume state is in ``.FILE.tar.state/`` beside it: ``layout.json`` (the members, their sizes and MD5s),
  per large file ``<objectId>/`` as for a large download (``meta.json``, one ``part-NNNNNNNN`` per finished
  part, written durably), per small file a ``<objectId>.done`` marker. A re-run with the same files fetches
  only what is missing; what an earlier run finished is verified again against its MD5 before it is kept
  (as a large download does), so a marker never has to be made durable before the bytes it stands for.
  Another set of files, or other sizes or MD5s, start the archive over (said so).
* When every file is done and verified, the MD5 manifest (the last member) is written, the archive is
  fsynced and renamed to ``FILE.tar``, and the state is removed. A failed file leaves the partial archive
  and its state for the re-run.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path

from score.client.errors import ClientError
from score.client.transfer.archive import Entry, Layout, Member, lay_out
from score.client.transfer.data import DataClient
from score.client.transfer.download import DownloadJob, LargeFetch, PlannedFile, check_empty
from score.client.transfer.hashing import md5_of_range
from score.client.transfer.jobs import Coordinator, FileOutcome, FileTally, JobReport, drive
from score.client.transfer.journal import fsync_dir, read_json, write_json
from score.client.transfer.output import OutputFile
from score.core import md5 as md5s

STATE_VERSION = 1


class ArchiveSink:
    """Puts a download job's files into one tar archive at ``path`` (see the module's description).

    Each file's member name is its target's path (``DownloadTarget.path``, relative, ``/``-separated).
    ``notify`` hears the lines meant for the user (an archive started over, written, or not written).
    """

    def __init__(self, path: Path, notify: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.partial = path.with_name(path.name + ".partial")
        self.state = path.with_name(f".{path.name}.state")
        self._notify = notify or (lambda message: None)
        self.layout: Layout | None = None
        self.written = False
        self._files: list[PlannedFile] = []
        self._members: dict[str, Member] = {}  # by object id
        self._out: OutputFile | None = None

    # -- the job's hooks -------------------------------------------------------------------------------
    def prepare(self, files: list[PlannedFile], report: JobReport) -> list[PlannedFile]:
        """Lay the archive out (or take up the one in progress), write the headers, and place each file's
        parts at their offsets in it. Nothing is fetched unless every file could be planned."""
        if report.failed:
            self._notify(
                f"{self.path} was not started: every file's size is needed to lay out the archive, "
                "and the files above could not be planned"
            )
            return []
        if any(f.offset != 0 or f.span != f.spec.objectSize for f in files):
            raise ClientError("an archive holds whole files: --offset and --length cannot be used with --archive")
        files = sorted(files, key=_member_name)
        entries = [Entry(_member_name(f), f.spec.objectSize, _known(f.spec.objectMd5)) for f in files]
        identity = {
            "version": STATE_VERSION,
            "members": [[e.name, f.key, e.size, e.md5] for e, f in zip(entries, files, strict=True)],
        }
        previous = read_json(self.state / "layout.json")
        resuming = previous is not None and previous.get("identity") == identity
        mtime = previous.get("mtime") if resuming and previous is not None else None
        mtime = mtime if isinstance(mtime, int) else int(time.time())  # every member's time: when it was started
        try:
            layout = lay_out(entries, mtime=mtime)
        except ValueError as exc:
            raise ClientError(f"cannot save the download as {self.path}: {exc}") from None
        if resuming and _size_of(self.partial) != layout.size:
            resuming = False
            self._notify(f"starting {self.partial} over: it is missing or not the size its layout says")
        elif previous is not None and not resuming:
            self._notify(
                f"starting {self.partial} over: the files of this download (or their sizes or MD5s) are not "
                "those it was started with"
            )
        if not resuming:
            shutil.rmtree(self.state, ignore_errors=True)
            self.partial.unlink(missing_ok=True)
            write_json(self.state / "layout.json", {"identity": identity, "mtime": mtime})
        self._check_space(layout)

        self.layout = layout
        self._out = out = OutputFile(self.partial, layout.size, direct=True)
        for member in layout.members:
            _write_all(out.fd, member.header, member.header_offset)
        placed = []
        for f, member in zip(files, layout.files, strict=True):
            self._members[f.key] = member
            parts = [replace(p, write_at=p.write_at + member.data_offset) for p in f.parts]
            placed.append(replace(f, parts=parts))
        self._files = placed
        return placed

    def start(
        self,
        job: DownloadJob,
        f: PlannedFile,
        coordinator: Coordinator,
        data: DataClient,
        large_slots: threading.Semaphore,
    ) -> Future[FileOutcome]:
        if f.small:
            return coordinator.submit(self._small, job, f, coordinator, data)
        return drive(lambda: self._large(job, f, coordinator, data, large_slots), f"member-{f.key[:8]}")

    def finish(self, report: JobReport) -> None:
        """Every file done and verified: write the manifest, fsync, rename. Otherwise keep what is done."""
        out, layout = self._out, self.layout
        if out is None or layout is None:
            return
        self._out = None
        try:
            complete = self._complete(out, layout, report)
        except OSError as exc:
            raise ClientError(f"could not finish {self.partial}: {exc}") from exc
        finally:
            out.close()
        if not complete:
            return
        try:
            os.replace(self.partial, self.path)
            fsync_dir(self.path.parent)
        except OSError as exc:
            raise ClientError(f"could not rename {self.partial} to {self.path}: {exc}") from exc
        shutil.rmtree(self.state, ignore_errors=True)
        self.written = True
        self._notify(
            f"saved {len(self._files)} files in {self.path} ({layout.size} bytes), "
            f"with their MD5s in {layout.manifest.name} (tar -xf, then md5sum -c {layout.manifest.name})"
        )

    def _complete(self, out: OutputFile, layout: Layout, report: JobReport) -> bool:
        """Whether every file is done; if so the manifest is written and the whole archive is on disk."""
        done = {o.object_id for o in report.of("done")}
        missing = [_member_name(f) for f in self._files if f.key not in done]
        if missing:
            names = ", ".join(repr(name) for name in missing[:10]) + (" ..." if len(missing) > 10 else "")
            self._notify(
                f"{self.path} was not written: {len(missing)} of {len(self._files)} files are not done ({names}); "
                f"{self.partial} keeps the rest: run the same command again to fetch only what is missing"
            )
            return False
        # Verified files hash to their MD5; the others (no MD5 known, or --validate false) are hashed here.
        digests = [
            _known(f.check_md5) or md5_of_range(out.fd, self._members[f.key].data_offset, f.span) for f in self._files
        ]
        _write_all(out.fd, layout.manifest_bytes(digests), layout.manifest.data_offset)
        os.fsync(out.fd)
        return True

    # -- one file ------------------------------------------------------------------------------------------
    def _small(self, job: DownloadJob, f: PlannedFile, coordinator: Coordinator, data: DataClient) -> FileOutcome:
        """A file of one part (or none): fetched whole into its place, verified as it arrives; a marker says
        so, and a re-run keeps the bytes if they still hash to the file's MD5."""
        assert self._out is not None
        name = _member_name(f)
        tally = FileTally(job._progress, f.key, coordinator)
        if not f.parts:  # an empty file: nothing to fetch
            tally.start(Path(name).name, 0)
            check_empty(f)
            return FileOutcome(name, f.key, "done", 0, verified=f.validate)
        expected = f.check_md5 or f.parts[0].source_md5
        marker = self.state / f"{f.key}.done"
        record = {"uploadId": f.spec.uploadId, "md5": expected, "at": self._members[f.key].data_offset}
        if read_json(marker) == record and self._still_there(f, expected):
            tally.start(Path(name).name, f.span, f.span)
            return FileOutcome(name, f.key, "done", f.span, parts_skipped=1, verified=bool(f.validate and expected))
        tally.start(Path(name).name, f.span)
        marker.unlink(missing_ok=True)
        verified = job.fetch_whole(f, self._out, data, tally)
        write_json(marker, record, durable=False)  # not durable: a lost marker means one more fetch
        return FileOutcome(name, f.key, "done", f.span, parts_moved=1, verified=verified)

    def _still_there(self, f: PlannedFile, expected: str | None) -> bool:
        """The bytes an earlier run left for this file (checked against its MD5 when verifying)."""
        if not (f.validate and expected):
            return True
        assert self._out is not None
        return md5s.equal(md5_of_range(self._out.fd, self._members[f.key].data_offset, f.span), expected)

    def _large(
        self,
        job: DownloadJob,
        f: PlannedFile,
        coordinator: Coordinator,
        data: DataClient,
        large_slots: threading.Semaphore,
    ) -> FileOutcome:
        """A file of several parts: as a large download, with its state in the archive's state and its
        bytes in the archive (the whole file is verified again, parts finished earlier included)."""
        assert self._out is not None
        state_dir = self.state / f.key
        identity = {
            "objectId": f.key,
            "uploadId": f.spec.uploadId,
            "objectSize": f.spec.objectSize,
            "objectMd5": f.spec.objectMd5,
            "at": self._members[f.key].data_offset,
            "validate": f.validate,
        }
        if (read_json(state_dir / "meta.json") or {}).get("identity") != identity:
            shutil.rmtree(state_dir, ignore_errors=True)
        state_dir.mkdir(parents=True, exist_ok=True)
        write_json(state_dir / "meta.json", {"identity": identity})
        finished = {p.number for p in f.parts if (state_dir / f"part-{p.number:08x}").exists()}
        fetch = LargeFetch(job, f, self._out, state_dir, coordinator, data, large_slots)
        fetched, digest = fetch.run(finished)
        verified = digest is not None or (f.validate and all(p.source_md5 for p in f.parts))
        return FileOutcome(
            _member_name(f), f.key, "done", f.span, parts_moved=fetched, parts_skipped=len(finished), verified=verified
        )

    # -- helpers -------------------------------------------------------------------------------------------
    def _check_space(self, layout: Layout) -> None:
        folder = self.partial.parent
        folder.mkdir(parents=True, exist_ok=True)
        have = shutil.disk_usage(folder).free
        try:
            allocated = self.partial.stat().st_blocks * 512
        except OSError:
            allocated = 0
        want = layout.size - allocated
        if want > have:
            raise ClientError(
                f"not enough free space in {folder} for {self.path}: it needs {want} more bytes, {have} are free; "
                "free some space or choose another place for --archive"
            )


def _member_name(f: PlannedFile) -> str:
    return f.target.path.as_posix()


def _known(md5: str | None) -> str | None:
    return md5s.normalize(md5) if md5s.known(md5) else None  # type: ignore[arg-type]


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def _write_all(fd: int, data: bytes, position: int) -> None:
    """``pwrite`` all of ``data`` (through the ordinary descriptor: these bytes are not aligned for direct I/O)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, position)
        view, position = view[written:], position + written
