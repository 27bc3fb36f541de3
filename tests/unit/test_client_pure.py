"""Client logic without I/O: configuration precedence, manifests, download planning."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from score.client.config import ClientConfig
from score.client.errors import ClientError
from score.client.transfer.download import plan
from score.client.wire import ObjectSpecification, Part, parse_info, parse_progress, parse_spec
from score.core.manifest import ManifestError, parse_download_manifest, parse_upload_manifest
from score.core.parts import calculate_parts


def test_config_precedence_file_env_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STORAGE_URL", "METADATA_URL", "ACCESSTOKEN", "TRANSPORT_PARALLEL", "SCORE_CLIENT_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    config_file = tmp_path / "client.toml"
    config_file.write_text('storage_url = "http://file:1/"\naccess_token = "from-file"\nparallel = 3\n')
    config = ClientConfig.load(str(config_file))
    assert (config.storage_url, config.metadata_url, config.parallel) == ("http://file:1", "http://file:1/song", 3)
    monkeypatch.setenv("STORAGE_URL", "http://env:2")
    monkeypatch.setenv("ACCESSTOKEN", "from-env")
    config = ClientConfig.load(str(config_file), parallel=9)
    assert (config.storage_url, config.access_token, config.parallel) == ("http://env:2", "from-env", 9)
    assert "from-env" not in repr(config)  # the token never shows in reprs or logs
    config_file.write_text("colour = 1\n")
    with pytest.raises(ClientError, match="unknown configuration keys"):
        ClientConfig.load(str(config_file))
    with pytest.raises(ClientError, match="does not exist"):
        ClientConfig.load(str(tmp_path / "missing.toml"))


def test_upload_manifest_skips_header_and_checks_columns() -> None:
    entries = parse_upload_manifest("analysis-1\t\t\nid-1\t a.bam \tmd5a\nid-2\tb.bai\tmd5b\n", "m")
    assert [(e.object_id, e.file_path, e.md5) for e in entries] == [
        ("id-1", "a.bam", "md5a"),
        ("id-2", "b.bai", "md5b"),
    ]
    with pytest.raises(ManifestError, match="line 2: expected 3"):
        parse_upload_manifest("header\nkey=value\n", "m")
    with pytest.raises(ManifestError, match="is empty"):
        parse_upload_manifest("header only\n", "m")


def test_download_manifest_uses_object_id_column() -> None:
    row = "\t".join(["collab", "FI1", "obj-1", "BAM", "a.bam", "10", "md5", "idx-1", "DO1", "P", "S"])
    entries = parse_download_manifest("header\n" + row + "\n", "m")
    assert (entries[0].object_id, entries[0].file_name, entries[0].index_object_id) == ("obj-1", "a.bam", "idx-1")
    with pytest.raises(ManifestError, match="expected 11"):
        parse_download_manifest("header\na\tb\n", "m")


def test_a_manifest_without_its_header_line_keeps_its_first_entry() -> None:
    """The first line is skipped only when it is not an entry: Song's header (the analysis id alone, a UUID
    too in Song) is; a UUID with a path (upload) or a UUID in the object id column (download) is data."""
    one, two, analysis = (f"{n:08x}-0000-4000-8000-000000000000" for n in (1, 2, 3))
    rows = f"{one}\ta.bam\t{'a' * 32}\n\n{two}\tb.bam\t{'b' * 32}\n"
    assert [(e.object_id, e.line) for e in parse_upload_manifest(rows, "m")] == [(one, 1), (two, 3)]
    with_header = parse_upload_manifest(f"{analysis}\t\t\n" + rows, "m")
    assert [(e.object_id, e.line) for e in with_header] == [(one, 2), (two, 4)]
    row = "\t".join(["collab", "FI1", one, "BAM", "a.bam", "10", "a" * 32, "", "DO1", "P", "S"])
    assert [(e.object_id, e.line) for e in parse_download_manifest(row + "\n", "m")] == [(one, 1)]
    with pytest.raises(ManifestError, match="manifest m is empty: it lists no files"):
        parse_upload_manifest(f"{analysis}\t\t\n\n", "m")


def test_plan_fetches_whole_parts_and_keeps_only_the_range() -> None:
    parts = [
        Part(p.partNumber, p.partSize, p.offset, sourceMd5=f"{p.partNumber:032x}")
        for p in calculate_parts(0, 35, 10, minimum=1)
    ]
    spec = ObjectSpecification(objectKey="k", objectId="o", parts=parts, objectSize=35)
    planned = plan(spec, 5, 20)  # bytes 5..24: parts 1, 2 and 3
    assert [(p.number, p.fetch_offset, p.fetch_size, p.skip, p.keep, p.write_at) for p in planned] == [
        (1, 0, 10, 5, 5, 0),
        (2, 10, 10, 0, 10, 5),
        (3, 20, 10, 0, 5, 15),
    ]
    assert sum(p.keep for p in planned) == 20
    assert [p.number for p in plan(spec, 0, 35)] == [1, 2, 3, 4]
    legacy = replace(parts[0], sourceMd5="<missing>")
    assert plan(replace(spec, parts=[legacy]), 0, 10)[0].source_md5 is None


def test_space_check_counts_every_chunk_against_what_was_free_at_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files are planned a chunk at a time; the free space is read once, and what earlier chunks need counts."""
    from types import SimpleNamespace

    from score.client.transfer import download
    from score.client.transfer.jobs import JobReport

    reads: list[Path] = []

    def disk_usage(folder: Path) -> SimpleNamespace:
        reads.append(folder)
        return SimpleNamespace(free=1000)

    monkeypatch.setattr(download.shutil, "disk_usage", disk_usage)

    def planned(name: str, span: int) -> SimpleNamespace:
        return SimpleNamespace(target=SimpleNamespace(path=tmp_path / "out" / name), key=name, span=span)

    check, report = download._SpaceCheck(), JobReport()
    assert [f.key for f in check.admit([planned("a", 400), planned("b", 400)], report)] == ["a", "b"]  # type: ignore[list-item]
    assert check.admit([planned("c", 300)], report) == []  # type: ignore[list-item]
    assert [(o.object_id, o.status) for o in report.outcomes] == [("c", "failed")]
    assert (
        "need 1100 more bytes, 1000 are free; free some space or choose another --output-dir"
        in report.outcomes[0].detail
    )
    assert [f.key for f in check.admit([planned("d", 200)], report)] == ["d"]  # type: ignore[list-item]
    assert reads == [tmp_path / "out"]  # read once, when the folder was first seen


