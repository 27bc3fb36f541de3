"""``score-client mount``'s pure parts, without FUSE: the byte cache, the reader's sequence detection and part
lookup, the directory tree of both layouts, option parsing, the mount point's checks and the saved listing.
The reader's fetch path runs against a fake store (bytes in memory, every GET counted)."""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import click
import pytest

from score.client.errors import ClientError, IntegrityError, ServerError
from score.client.mount.command import check_mount_point, fuse_options, parse_size
from score.client.mount.listing import (
    Listing,
    MountedFile,
    PartLayout,
    Scope,
    identity,
    load_cached,
    manifest_scope,
    save_cached,
)
from score.client.mount.reader import (
    BLOCK,
    SEQUENTIAL_AFTER,
    WHOLE_PART_MAX,
    ByteCache,
    MountReadError,
    ObjectReader,
    Sequence,
    _part_at,
)
from score.client.mount.tree import Link, Tree
from score.client.wire import ObjectSpecification, Part

KiB, MiB = 1024, 1024 * 1024
WAIT = 10.0  # seconds a thread may take before a test calls it stuck


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324


def mounted(
    object_id: str,
    file_name: str,
    analysis_id: str = "AN1",
    size: int = 10,
    parts: tuple[PartLayout, ...] = (),
    study_id: str = "ST1",
) -> MountedFile:
    return MountedFile(object_id, study_id, analysis_id, file_name, size, "0" * 32, 1_700_000_000 * 10**9, parts)


def listing_of(*files: MountedFile) -> Listing:
    return Listing({f.object_id: f for f in files})


# -- ByteCache ------------------------------------------------------------------------------------------------
def filled(size: int, value: int = 1) -> bytearray:
    return bytearray([value]) * size


def test_cache_stays_within_its_budget_and_evicts_least_recently_used() -> None:
    cache = ByteCache(100)
    assert cache.get("a", 40, lambda: filled(40), needed=True) == filled(40)
    assert cache.get("b", 40, lambda: filled(40, 2), needed=True) == filled(40, 2)
    assert cache.used == 80
    assert cache.peek("a") is not None  # a is now the most recently used
    assert cache.get("c", 40, lambda: filled(40, 3), needed=True) == filled(40, 3)
    assert cache.used == 80
    assert cache.peek("b") is None  # b went, not a
    assert cache.peek("a") == filled(40) and cache.peek("c") == filled(40, 3)

    # a cached key is never fetched again
    def never() -> bytearray:
        raise AssertionError("fetched a cached key")

    assert cache.get("a", 40, never, needed=True) == filled(40)
    # a needed read larger than the whole budget is still served (and everything else makes room for it)
    assert cache.get("huge", 150, lambda: filled(150, 4), needed=True) == filled(150, 4)
    assert cache.peek("a") is None and cache.peek("c") is None
    assert cache.used == 150


def test_cache_accounts_for_what_a_fetch_really_returned() -> None:
    cache = ByteCache(100)
    cache.get("short", 50, lambda: filled(20), needed=True)  # the end of a file: fewer bytes than reserved
    assert cache.used == 20


def test_one_fetch_per_key_when_threads_race() -> None:
    cache = ByteCache(1 * MiB)
    calls = 0
    calls_lock = threading.Lock()
    started = threading.Event()

    def fetch() -> bytearray:
        nonlocal calls
        with calls_lock:
            calls += 1
        started.set()
        time.sleep(0.3)  # long enough for every other thread to arrive while this one fetches
        return filled(1000, 7)

    results: list[bytearray | None] = []
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            results.append(cache.get("k", 1000, fetch, needed=True))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert errors == []
    assert calls == 1
    assert len(results) == 12 and all(r is results[0] for r in results)
    assert results[0] == filled(1000, 7)
    assert cache.used == 1000


