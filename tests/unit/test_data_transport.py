"""The data plane against a scripted store: DataClient's ``connect`` seam hands it fake connections.

Each ``FakeResponse`` is one answer of the store, played in order; ``Store`` records every connection
opened and every request sent on them, so the tests can check what went over the wire, what reached
the file, what was retried and which connections were given up.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import BinaryIO, cast

import pytest

from score.client import api
from score.client.errors import ClientError, IntegrityError, ServerError
from score.client.transfer import data as data_module
from score.client.transfer.connections import Route, open_route
from score.client.transfer.data import KEEPALIVE_EXPIRY, DataClient, UrlExpired
from score.client.transfer.output import OutputFile
from score.client.transfer.parallel import PartTally, UrlBook, transfer_part

URL = "http://store.test/bucket/object?X-Amz-Signature=old"
FRESH_URL = "http://store.test/bucket/object?X-Amz-Signature=fresh"
SIGV2_URL = "http://store.test/bucket/object?AWSAccessKeyId=AK&Expires=9&Signature=c2ln"
S3_SIGNATURE_ERROR = (
    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SignatureDoesNotMatch</Code>"
    b"<Message>The request signature we calculated does not match</Message>"
    b"<StringToSign>AWS4-HMAC-SHA256 to-sign-secret</StringToSign>"
    b"<SignatureProvided>provided-signature-secret</SignatureProvided></Error>"
)


class FakeResponse:
    """One scripted answer: a status, headers and a body handed out a ``piece`` at a time, as TCP would.

    ``fail_after`` breaks the connection after that many body bytes (those the store sends for a GET,
    those the client sends for a PUT); ``extra`` is sent after the body, beyond the range asked for.
    """

    def __init__(
        self,
        status: int,
        body: bytes = b"",
        *,
        headers: dict[str, str] | None = None,
        fail_after: int | None = None,
        extra: bytes = b"",
        will_close: bool = False,
        piece: int = 64 * 1024,
    ) -> None:
        self.status = status
        self.will_close = will_close
        self.fail_after = fail_after
        self._headers = {name.lower(): value for name, value in (headers or {}).items()}
        self._body = body + extra
        self._piece = piece
        self._at = 0

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return self._headers.get(name.lower(), default)

    def readinto(self, buffer: memoryview) -> int:
        chunk = self._take(min(len(buffer), self._piece))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def read(self, amount: int | None = None) -> bytes:
        return self._take(len(self._body) if amount is None else amount)

    def _take(self, amount: int) -> bytes:
        end = min(self._at + amount, len(self._body))
        if self.fail_after is not None:
            if self._at >= self.fail_after:
                raise ConnectionResetError("scripted: the store reset the connection")
            end = min(end, self.fail_after)
        chunk, self._at = self._body[self._at : end], end
        return chunk


@dataclass
class Sent:
    """A request as it went over one fake connection."""

    method: str
    target: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)


class FakeConnection:
    """The parts of ``http.client.HTTPConnection`` DataClient uses; it is its own ``sock`` (``sendfile``)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.sent: list[Sent] = []
        self.closed = False
        self.sock = self

    def request(self, method: str, target: str, headers: dict[str, str]) -> None:
        self.putrequest(method, target)
        self.sent[-1].headers.update(headers)

    def putrequest(self, method: str, target: str, skip_accept_encoding: bool = False) -> None:
        assert not self.closed, "a request on a connection DataClient closed"
        self.sent.append(Sent(method, target))
        self.store.requests.append(self.sent[-1])

    def putheader(self, name: str, value: str) -> None:
        self.sent[-1].headers[name] = value

    def endheaders(self) -> None:
        pass

    def sendfile(self, file: BinaryIO, offset: int, count: int) -> int:
        body, answer = self.sent[-1].body, self.store.answers[0]
        if answer.fail_after is not None:
            count = min(count, answer.fail_after - len(body))
            if count <= 0:
                raise BrokenPipeError("scripted: the store closed the connection")
        file.seek(offset)
        chunk = file.read(count)
        body += chunk
        return len(chunk)

    def getresponse(self) -> FakeResponse:
        answer = self.store.answers.pop(0)
        if answer.status == 0:  # scripted: the store went away without answering
            raise http.client.RemoteDisconnected("scripted: no answer")
        return answer

    def close(self) -> None:
        self.closed = True


