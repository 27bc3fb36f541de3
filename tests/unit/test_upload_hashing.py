"""An upload's MD5s (each part to send, and the whole file) against hashlib, on SIMD lanes and without them."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from score.client.transfer import upload_hashing
from score.client.transfer.upload_hashing import PartMd5s, ReadAhead, WholeFileMd5
from score.core import md5lanes

KiB = 1024


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324 - integrity, not security


def _parts(size: int, part_size: int) -> list[tuple[int, int]]:
    return [(offset, min(part_size, size - offset)) for offset in range(0, size, part_size)]


@pytest.fixture(params=["lanes", "hashlib", "lanes-read", "hashlib-read"])
def lanes_or_not(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """SIMD lanes or hashlib for the parts; the file read through a guarded map, or with copying reads
    (what a client built without a C compiler does)."""
    if request.param.startswith("hashlib"):
        monkeypatch.setattr(md5lanes, "available", lambda: False)
    if request.param.endswith("-read"):
        monkeypatch.setattr(upload_hashing, "_mapguard", None)
    return str(request.param)


def test_the_map_guard_is_built_here() -> None:
    assert upload_hashing._mapguard is not None, "the _mapguard extension was not built: .ci/run installs gcc"


def test_a_file_truncated_under_the_map_ends_the_client_with_a_clear_message(tmp_path: Path) -> None:
    """Touching a mapped page past the new end of the file faults (SIGBUS): the guard says what happened."""
    path = tmp_path / "source.bam"
    path.write_bytes(os.urandom(1024 * KiB))
    child = textwrap.dedent(
        f"""
        import hashlib, os
        from pathlib import Path
        from score.client.transfer import upload_hashing
        path = Path({str(path)!r})
        assert upload_hashing.map_guarded(path)
        fd = os.open(path, os.O_RDONLY)
        mapped, start = upload_hashing.map_range(fd, 0, 1024 * 1024)
        os.truncate(path, 4096)  # another program shortens the file
        hashlib.md5(mapped)
        print("not reached")
        """
    )
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done
    assert "not reached" not in done.stdout
    assert f"error: {path} could not be read while it was being uploaded: it became shorter" in done.stderr
    assert "Bus error" not in done.stderr and "Traceback" not in done.stderr


def test_part_and_whole_md5s_match_hashlib(tmp_path: Path, lanes_or_not: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """More parts than lanes (several batches), a short last part, a chunk smaller than a part."""
    monkeypatch.setattr(upload_hashing, "CHUNK", 4 * KiB)  # several reads per part, with small test files
    data = os.urandom(37 * 10 * KiB + 123)
    path = tmp_path / "source"
    path.write_bytes(data)
    parts = _parts(len(data), 10 * KiB)
    assert len(parts) > md5lanes.MAX_LANES + 4
    send = parts[3:] + parts[:1]  # a resumed upload: some parts were sent before, in whatever order
    whole = WholeFileMd5(path, len(data))
    parts = PartMd5s(path, send, first_batch=4)
    for offset, size in reversed(send):
        assert parts.part_md5(offset) == _md5(data[offset : offset + size])
    parts.check()
    assert whole.result() == _md5(data)


def test_an_empty_file_hashes_to_the_empty_md5(tmp_path: Path, lanes_or_not: str) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    assert PartMd5s(path, [(0, 0)], first_batch=4).part_md5(0) == _md5(b"")
    assert WholeFileMd5(path, 0).result() == _md5(b"")


def test_a_file_shorter_than_its_parts_is_an_error_not_a_hash(tmp_path: Path, lanes_or_not: str) -> None:
    """The file shrank after its size was taken: both waits report where it ended."""
    path = tmp_path / "shrunk"
    path.write_bytes(os.urandom(100 * KiB))
    size = 160 * KiB
    parts = PartMd5s(path, _parts(size, 32 * KiB), first_batch=2)
    with pytest.raises(OSError, match="file ended at byte 102400, expected"):
        parts.part_md5(128 * KiB)
    with pytest.raises(OSError, match="file ended at byte 102400, expected"):
        parts.check()
    with pytest.raises(OSError, match="file ended at byte 102400, expected"):
        WholeFileMd5(path, size).result()


def test_asking_for_a_part_not_being_sent_is_an_error(tmp_path: Path, lanes_or_not: str) -> None:
    path = tmp_path / "source"
    path.write_bytes(os.urandom(64 * KiB))
    parts = PartMd5s(path, [(0, 32 * KiB)], first_batch=1)
    with pytest.raises(RuntimeError, match="no part to send starts at byte 32768"):
        parts.part_md5(32 * KiB)


def test_stopping_ends_the_threads_without_a_digest(
    tmp_path: Path, lanes_or_not: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed upload stops its hashing: no thread goes on reading the file behind it.

    The threads are held at a read-ahead window that never moves, so the stop reaches them mid-file."""
    monkeypatch.setattr(upload_hashing, "CHUNK", 4 * KiB)
    path = tmp_path / "source"
    data = os.urandom(512 * KiB)
    path.write_bytes(data)
    window = ReadAhead(window=0)
    whole = WholeFileMd5(path, len(data), window)
    parts = PartMd5s(path, _parts(len(data), 8 * KiB)[20:], first_batch=4, read_ahead=window)
    whole._thread.join(timeout=0.3)
    assert whole._thread.is_alive()  # held at the window
    whole.stop()
    parts.stop()
    whole._thread.join(timeout=5)
    parts._thread.join(timeout=5)
    assert not whole._thread.is_alive() and not parts._thread.is_alive()
    parts.check()  # ended without an error
    with pytest.raises(RuntimeError, match="stopped before it finished"):
        whole.result()