def test_read_ahead_is_skipped_not_waited_for() -> None:
    """needed=False: None at once when another thread is fetching the key, or when no room can be freed."""
    cache = ByteCache(100)
    release = threading.Event()
    fetching = threading.Event()

    def slow() -> bytearray:
        fetching.set()
        assert release.wait(WAIT)
        return filled(80)

    owner = threading.Thread(target=lambda: cache.get("slow", 80, slow, needed=True))
    owner.start()
    assert fetching.wait(WAIT)
    try:
        began = time.monotonic()
        # the same key, being fetched: read-ahead does not wait for it
        assert cache.get("slow", 80, lambda: filled(80), needed=False) is None
        # 80 of 100 bytes are reserved by a fetch in flight: no room for 50 bytes of read-ahead
        called = []
        assert cache.get("other", 50, lambda: called.append(1) or filled(50), needed=False) is None
        assert called == []
        assert time.monotonic() - began < 2.0
    finally:
        release.set()
        owner.join(WAIT)
    assert cache.used == 80
    assert cache.peek("other") is None


def test_refused_read_ahead_evicts_nothing() -> None:
    """Read-ahead that cannot get its room must leave the cache as it was: it is skipped, and what is cached
    (the parts just ahead of the reader) stays."""
    cache = ByteCache(100)
    cache.get("cached", 30, lambda: filled(30), needed=True)
    release = threading.Event()
    fetching = threading.Event()

    def slow() -> bytearray:
        fetching.set()
        assert release.wait(WAIT)
        return filled(60)

    owner = threading.Thread(target=lambda: cache.get("slow", 60, slow, needed=True))
    owner.start()
    assert fetching.wait(WAIT)
    try:
        # 30 cached + 60 in flight; 50 more cannot fit even if "cached" went, so the read-ahead is refused...
        assert cache.get("ahead", 50, lambda: filled(50), needed=False) is None
        # ...and it must not have thrown out "cached" on the way
        assert cache.peek("cached") == filled(30), "a refused read-ahead evicted a cached entry"
    finally:
        release.set()
        owner.join(WAIT)


def test_read_ahead_never_pushes_out_another_readers_unread_read_ahead() -> None:
    """Four sequential readers: each one's read-ahead must not evict the parts fetched ahead of the others
    (they were fetched twice when it did); it may push out parts already read, the passed ones first."""
    cache = ByteCache(100)
    assert cache.get("a-ahead", 40, lambda: filled(40), needed=False) is not None
    assert cache.get("b-ahead", 40, lambda: filled(40), needed=False) is not None
    # 80 unread: 30 more read-ahead cannot fit without pushing out unread read-ahead, so it is refused
    assert cache.get("c-ahead", 30, lambda: filled(30, 3), needed=False) is None
    assert cache.has("a-ahead") and cache.has("b-ahead")
    # once "a-ahead" is read and then passed, it is what makes room for the next read-ahead
    assert cache.peek("a-ahead") == filled(40)
    cache.passed("a-ahead")
    assert cache.get("c-ahead", 30, lambda: filled(30, 3), needed=False) == filled(30, 3)
    assert not cache.has("a-ahead")
    assert cache.has("b-ahead"), "unread read-ahead of another reader was pushed out"
    # a read that needs its bytes may push out anything, unread read-ahead included
    assert cache.get("needed", 90, lambda: filled(90, 9), needed=True) == filled(90, 9)
    assert not cache.has("b-ahead") and not cache.has("c-ahead")
    assert cache.used == 90


def test_failed_fetch_is_not_cached_and_a_waiter_retries() -> None:
    cache = ByteCache(1 * MiB)
    release = threading.Event()
    fetching = threading.Event()

    def failing() -> bytearray:
        fetching.set()
        assert release.wait(WAIT)
        raise MountReadError(errno.EIO, "damaged part")

    owner_error: list[BaseException] = []

    def owner() -> None:
        try:
            cache.get("k", 100, failing, needed=True)
        except BaseException as exc:
            owner_error.append(exc)

    waiter_result: list[bytearray | None] = []
    waiter_calls = []

    def good() -> bytearray:
        waiter_calls.append(1)
        return filled(100, 9)

    first = threading.Thread(target=owner)
    first.start()
    assert fetching.wait(WAIT)
    second = threading.Thread(target=lambda: waiter_result.append(cache.get("k", 100, good, needed=True)))
    second.start()
    time.sleep(0.2)  # the waiter is now waiting on the owner's fetch
    release.set()
    first.join(WAIT)
    second.join(WAIT)
    assert len(owner_error) == 1 and isinstance(owner_error[0], MountReadError)
    assert owner_error[0].errno == errno.EIO
    assert waiter_result == [filled(100, 9)] and waiter_calls == [1]  # it fetched again, itself
    assert cache.used == 100

    # a failure alone leaves nothing cached and nothing reserved
    cache2 = ByteCache(1000)
    with pytest.raises(MountReadError):
        cache2.get("x", 100, lambda: (_ for _ in ()).throw(MountReadError(errno.EIO, "bad")), needed=True)
    assert cache2.used == 0 and cache2.peek("x") is None
    assert cache2.get("x", 100, lambda: filled(100, 5), needed=True) == filled(100, 5)


