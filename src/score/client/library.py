"""score-client as a Python library: what pipelines and notebooks call instead of running the command.

    from score.client import ScoreClient

    with ScoreClient("http://localhost:8087", access_token=token) as score:
        score.upload_analysis("ABC123", analysis_id, input_dir="data/")
        report = score.download(analysis_id=analysis_id, study_id="ABC123", output_dir="out/")
        print(report.summary("downloaded"))
        url = score.url(object_id)                                 # for curl, samtools, pandas ...
        records = score.view(object_id, "out/", queries=["chr1:1-100000"])

It is the engine the command line runs — the same ``Session``, file choice and transfer jobs, with the same
checks, retries, resume and MD5 verification — without the command line: no progress bars unless asked,
no ``sys.exit``; a failure raises ``ClientError`` (or ``TransferFailed``, which carries the job's report).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from score.client.api import FileEntity
from score.client.config import ClientConfig
from score.client.errors import ClientError
from score.client.session import Selection, Session, download_entities, upload_items
from score.client.transfer.download import DownloadJob, DownloadTarget
from score.client.transfer.jobs import FileOutcome, JobReport
from score.client.transfer.upload import UploadItem, UploadJob
from score.core.ids import is_uuid

LAYOUTS = ("filename", "bundle", "id")


class TransferFailed(ClientError):
    """Some files of a job failed; ``report`` has every file's outcome (the others are done)."""

    def __init__(self, message: str, report: JobReport) -> None:
        super().__init__(message)
        self.report = report