def test_the_job_board_grows_its_total_as_specifications_come() -> None:
    """A download job learns its files' sizes a chunk at a time: the total follows, the file count is set once."""
    from score.client.progress import JobBoard

    board = JobBoard("downloaded")
    board.job_started(3, 0)
    board.more_bytes(100)
    board.more_bytes(50)
    board.advance("a", 120)
    board.file_finished("a", ok=True)
    (task,) = board._bars.tasks
    assert (task.total, task.completed, task.description) == (150, 120, "downloaded 1/3 files")
    board.job_finished()


def test_the_next_chunks_call_is_made_while_the_caller_starts_the_files_of_this_one() -> None:
    """``fetched_ahead``: chunks come back in order with their answers; chunk k+1's call is under way before the
    caller is done with chunk k; a failed call raises in its turn, after the chunks before it."""
    import threading

    from score.client.transfer.jobs import fetched_ahead

    second_asked = threading.Event()

    def fetch(chunk: list[int]) -> int:
        if chunk == [3]:
            second_asked.set()
        if chunk == [4]:
            raise RuntimeError("refused")
        return sum(chunk)

    seen = []
    answers = fetched_ahead(iter([[1, 2], [3], [4]]), fetch)
    for chunk, answer in answers:
        if chunk == [1, 2]:
            assert second_asked.wait(5), "the second chunk's call waited for the first chunk's files"
        seen.append((chunk, answer))
        if chunk == [3]:
            break
    assert seen == [([1, 2], 3), ([3], 3)]
    with pytest.raises(RuntimeError, match="refused"):
        next(answers)
    assert list(fetched_ahead(iter([]), fetch)) == []


def test_finished_files_are_collected_as_they_finish_without_waiting_on_the_others() -> None:
    """``PendingFiles`` queues each future as it finishes: a wait returns as soon as one file is done (whichever),
    files still running stay pending, and a file whose future raised is reported through ``failed``."""
    import threading
    from concurrent.futures import Future

    from score.client.transfer.jobs import FileOutcome, JobReport, NoJobProgress, PendingFiles, collect_finished

    pending: PendingFiles[str] = PendingFiles()
    slow, quick, broken = Future(), Future(), Future()
    pending.update([(slow, "slow"), (quick, "quick"), (broken, "broken")])
    report = JobReport()

    def failed(name: str, exc: ClientError) -> FileOutcome:
        return FileOutcome(name, name, "failed", detail=str(exc))

    threading.Timer(0.05, quick.set_result, [FileOutcome("quick", "q", "done", 1)]).start()
    collect_finished(pending, report, NoJobProgress(), failed, wait_for_one=True)
    assert [o.name for o in report.outcomes] == ["quick"]
    assert set(pending.values()) == {"slow", "broken"}

    broken.set_exception(ClientError("the store refused"))
    collect_finished(pending, report, NoJobProgress(), failed, wait_for_one=False)
    assert [(o.name, o.status, o.detail) for o in report.outcomes[1:]] == [("broken", "failed", "the store refused")]
    assert list(pending.values()) == ["slow"]
    collect_finished(pending, report, NoJobProgress(), failed, wait_for_one=False)  # nothing finished: no wait
    assert len(report.outcomes) == 2


def test_the_answers_the_client_reads_are_checked_field_by_field() -> None:
    """Specifications parse as the server (or the Java server) sends them, unknown fields ignored; an answer of
    another shape is a ClientError naming the field, not a traceback."""
    part = {"partNumber": 1, "partSize": 6, "offset": 0, "url": "http://s/k", "md5": None, "relocated": False}
    spec = parse_spec({"objectKey": "data/o", "objectId": "o", "uploadId": None, "parts": [part], "objectSize": 6})
    assert spec == ObjectSpecification("data/o", "o", [Part(1, 6, 0, url="http://s/k")], 6)
    assert spec.parts[0].end == 6
    progress = parse_progress({"objectId": "o", "uploadId": "u", "parts": [{**part, "md5": "a" * 32}]})
    assert progress.parts[0].md5 == "a" * 32
    assert parse_info({"id": "o", "lastModified": 5, "size": 6}).size == 6
    for wrong, said in [
        ([], "an object specification is [], not a JSON object"),
        ({"objectKey": "k", "objectId": "o", "parts": {}, "objectSize": 6}, "its parts are {}, not a list"),
        ({"objectKey": "k", "objectId": "o", "parts": [], "objectSize": "6"}, "objectSize is '6', not a whole number"),
        ({"objectKey": "k", "objectId": "o", "parts": [], "objectSize": True}, "objectSize is True, not a whole"),
        ({"objectKey": "k", "parts": [], "objectSize": 6}, "objectId is missing, not text"),
        ({"objectKey": "k", "objectId": "o", "parts": [{**part, "url": 5}], "objectSize": 6}, "url is 5, not text"),
    ]:
        with pytest.raises(ClientError, match="the server's answer is not one Score sends") as info:
            parse_spec(wrong)
        assert said in str(info.value)