class Store:
    """The scripted store: answers in order; ``connect`` is what DataClient opens its connections with."""

    def __init__(self, *answers: FakeResponse) -> None:
        self.answers = list(answers)
        self.connections: list[FakeConnection] = []
        self.requests: list[Sent] = []
        self.connected_to: list[str] = []

    def connect(self, url: str, timeout: float) -> Route:
        self.connected_to.append(url)
        self.connections.append(FakeConnection(self))
        return Route(cast(http.client.HTTPConnection, self.connections[-1]), absolute=False, headers={})

    def client(self) -> DataClient:
        return DataClient(1, 5.0, 64 * 1024, connect=self.connect)


class Bar:
    """A ``Progress`` that only counts."""

    def __init__(self) -> None:
        self.done = 0

    def start(self, name: str, total: int, done: int = 0) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        self.done += nbytes

    def finish(self) -> None:
        pass


def payload(size: int) -> bytes:
    return random.Random(size).randbytes(size)  # no period: a byte written off by any distance shows


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324


@pytest.fixture
def out(tmp_path: Path) -> Iterator[OutputFile]:
    output = OutputFile(tmp_path / "out.bin", 4 << 20, direct=False)
    yield output
    output.close()


def fetch(client: DataClient, out: OutputFile, size: int, url: str = URL, on_bytes: list[int] | None = None) -> str:
    """The whole range ``[0, size)`` to the start of the file, as a whole-part download fetches it."""
    counted = on_bytes if on_bytes is not None else []
    digest = client.get_range(url, 0, size, out, 0, 0, size, True, counted.append, "part 1")
    assert digest is not None
    return digest


def file_bytes(out: OutputFile, size: int) -> bytes:
    with open(out.fd, "rb", closefd=False) as handle:
        return handle.read(size)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """``with_retries`` backs off with ``time.sleep``: record the delays instead of waiting them out."""
    delays: list[float] = []
    monkeypatch.setattr(api.time, "sleep", delays.append)
    return delays


# get_range


def test_the_default_connect_is_open_route() -> None:
    assert DataClient(1, 5.0, 64 * 1024)._connect is open_route