class ScoreClient:
    """A configured client. Arguments left out come from the environment and the configuration file, as for
    the command (``STORAGE_URL``, ``ACCESSTOKEN``, ``~/.config/score/client.toml`` ...)."""

    def __init__(
        self,
        storage_url: str | None = None,
        access_token: str | None = None,
        *,
        metadata_url: str | None = None,
        parallel: int | None = None,
        config_file: str | None = None,
        progress: bool = False,
    ) -> None:
        config = ClientConfig.load(
            config_file,
            storage_url=storage_url,
            access_token=access_token,
            metadata_url=metadata_url,
            parallel=parallel,
        )
        self.session = Session(config, quiet=not progress)

    @property
    def config(self) -> ClientConfig:
        return self.session.config

    # -- upload --------------------------------------------------------------------------------
    def upload(self, path: str | Path, object_id: str, md5: str | None = None, *, force: bool = False) -> FileOutcome:
        """Upload one file under its registered object id (``md5`` defaults to the registered one)."""
        item = UploadItem(Path(path), checked_object_id(object_id), md5)
        report = self._upload([item], force)
        return report.outcomes[0]

    def upload_analysis(
        self, study_id: str, analysis_id: str, input_dir: str | Path = ".", *, force: bool = False
    ) -> JobReport:
        """Upload every file registered in an analysis, found by registered name in ``input_dir``, as one
        job; files uploaded before are skipped, so calling it again finishes an interrupted job."""
        selection = Selection(analysis_id=analysis_id, study_id=study_id)
        return self._upload(upload_items(self.session, selection, Path(input_dir)), force)

    def upload_manifest(self, manifest: str | Path, *, force: bool = False) -> JobReport:
        """Upload the files of a Song upload manifest (object id, path, MD5 per line), as one job."""
        selection = Selection(manifest=str(manifest))
        return self._upload(upload_items(self.session, selection, Path()), force)

    def _upload(self, items: list[UploadItem], force: bool) -> JobReport:
        """An object that already holds the file is skipped; one holding other content needs ``force``."""
        job = UploadJob(self.config, self.session.score, self.session.job_progress("uploaded"))
        return _checked(job.run(items, force, JobReport()), "uploaded")

    # -- download ------------------------------------------------------------------------------
    def download(
        self,
        object_ids: Sequence[str] = (),
        *,
        output_dir: str | Path,
        manifest: str | Path | None = None,
        analysis_id: str | None = None,
        study_id: str | None = None,
        layout: str = "filename",
        index: bool = True,
        force: bool = False,
        validate: bool = True,
    ) -> JobReport:
        """Download objects (by id, a manifest's, or an analysis's) into ``output_dir`` as one job. ``layout``:
        ``filename`` (``DIR/<fileName>``), ``bundle`` (``DIR/<analysisId>/<fileName>``) or ``id``. With
        ``index``, index files come along (``x.bam.bai`` ...). A file already there with the registered size and
        MD5 is skipped; any other needs ``force``."""
        if layout not in LAYOUTS:
            raise ClientError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
        ids = tuple(checked_object_id(i) for i in object_ids)
        ways = sum(1 for way in (ids, manifest, analysis_id) if way)
        if ways != 1:
            raise ClientError("give exactly one of object_ids, manifest or analysis_id (with study_id)")
        if analysis_id and not study_id:
            raise ClientError("analysis_id needs study_id")
        selection = Selection(ids, str(manifest) if manifest else None, analysis_id, study_id)
        entities, claims = download_entities(self.session, selection, index)
        directory = Path(output_dir)
        targets = [
            DownloadTarget(e.object_id, target_path(directory, layout, e), claims.get(e.object_id)) for e in entities
        ]
        job = DownloadJob(self.config, self.session.score, self.session.job_progress("downloaded"))
        return _checked(job.run(targets, 0, -1, validate, force, JobReport()), "downloaded")

    # -- a URL, a region -----------------------------------------------------------------------
    def url(self, object_id: str) -> str:
        """A signed URL of the whole object, valid for any ``Range`` (curl, samtools, pysam, fsspec ...)."""
        spec = self.session.score.download_spec(checked_object_id(object_id), external=True)
        if not spec.parts or not spec.parts[0].url:
            raise ClientError(f"the server gave no URL for object {object_id}")
        return spec.parts[0].url

    def view(
        self,
        object_id: str,
        output_dir: str | Path,
        *,
        queries: Sequence[str] = (),
        output_format: str | None = None,
        reference: str | Path | None = None,
    ) -> Path:
        """The records of a BAM/CRAM/VCF/BCF object in ``queries`` (samtools regions; none: the header only),
        written to a file in ``output_dir`` (named as ``score-client view`` names it); its path. Reads only
        the blocks the object's index points to. Needs pysam (the ``genomics`` extra)."""
        from score.client.genomics.resolve import resolve_object
        from score.client.genomics.sandbox import private_workdir
        from score.client.genomics.view import ViewRequest, output_name, view
        from score.client.genomics.view import output_format as format_of

        directory = Path(output_dir).absolute()
        directory.mkdir(parents=True, exist_ok=True)
        request = ViewRequest(
            queries=tuple(queries),
            header_only=not queries,
            output_format=output_format,
            reference=Path(reference).absolute() if reference else None,
        )
        with private_workdir() as workdir:
            source = resolve_object(self.session, checked_object_id(object_id), workdir, None, bool(queries), None)
            target = directory / output_name(source.name, request, format_of(source, output_format))
            result = view(source, request, target, workdir, lambda line: None)
        assert result.output is not None
        return result.output

    # -- lifetime ------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connections to the servers (the client can no longer be used)."""
        self.session.close()

    def __enter__(self) -> ScoreClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def target_path(output_dir: Path, layout: str, entity: FileEntity) -> Path:
    """Where a downloaded file goes under ``output_dir``: ``id`` (object id), ``bundle`` (analysis id/file
    name) or ``filename``; a registered name never leaves the directory (only its last component counts)."""
    if layout == "id" or not entity.file_name:
        return output_dir / entity.object_id
    name = Path(entity.file_name).name
    if layout == "bundle":
        return output_dir / (entity.analysis_id or "unknown-analysis") / name
    return output_dir / name


def checked_object_id(value: str) -> str:
    """A valid object id (a UUID), lower-cased; anything else is a ``ClientError`` that says so."""
    if not is_uuid(value.strip()):
        raise ClientError(f"{value!r} is not a valid object id (a UUID such as 5b2c1f0e-...)")
    return value.strip().lower()


def _checked(report: JobReport, verb: str) -> JobReport:
    if report.failed:
        first = report.failed[0]
        raise TransferFailed(
            f"{len(report.failed)} of {len(report.outcomes)} files failed; {first.name}: {first.detail}", report
        )
    return report