def test_the_whole_file_hash_waits_within_the_read_ahead_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file larger than memory must not be read three times from disk: the hash stays near the senders."""
    monkeypatch.setattr(upload_hashing, "CHUNK", 4 * KiB)  # whole-file reads of 16 KiB
    data = os.urandom(1024 * KiB)
    path = tmp_path / "source"
    path.write_bytes(data)
    window = ReadAhead(window=64 * KiB)
    whole = WholeFileMd5(path, len(data), window)
    whole._thread.join(timeout=0.5)
    assert whole._thread.is_alive()  # unthrottled, 1 MiB hashes in a few milliseconds
    window.advance(len(data) - 64 * KiB)  # the senders reach the end: the window covers the file
    whole._thread.join(timeout=5)
    assert not whole._thread.is_alive()
    assert whole.result() == _md5(data)


def test_the_read_ahead_window_moves_with_the_senders_and_can_be_lifted() -> None:
    window = ReadAhead(window=100)
    stopped = threading.Event()
    done: list[int] = []

    def waiter(position: int) -> None:
        window.wait_for(position, stopped)
        done.append(position)

    threads = [threading.Thread(target=waiter, args=(p,)) for p in (100, 250, 10_000)]
    for thread in threads:
        thread.start()
    threads[0].join(timeout=2)
    assert done == [100]  # within the window from the start
    window.advance(160)  # 250 <= 160 + 100
    threads[1].join(timeout=2)
    assert done == [100, 250]
    window.widen(50)  # never narrows
    window.release()
    threads[2].join(timeout=2)
    assert done == [100, 250, 10_000]


def test_a_resumed_upload_that_sends_no_tail_parts_still_gets_its_whole_hash(
    tmp_path: Path, lanes_or_not: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the first parts are sent: once they are all asked for, the bound is lifted for the rest of the file."""
    monkeypatch.setattr(upload_hashing, "CHUNK", 4 * KiB)
    data = os.urandom(600 * KiB)
    path = tmp_path / "source"
    path.write_bytes(data)
    window = ReadAhead(window=0)
    whole = WholeFileMd5(path, len(data), window)
    send = _parts(len(data), 8 * KiB)[:2]  # the widened window (16 parts of 8 KiB) stays far below 600 KiB
    parts = PartMd5s(path, send, first_batch=4, read_ahead=window)
    for offset, size in send:
        assert parts.part_md5(offset) == _md5(data[offset : offset + size])
    whole._thread.join(timeout=5)
    assert not whole._thread.is_alive()  # lifted when the last part to send was asked for, before result()
    assert whole.result() == _md5(data)