def test_get_range_writes_the_kept_slice_at_write_at_and_hashes_all_it_fetched(out: OutputFile) -> None:
    data = payload((5 << 20) // 2 + 123)  # crosses two 1 MiB receive buffers
    skip, keep, write_at, offset = (1 << 20) - 10, (1 << 20) + 100, 4096 + 7, 3000
    store = Store(FakeResponse(206, data, piece=50_000))
    counted: list[int] = []

    digest = store.client().get_range(URL, offset, len(data), out, write_at, skip, keep, True, counted.append, "p")

    assert digest == md5(data)
    assert store.requests == [
        Sent("GET", "/bucket/object?X-Amz-Signature=old", {"Range": f"bytes={offset}-{offset + len(data) - 1}"})
    ]
    assert "Authorization" not in store.requests[0].headers
    written = file_bytes(out, 4 << 20)
    assert written[write_at : write_at + keep] == data[skip : skip + keep]
    assert written[:write_at] == bytes(write_at) and written[write_at + keep :] == bytes(len(written) - write_at - keep)
    assert sum(counted) == keep  # progress counts the bytes kept, not the bytes fetched
    assert len(store.connections) == 1 and not store.connections[0].closed


def test_get_range_without_hashing_returns_no_digest(out: OutputFile) -> None:
    store = Store(FakeResponse(206, b"abcdef"))
    assert store.client().get_range(URL, 10, 6, out, 0, 2, 3, False, lambda n: None, "p") is None
    assert file_bytes(out, 4) == b"cde\0"


def test_a_short_body_is_a_server_error_and_the_connection_is_dropped(out: OutputFile) -> None:
    data = payload(100_000)
    store = Store(FakeResponse(206, data[:-5]), FakeResponse(206, data))
    client = store.client()

    with pytest.raises(ServerError, match=r"^part 1: the store sent 99995 of 100000 bytes$") as caught:
        fetch(client, out, len(data))
    assert caught.value.status == 0
    assert store.connections[0].closed

    assert fetch(client, out, len(data)) == md5(data)
    assert len(store.connections) == 2 and not store.connections[1].closed
    assert file_bytes(out, len(data)) == data


def test_more_bytes_than_asked_for_is_an_integrity_error(out: OutputFile) -> None:
    store = Store(FakeResponse(206, payload(1000), extra=b"!"))

    with pytest.raises(IntegrityError, match=r"^part 1: the store sent more bytes than asked for$"):
        fetch(store.client(), out, 1000)
    assert store.connections[0].closed  # the rest of that body must not be read as the next answer


def test_a_store_that_ignores_the_range_is_caught_by_the_length_check(out: OutputFile) -> None:
    whole = payload(3000)  # 200 with the whole object, where bytes 1000-1999 were asked for
    store = Store(FakeResponse(200, whole))

    with pytest.raises(IntegrityError, match=r"more bytes than asked for"):
        store.client().get_range(URL, 1000, 1000, out, 0, 0, 1000, True, lambda n: None, "part 1")


def test_a_refused_signature_is_url_expired_and_keeps_the_signature_out_of_the_message(out: OutputFile) -> None:
    store = Store(FakeResponse(403, S3_SIGNATURE_ERROR))
    counted: list[int] = []

    with pytest.raises(UrlExpired) as caught:
        fetch(store.client(), out, 1000, on_bytes=counted)

    message = str(caught.value)
    assert caught.value.status == 403
    assert message.startswith("part 1: the store refused the signed URL (SignatureDoesNotMatch: The request signature")
    assert "to-sign-secret" not in message and "provided-signature-secret" not in message
    assert "X-Amz-Signature" not in message and "old" not in message
    assert counted == [] and file_bytes(out, 1000) == bytes(1000)
    assert store.connections[0].closed


@pytest.mark.parametrize("status", [500, 503])
def test_a_store_failure_is_a_server_error_with_its_status(out: OutputFile, status: int) -> None:
    store = Store(FakeResponse(status, b'{"message": "SlowDown: try later"}'))

    with pytest.raises(ServerError, match=rf"^part 1: the store answered {status} SlowDown: try later$") as caught:
        fetch(store.client(), out, 1000)
    assert caught.value.status == status and not isinstance(caught.value, UrlExpired)


def test_a_connection_broken_mid_body_is_a_retryable_server_error(out: OutputFile) -> None:
    data = payload(200_000)
    store = Store(FakeResponse(206, data, fail_after=70_000), FakeResponse(206, data))
    client = store.client()

    with pytest.raises(
        ServerError, match=r"^part 1: connection to the store failed \(ConnectionResetError\)$"
    ) as caught:
        fetch(client, out, len(data))
    assert caught.value.status == 0 and caught.value.retryable
    assert isinstance(caught.value.__cause__, ConnectionResetError)
    assert store.connections[0].closed

    assert fetch(client, out, len(data)) == md5(data)
    assert len(store.connections) == 2


# put_part


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "source.bin"
    path.write_bytes(payload(300_000))
    return path


def upload(client: DataClient, source: Path, url: str = URL, counted: list[int] | None = None) -> str:
    """Bytes ``[1000, 201000)`` of ``source`` as one part."""
    part = source.read_bytes()[1000:201_000]
    return client.put_part(
        url, source, 1000, len(part), md5(part), (counted if counted is not None else []).append, "part 2"
    )


def test_put_part_sends_the_file_range_with_its_content_md5_and_returns_the_etag(source: Path) -> None:
    part = source.read_bytes()[1000:201_000]
    store = Store(FakeResponse(200, headers={"ETag": '"0123abcd"'}))
    counted: list[int] = []

    assert upload(store.client(), source, counted=counted) == "0123abcd"

    (sent,) = store.requests
    assert (sent.method, sent.target) == ("PUT", "/bucket/object?X-Amz-Signature=old")
    assert sent.headers == {
        "Content-Length": "200000",
        "Content-Type": "application/octet-stream",
        "Content-MD5": base64.b64encode(hashlib.md5(part).digest()).decode(),  # noqa: S324
    }
    assert bytes(sent.body) == part
    assert sum(counted) == len(part)
    assert not store.connections[0].closed


def test_put_part_under_sse_kms_returns_no_etag(source: Path) -> None:
    store = Store(FakeResponse(200, headers={"ETag": '"not-an-md5"', "x-amz-server-side-encryption": "aws:kms"}))
    assert upload(store.client(), source) == ""


def test_put_part_to_a_sigv2_url_sends_neither_content_md5_nor_content_type(source: Path) -> None:
    store = Store(FakeResponse(200, headers={"ETag": '"e"'}))

    upload(store.client(), source, url=SIGV2_URL)

    (sent,) = store.requests
    assert sent.headers == {"Content-Length": "200000"}
    assert bytes(sent.body) == source.read_bytes()[1000:201_000]


def test_put_part_of_a_file_shorter_than_the_part_is_an_integrity_error(source: Path, tmp_path: Path) -> None:
    short = tmp_path / "short.bin"
    short.write_bytes(source.read_bytes()[:150_000])
    store = Store(FakeResponse(200))

    with pytest.raises(IntegrityError, match=r"short\.bin became shorter while it was being uploaded"):
        store.client().put_part(URL, short, 1000, 200_000, md5(b""), lambda n: None, "part 2")
    assert len(store.requests[0].body) == 149_000
    assert store.connections[0].closed  # half a body was sent on it


def test_put_part_refused_is_url_expired(source: Path) -> None:
    store = Store(FakeResponse(403, S3_SIGNATURE_ERROR))

    with pytest.raises(UrlExpired, match=r"^part 2: the store refused the signed URL") as caught:
        upload(store.client(), source)
    assert "provided-signature-secret" not in str(caught.value)


def test_put_part_answer_that_closes_the_connection_drops_it(source: Path) -> None:
    store = Store(FakeResponse(200, will_close=True), FakeResponse(200))
    client = store.client()

    upload(client, source)
    upload(client, source)

    assert store.connections[0].closed and len(store.connections) == 2


def test_put_part_refused_while_the_body_is_still_going_is_url_expired(source: Path) -> None:
    store = Store(FakeResponse(403, S3_SIGNATURE_ERROR, fail_after=65_536))

    with pytest.raises(UrlExpired):
        upload(store.client(), source)


def test_put_part_cut_off_without_an_answer_is_a_retryable_connection_failure(source: Path) -> None:
    store = Store(FakeResponse(0, fail_after=65_536))

    with pytest.raises(ServerError, match=r"connection to the store failed \(BrokenPipeError\)") as caught:
        upload(store.client(), source)
    assert caught.value.status == 0 and not isinstance(caught.value, UrlExpired)


# transfer_part: retries, progress roll-back and URL renewal around the data client


def fetch_part(client: DataClient, out: OutputFile, size: int, book: UrlBook, bar: Bar, retries: int = 3) -> None:
    """The whole part ``[0, size)`` through ``transfer_part``, as the downloader runs it."""

    def action(url: str, tally: PartTally) -> None:
        client.get_range(url, 0, size, out, 0, 0, size, True, tally, "part 1")

    transfer_part(action, 1, "part 1", book, bar, retries)


def test_a_retry_after_a_short_body_leaves_the_file_whole_and_the_progress_exact(
    out: OutputFile, sleeps: list[float]
) -> None:
    data = payload(300_000)
    store = Store(FakeResponse(206, data[:120_000]), FakeResponse(206, data))
    bar = Bar()

    fetch_part(store.client(), out, len(data), UrlBook({1: URL}, dict), bar)

    assert file_bytes(out, len(data)) == data
    assert bar.done == len(data)  # the failed attempt's 120000 bytes were taken back
    assert len(store.requests) == 2 and len(store.connections) == 2
    assert sleeps == [0.2]


def test_a_refused_url_is_renewed_once_and_the_retry_uses_the_fresh_one(out: OutputFile, sleeps: list[float]) -> None:
    data = payload(10_000)
    store = Store(FakeResponse(403, S3_SIGNATURE_ERROR), FakeResponse(206, data))
    renewals: list[int] = []

    def fetch_fresh() -> dict[int, str | None]:
        renewals.append(1)
        return {1: FRESH_URL, 2: None}

    fetch_part(store.client(), out, len(data), UrlBook({1: URL}, fetch_fresh), Bar())

    assert renewals == [1]
    assert store.connected_to == [URL, FRESH_URL]  # the refused exchange's connection was given up
    assert [sent.target for sent in store.requests] == [
        "/bucket/object?X-Amz-Signature=old",
        "/bucket/object?X-Amz-Signature=fresh",
    ]
    assert file_bytes(out, len(data)) == data


def test_a_missing_object_fails_at_once_without_a_retry(out: OutputFile, sleeps: list[float]) -> None:
    store = Store(FakeResponse(404, b"<Error><Code>NoSuchKey</Code><Message>gone</Message></Error>"), FakeResponse(206))

    with pytest.raises(ClientError, match=r"^part 1: the store answered 404 NoSuchKey: gone$") as caught:
        fetch_part(store.client(), out, 1000, UrlBook({1: URL}, dict), Bar())

    assert type(caught.value) is ClientError  # final: not a ServerError with_retries would retry
    assert len(store.requests) == 1 and sleeps == []


def test_retries_run_out_after_exactly_the_number_of_attempts(out: OutputFile, sleeps: list[float]) -> None:
    data = payload(50_000)
    store = Store(*(FakeResponse(206, data[:20_000]) for _ in range(4)))
    bar = Bar()

    with pytest.raises(ServerError, match=r"^part 1: the store sent 20000 of 50000 bytes$"):
        fetch_part(store.client(), out, len(data), UrlBook({1: URL}, dict), bar, retries=3)

    assert len(store.requests) == 3 and len(store.answers) == 1
    assert sleeps == [0.2, 0.4]
    assert bar.done == 0  # each retry took back the attempt before, and the failure the last one


# keep-alive


def test_an_idle_connection_is_reused_until_the_keepalive_expiry(
    out: OutputFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(data_module, "time", SimpleNamespace(monotonic=lambda: now[0]))
    store = Store(*(FakeResponse(206, b"x" * 10) for _ in range(3)))
    client = store.client()

    fetch(client, out, 10)
    now[0] += KEEPALIVE_EXPIRY - 0.1
    fetch(client, out, 10)
    assert len(store.connections) == 1 and len(store.connections[0].sent) == 2

    now[0] += KEEPALIVE_EXPIRY + 0.1
    fetch(client, out, 10)
    assert len(store.connections) == 2
    assert store.connections[0].closed and not store.connections[1].closed
    assert len(store.connections[1].sent) == 1


def test_close_closes_the_connections_of_every_worker_thread(out: OutputFile) -> None:
    """Workers keep their own connections; the job's ``close`` must reach them all, not only its own thread's."""
    store = Store(*(FakeResponse(206, b"y" * 10) for _ in range(3)))
    client = store.client()
    workers = [threading.Thread(target=fetch, args=(client, out, 10)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(10)
    assert len(store.connections) == 3 and not any(c.closed for c in store.connections)
    client.close()
    assert all(c.closed for c in store.connections)
