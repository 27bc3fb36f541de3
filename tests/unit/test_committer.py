"""The download's Committer: small files reach their final names only after one syncfs per batch, and the
batches are committed on a thread of their own so that the workers that queue files never wait for the disk."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from score.client.errors import ClientError
from score.client.transfer import download
from score.client.transfer.download import COMMIT_BATCH, Committer


def _partials(folder: Path, count: int, start: int = 0) -> list[tuple[Path, Path, bytes]]:
    made = []
    for n in range(start, start + count):
        content = f"file {n}\n".encode() * (n + 1)
        partial = folder / f".{n}.partial"
        partial.write_bytes(content)
        made.append((partial, folder / f"file-{n}.txt", content))
    return made


def test_files_appear_only_when_committed_with_their_bytes(tmp_path: Path) -> None:
    committer = Committer()
    files = _partials(tmp_path, 3)
    for partial, final, content in files:
        committer.add(partial, final, len(content))
    assert not any(final.exists() for _, final, _ in files), "a file may not appear before its batch is on disk"
    committer.flush()
    for partial, final, content in files:
        assert final.read_bytes() == content
        assert not partial.exists()


def test_a_full_batch_commits_on_its_own_thread_while_workers_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    syncing = threading.Event()
    release = threading.Event()
    synced: list[Path] = []

    def slow_syncfs(path: Path) -> None:  # a disk that takes its time to flush
        syncing.set()
        assert release.wait(10)
        synced.append(path)

    monkeypatch.setattr(download, "sync_file_system", slow_syncfs)
    committer = Committer()
    first = _partials(tmp_path, COMMIT_BATCH)
    for partial, final, content in first:
        committer.add(partial, final, len(content))
    assert syncing.wait(5), "a full batch must start committing without a flush"
    started = time.monotonic()
    later = _partials(tmp_path, 3, start=COMMIT_BATCH)
    for partial, final, content in later:
        committer.add(partial, final, len(content))  # queued while the disk is busy: no waiting
    assert time.monotonic() - started < 1
    assert not any(final.exists() for _, final, _ in first), "renamed before its syncfs returned"
    release.set()
    committer.flush()
    assert len(synced) == 2  # the full batch, then the rest at flush
    for partial, final, content in first + later:
        assert final.read_bytes() == content and not partial.exists()


def test_a_failed_batch_is_reported_at_flush_and_later_files_still_commit(tmp_path: Path) -> None:
    committer = Committer()
    gone = tmp_path / "gone"
    gone.mkdir()
    doomed = _partials(gone, COMMIT_BATCH)
    for partial, _, content in doomed:  # their final folder vanishes before the batch is committed
        committer.add(partial, tmp_path / "missing" / partial.name, len(content))
    kept = _partials(tmp_path, 2, start=COMMIT_BATCH)
    for partial, final, content in kept:
        committer.add(partial, final, len(content))
    with pytest.raises(ClientError, match=r"could not be given their final names.*run the same command again"):
        committer.flush()
    for _, final, content in kept:
        assert final.read_bytes() == content