# -- Sequence and _part_at --------------------------------------------------------------------------------------
def test_forward_reads_become_sequential_after_enough_bytes() -> None:
    sequence = Sequence()
    step = 128 * KiB
    reads = SEQUENTIAL_AFTER // step
    answers = [sequence.see(n * step, step) for n in range(reads)]
    assert answers[:-1] == [False] * (reads - 1)
    assert answers[-1] is True  # the read that makes the span SEQUENTIAL_AFTER long
    # the kernel's reads arrive slightly out of order: a read a little behind, or a little ahead, keeps it
    assert sequence.see((reads - 3) * step, step) is True
    assert sequence.see((reads + 2) * step, step) is True


def test_a_jump_resets_the_sequence() -> None:
    sequence = Sequence()
    step = 128 * KiB
    for n in range(SEQUENTIAL_AFTER // step):
        sequence.see(n * step, step)
    assert sequence.see(SEQUENTIAL_AFTER, step) is True
    assert sequence.see(200 * MiB, step) is False  # far ahead: a random reader now
    assert sequence.see(200 * MiB + step, step) is False
    assert sequence.see(0, step) is False  # behind where it started: random again
    # from the new start it takes SEQUENTIAL_AFTER bytes again
    answers = [sequence.see(n * step, step) for n in range(1, SEQUENTIAL_AFTER // step)]
    assert answers[-1] is True and not any(answers[:-1])


def test_part_at_finds_the_part_holding_a_position() -> None:
    parts = (PartLayout(0, 10, "a"), PartLayout(10, 10, "b"), PartLayout(20, 5, "c"))
    f = mounted("o1", "x", size=25, parts=parts)
    for position, index in [(0, 0), (9, 0), (10, 1), (19, 1), (20, 2), (24, 2)]:
        assert _part_at(f, position) == (index, parts[index]), position
    single = mounted("o2", "y", size=7)  # no layout known: the file is one part with the file's MD5
    assert _part_at(single, 0) == (0, PartLayout(0, 7, single.md5))
    assert _part_at(single, 6) == (0, PartLayout(0, 7, single.md5))
    many = tuple(PartLayout(i * 64, 64, None) for i in range(1000))
    big = mounted("o3", "z", size=64_000, parts=many)
    for position in (0, 63, 64, 12_345, 63_999):
        assert _part_at(big, position)[0] == position // 64


# -- the tree ---------------------------------------------------------------------------------------------------
def test_bundle_layout_paths() -> None:
    bam = mounted("11111111-0000-0000-0000-000000000001", "x.bam", "AN1")
    bai = mounted("11111111-0000-0000-0000-000000000002", "x.bam.bai", "AN1")
    other = mounted("11111111-0000-0000-0000-000000000003", "x.bam", "AN2")  # same name, other analysis
    tree = Tree(listing_of(bam, bai, other), "bundle")
    assert sorted(tree.root) == ["AN1", "AN2"]
    assert tree.lookup("/AN1/x.bam") is bam
    assert tree.lookup("/AN1/x.bam.bai") is bai
    assert tree.lookup("/AN2/x.bam") is other
    assert tree.lookup("AN1/x.bam") is bam  # without the leading slash too
    assert tree.lookup("/") is tree.root and tree.lookup("") is tree.root
    assert tree.lookup("/AN1") == {"x.bam": bam, "x.bam.bai": bai}
    assert tree.lookup("/AN1/missing") is None
    assert tree.lookup("/AN1/x.bam/inside") is None  # a file is not a folder
    assert tree.lookup("/AN3/x.bam") is None
    assert tree.files == 3
    assert not any(isinstance(node, Link) for node in tree.root.values())


def test_object_id_layout_with_index_links() -> None:
    bam = mounted("aaaaaaaa-0000-0000-0000-000000000001", "x.bam")
    bai = mounted("aaaaaaaa-0000-0000-0000-000000000002", "x.bam.bai")
    cram = mounted("aaaaaaaa-0000-0000-0000-000000000003", "y.CRAM")
    crai = mounted("aaaaaaaa-0000-0000-0000-000000000004", "y.cram.CRAI")  # names compared without case
    vcf = mounted("aaaaaaaa-0000-0000-0000-000000000005", "v.vcf.gz")
    tbi = mounted("aaaaaaaa-0000-0000-0000-000000000006", "v.vcf.gz.tbi")
    plain = mounted("aaaaaaaa-0000-0000-0000-000000000007", "notes.txt")
    elsewhere = mounted("aaaaaaaa-0000-0000-0000-000000000008", "z.bam", "AN1")
    foreign_index = mounted("aaaaaaaa-0000-0000-0000-000000000009", "z.bam.bai", "AN2")  # another analysis
    files = [bam, bai, cram, crai, vcf, tbi, plain, elsewhere, foreign_index]
    tree = Tree(listing_of(*files), "object-id")
    for f in files:
        assert tree.lookup(f"/{f.object_id}") is f
    assert tree.lookup(f"/{bam.object_id}.bai") == Link(bai.object_id)
    assert tree.lookup(f"/{cram.object_id}.crai") == Link(crai.object_id)
    assert tree.lookup(f"/{vcf.object_id}.tbi") == Link(tbi.object_id)
    links = {name for name, node in tree.root.items() if isinstance(node, Link)}
    assert links == {f"{bam.object_id}.bai", f"{cram.object_id}.crai", f"{vcf.object_id}.tbi"}
    assert len(tree.root) == len(files) + 3


def test_unsafe_names_are_not_listed() -> None:
    good = mounted("bbbbbbbb-0000-0000-0000-000000000001", "fine.txt", "AN1")
    unsafe = [
        mounted("bbbbbbbb-0000-0000-0000-000000000002", "..", "AN1"),
        mounted("bbbbbbbb-0000-0000-0000-000000000003", ".", "AN1"),
        mounted("bbbbbbbb-0000-0000-0000-000000000004", "a/b", "AN1"),
        mounted("bbbbbbbb-0000-0000-0000-000000000005", "../escape", "AN1"),
        mounted("bbbbbbbb-0000-0000-0000-000000000006", "nul\0byte", "AN1"),
        mounted("bbbbbbbb-0000-0000-0000-000000000007", "", "AN1"),
        mounted("bbbbbbbb-0000-0000-0000-000000000008", "x.txt", ".."),
        mounted("bbbbbbbb-0000-0000-0000-000000000009", "x.txt", "AN/2"),
        mounted("bbbbbbbb-0000-0000-0000-00000000000a", "x.txt", ""),
    ]
    tree = Tree(listing_of(good, *unsafe), "bundle")
    assert tree.root == {"AN1": {"fine.txt": good}}
    assert tree.lookup("/AN1/a/b") is None and tree.lookup("/AN/2/x.txt") is None
    assert tree.lookup("/AN1/..") is None


def test_duplicate_names_list_one_file() -> None:
    first = mounted("cccccccc-0000-0000-0000-000000000001", "same.txt", "AN1")
    second = mounted("cccccccc-0000-0000-0000-000000000002", "same.txt", "AN1")
    for order in ([first, second], [second, first]):  # whichever Song lists first, the same one wins
        tree = Tree(listing_of(*order), "bundle")
        assert tree.root == {"AN1": {"same.txt": first}}


def test_unknown_layout() -> None:
    with pytest.raises(ValueError, match="unknown layout"):
        Tree(Listing(), "flat")


# -- options and the mount point --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("192MiB", 192 * MiB),
        ("1GiB", 1024 * MiB),
        ("65536", 65536),
        ("64K", 64 * KiB),
        ("64k", 64 * KiB),
        ("64KiB", 64 * KiB),
        ("5MB", 5 * MiB),
        (" 7 M ", 7 * MiB),
        ("12B", 12),
        ("2g", 2048 * MiB),
        ("0", 0),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "abc", "1.5GiB", "10TiB", "-1", "5 MiBs", "MiB", "1e6"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(click.BadParameter, match="is not a size"):
        parse_size(text)


def test_fuse_options() -> None:
    assert fuse_options("") == {}
    assert fuse_options("allow_other") == {"allow_other": True}
    assert fuse_options("max_read=131072,allow_other") == {"max_read": "131072", "allow_other": True}
    assert fuse_options(" a , b=c ,, ") == {"a": True, "b": "c"}
    assert fuse_options("k=v=w") == {"k": "v=w"}
    for bad in ["a b", "=x", "1a", "a-b", "a;b"]:
        with pytest.raises(click.BadParameter, match="is not a FUSE option"):
            fuse_options(bad)


def test_check_mount_point(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    check_mount_point(empty)  # no complaint

    with pytest.raises(ClientError, match="does not exist; create an empty directory") as missing:
        check_mount_point(tmp_path / "missing")
    assert str(tmp_path / "missing") in str(missing.value)

    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ClientError, match="is not a directory"):
        check_mount_point(a_file)

    full = tmp_path / "full"
    full.mkdir()
    (full / ".hidden").write_text("x")  # a hidden file is still content
    with pytest.raises(ClientError, match="is not empty; mount on an empty directory"):
        check_mount_point(full)


# -- the saved listing and the manifest's scope -----------------------------------------------------------------
def test_listing_cache_round_trip(tmp_path: Path) -> None:
    parts = (PartLayout(0, 64, "a" * 32), PartLayout(64, 36, None))
    listing = listing_of(
        mounted("dddddddd-0000-0000-0000-000000000001", "x.bam", size=100, parts=parts),
        mounted("dddddddd-0000-0000-0000-000000000002", "empty", size=0),
    )
    path = tmp_path / "cache.json"
    scope = Scope(study_id="ST1")
    save_cached(path, "http://server:1", scope, "me", listing)
    assert not path.with_name(path.name + ".tmp").exists()
    loaded = load_cached(path, "http://server:1", scope, "me")
    assert loaded is not None
    assert loaded.files == listing.files
    assert loaded.files["dddddddd-0000-0000-0000-000000000001"].parts == parts  # a tuple of PartLayout again


def test_listing_cache_of_another_scope_server_or_identity_is_ignored(tmp_path: Path) -> None:
    listing = listing_of(mounted("eeeeeeee-0000-0000-0000-000000000001", "x"))
    path = tmp_path / "cache.json"
    save_cached(path, "http://server:1", Scope(study_id="ST1"), "me", listing)
    assert load_cached(path, "http://server:2", Scope(study_id="ST1"), "me") is None
    assert load_cached(path, "http://server:1", Scope(study_id="ST2"), "me") is None
    assert load_cached(path, "http://server:1", Scope(), "me") is None
    assert load_cached(path, "http://server:1", Scope(analysis_id="AN1", study_id="ST1"), "me") is None
    assert load_cached(path, "http://server:1", Scope(study_id="ST1"), "someone else") is None
    assert load_cached(path, "http://server:1", Scope(study_id="ST1"), "me") is not None
    assert load_cached(tmp_path / "absent.json", "http://server:1", Scope(study_id="ST1"), "me") is None
    path.write_text("{not json")
    assert load_cached(path, "http://server:1", Scope(study_id="ST1"), "me") is None
    path.write_text('{"format": 999, "origin": "http://server:1", "scope": "{}", "files": []}')
    assert load_cached(path, "http://server:1", Scope(), "me") is None


def test_identity_is_the_same_for_a_renewed_token_and_hides_the_token() -> None:
    def jwt(claims: dict[str, object]) -> str:
        body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
        return f"e30.{body}.signature"

    first = jwt({"sub": "alice", "scope": "score.READ", "exp": 1})
    renewed = jwt({"sub": "alice", "scope": "score.READ", "exp": 2})
    other = jwt({"sub": "alice", "scope": "PROGRAMDATA-A.READ", "exp": 1})
    assert identity(first) == identity(renewed)
    assert identity(first) != identity(other)
    assert identity("opaque-api-key") != identity("another-key")
    assert "opaque-api-key" not in identity("opaque-api-key")


def test_manifest_scope_has_files_and_index_column(tmp_path: Path) -> None:
    columns = [
        "repo_code", "file_id", "object_id", "file_format", "file_name", "file_size",
        "md5_sum", "index_object_id", "donor", "project", "study",
    ]  # fmt: skip
    header = "\t".join(columns)
    a, b, ai = (
        "F0000000-0000-0000-0000-000000000001",
        "f0000000-0000-0000-0000-000000000002",
        "f0000000-0000-0000-0000-000000000003",
    )
    rows = [
        f"local\tFI1\t{a}\tBAM\tx.bam\t1\tmd5\t{ai}\tDO\tP\tS",
        f"local\tFI2\t{b}\tTXT\tn.txt\t1\tmd5\t\tDO\tP\tS",
        f"local\tFI3\t{a}\tBAM\tx.bam\t1\tmd5\t{ai}\tDO\tP\tS",  # listed twice: once in the scope
    ]
    manifest = tmp_path / "manifest.tsv"
    manifest.write_text("\n".join([header, *rows]) + "\n")
    scope = manifest_scope(str(manifest))
    assert scope.object_ids == (a.lower(), ai, b)
    assert scope.describe() == "3 manifest objects"


# -- the reader, over a fake store --------------------------------------------------------------------------------
class FakeScore:
    """The server's side of ObjectReader: one signed URL per object, or a refusal."""

    def __init__(self, refuse: int = 0) -> None:
        self.refuse = refuse
        self.calls = 0

    def download_spec(self, object_id: str, offset: int, length: int, external: bool = False) -> ObjectSpecification:
        self.calls += 1
        if self.refuse:
            raise ServerError(f"refused with {self.refuse}", self.refuse)
        part = Part(partNumber=1, partSize=1, offset=0, url=f"http://store/{object_id}")
        return ObjectSpecification(objectKey=f"data/{object_id}", objectId=object_id, parts=[part], objectSize=1)


class FakeData:
    """The store: serves ``objects[url]``'s bytes for any range and counts each GET."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects
        self.gets: list[tuple[int, int]] = []
        self.fail_with: Exception | None = None

    def _get(self, url: str, offset: int, size: int) -> bytes:
        if self.fail_with is not None:
            raise self.fail_with
        self.gets.append((offset, size))
        return self.objects[url][offset : offset + size]

    # both ways DataClient hands a range over: into memory the caller owns, or through a sink's write()
    def get_into(self, url: str, offset: int, into: memoryview, hashing: bool, what: str) -> str | None:
        data = self._get(url, offset, len(into))
        into[: len(data)] = data
        return md5(data) if hashing else None

    def get_range(self, url: str, offset: int, size: int, out: Any, *rest: Any) -> str | None:
        data = self._get(url, offset, size)
        out.write(memoryview(data), 0)
        return md5(data) if rest[3] else None


def reader_over(data: bytes, part_size: int, object_id: str = "ffffffff-0000-0000-0000-000000000001") -> tuple:
    parts = tuple(
        PartLayout(offset, min(part_size, len(data) - offset), md5(data[offset : offset + part_size]))
        for offset in range(0, len(data), part_size)
    )
    f = MountedFile(object_id, "S", "A", "f.bin", len(data), md5(data), 0, parts)
    store = FakeData({f"http://store/{object_id}": data})
    reader = ObjectReader(FakeScore(), store, ByteCache(64 * MiB), 2)  # type: ignore[arg-type]
    return reader, f, store


def test_reader_reads_across_parts_and_fetches_each_part_once() -> None:
    data = bytes(range(256)) * 40  # 10,240 bytes, 10 parts of 1 KiB
    reader, f, store = reader_over(data, 1024)
    try:
        assert reader.read(f, 1000, 3000, Sequence()) == data[1000:4000]
        assert reader.read(f, 0, 20_000, Sequence()) == data  # short at the end
        assert reader.read(f, len(data), 10, Sequence()) == b""
        assert sorted(store.gets) == [(n * 1024, 1024) for n in range(10)]  # whole parts, each once
    finally:
        reader.close()


def test_reader_refuses_a_damaged_part_and_does_not_cache_it() -> None:
    data = bytes(range(256)) * 16
    reader, f, store = reader_over(data, 1024)
    try:
        damaged = bytearray(data)
        damaged[1500] ^= 0xFF
        store.objects[f"http://store/{f.object_id}"] = bytes(damaged)
        assert reader.read(f, 0, 1024, Sequence()) == data[:1024]  # part 1 is intact
        with pytest.raises(MountReadError) as raised:
            reader.read(f, 1024, 100, Sequence())
        assert raised.value.errno == errno.EIO and "part 2" in str(raised.value)
        store.objects[f"http://store/{f.object_id}"] = data  # repaired: it reads again
        assert reader.read(f, 1024, 100, Sequence()) == data[1024:1124]
    finally:
        reader.close()


def test_a_sequential_reader_gets_read_ahead_and_each_part_once() -> None:
    part = 64 * KiB
    data = b"".join(hashlib.sha256(bytes([n % 256, n // 256])).digest() * (part // 32) for n in range(100))
    reader, f, store = reader_over(data, part)  # 100 parts: more than SEQUENTIAL_AFTER
    try:
        sequence = Sequence()
        step = 128 * KiB
        position = 0
        while position < SEQUENTIAL_AFTER + step:
            assert reader.read(f, position, step, sequence) == data[position : position + step]
            position += step
        deadline = time.monotonic() + WAIT  # read-ahead runs in the background: wait for the last part
        while (len(data) - part, part) not in store.gets:
            assert time.monotonic() < deadline, f"no read-ahead to the end: {len(store.gets)} GETs"
            time.sleep(0.01)
        while position < len(data):
            assert reader.read(f, position, step, sequence) == data[position : position + step]
            position += step
        assert sorted(store.gets) == [(n * part, part) for n in range(100)]  # each part once
    finally:
        reader.close()


def test_random_reads_of_a_large_part_fetch_blocks() -> None:
    size = WHOLE_PART_MAX + 3 * BLOCK
    data = hashlib.sha256(b"x").digest() * (size // 32)
    reader, f, store = reader_over(data, size)  # one part larger than WHOLE_PART_MAX
    try:
        position = 5 * BLOCK + 17
        assert reader.read(f, position, 100, Sequence()) == data[position : position + 100]
        assert store.gets == [(5 * BLOCK, BLOCK)]
    finally:
        reader.close()


@pytest.mark.parametrize(("status", "code"), [(401, errno.EACCES), (403, errno.EACCES), (404, errno.ENOENT)])
def test_refused_urls_become_errnos(status: int, code: int) -> None:
    f = mounted("ffffffff-0000-0000-0000-000000000002", "x", size=10)
    reader = ObjectReader(FakeScore(refuse=status), FakeData({}), ByteCache(MiB), 1)  # type: ignore[arg-type]
    try:
        with pytest.raises(MountReadError) as raised:
            reader.url(f)
        assert raised.value.errno == code
    finally:
        reader.close()


def test_every_failed_fetch_is_eio() -> None:
    """What reaches a reader is an errno it can act on: EIO for a store that fails, whatever the failure
    (a store that keeps failing, or one that sends more bytes than were asked for)."""
    data = bytes(range(256)) * 8
    for failure in (ServerError("connection refused", 0), IntegrityError("the store sent more bytes than asked")):
        reader, f, store = reader_over(data, 1024)
        store.fail_with = failure
        try:
            with pytest.raises(MountReadError) as raised:
                reader.read(f, 0, 10, Sequence())
            assert raised.value.errno == errno.EIO, failure
        finally:
            reader.close()
