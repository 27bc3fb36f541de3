"""What upload and download share: a bounded pool, per-part retries, progress roll-back, URL renewal."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TypeVar

from score.client.api import with_retries
from score.client.errors import ClientError, IntegrityError, ServerError
from score.client.transfer.data import UrlExpired
from score.client.transfer.progress import Progress

T = TypeVar("T")
FINAL_STATUSES = (404, 410, 416, 507)  # the upload or object is gone, the range cannot exist, the store is full


def run_parallel(work: Callable[[T], None], items: Sequence[T], parallel: int) -> None:
    """Run ``work(item)`` with bounded concurrency; the first failure cancels what has not started."""
    if not items:
        return
    with ThreadPoolExecutor(max_workers=min(parallel, len(items)), thread_name_prefix="part") as pool:
        futures = [pool.submit(work, item) for item in items]
        _, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        for future in futures:
            if future.done() and not future.cancelled() and (error := future.exception()) is not None:
                raise error


class PartTally:
    """Counts one part's bytes, so a retry can take back from the progress bar what a failed attempt added."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self.count = 0

    def __call__(self, nbytes: int) -> None:
        self.count += nbytes
        self._progress.advance(nbytes)

    def reset(self) -> None:
        self._progress.advance(-self.count)
        self.count = 0


class UrlBook:
    """Signed URLs by part number, renewed from the server when the store refuses one (expired)."""

    def __init__(self, urls: dict[int, str | None], fetch_fresh: Callable[[], dict[int, str | None]]) -> None:
        self._urls = dict(urls)
        self._fetch_fresh = fetch_fresh
        self._lock = threading.Lock()

    def get(self, number: int, what: str) -> str:
        with self._lock:
            url = self._urls.get(number)
        if not url:
            raise ClientError(f"the server gave no URL for {what}")
        return url

    def renew(self) -> None:
        fresh = {n: u for n, u in self._fetch_fresh().items() if u}
        with self._lock:
            self._urls.update(fresh)


def transfer_part(
    action: Callable[[str, PartTally], None], number: int, what: str, urls: UrlBook, progress: Progress, retries: int
) -> None:
    """Run ``action(url, tally)`` with retries; a refused signature renews the URLs before the next try."""
    tally = PartTally(progress)

    def attempt() -> None:
        tally.reset()
        try:
            action(urls.get(number, what), tally)
        except UrlExpired:
            urls.renew()
            raise
        except ServerError as exc:
            if exc.status in FINAL_STATUSES:
                raise ClientError(str(exc)) from exc  # retrying cannot help: stop now
            raise

    try:
        with_retries(attempt, max(retries, 1), what, (ServerError, IntegrityError))
    except BaseException:
        with contextlib.suppress(ClientError):  # a cancelled job refuses even this: the job is over anyway
            tally.reset()  # the part failed for good: the bar must not keep what its last attempt moved
        raise
