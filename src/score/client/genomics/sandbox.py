"""Where htslib runs: a private working directory per call, local-only reference lookup, redacted messages.

Why each piece exists:

* htslib saves a remote index into the *current directory* under its base name and later reuses any file
  of that name without checking that it belongs to the same data (a stale ``reads.bam.bai`` from another
  object, or from an older version of this one, silently gives wrong slices). A fresh directory per call,
  removed afterwards, makes that cache harmless; we also download indexes ourselves into it.
* Without ``REF_PATH`` htslib fetches CRAM references from the EBI reference service by MD5 and caches
  them under ``~/.cache``: slow, surprising, and impossible on air-gapped clusters. Lookups stay local.
* Signed URLs are credentials for as long as they are valid. htslib prints the URLs it fails on; every
  message written while htslib runs is captured and replayed with the query strings removed.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_SIGNED_QUERY = re.compile(r"((?:https?|s3|gs)://[^\s\"'?#]+)\?[^\s\"']*")
_NETWORK_REF = re.compile(r"(^|:)(URL=|https?:|ftp:)", re.IGNORECASE)


def redact(text: str) -> str:
    """Remove the query string (signature, credential, expiry) of every URL in ``text``."""
    return _SIGNED_QUERY.sub(r"\1?<signature removed>", text)


@contextmanager
def private_workdir() -> Iterator[Path]:
    """chdir into a new temporary directory with local-only reference lookup; restore and delete on exit.

    The process is single-threaded while this is active (the CLI runs one command), so changing the
    process-wide working directory and environment is safe.
    """
    previous = os.getcwd()
    workdir = Path(tempfile.mkdtemp(prefix="score-hts-"))
    saved = {name: os.environ.get(name) for name in ("REF_PATH", "REF_CACHE")}
    user_ref_path = saved["REF_PATH"]
    if not user_ref_path or _NETWORK_REF.search(user_ref_path):
        # A local directory that does not exist: htslib finds no reference by MD5 and never goes online.
        os.environ["REF_PATH"] = str(workdir / "ref-path" / "%s")
    if not saved["REF_CACHE"]:
        os.environ["REF_CACHE"] = str(workdir / "ref-cache" / "%2s" / "%2s" / "%s")
    os.chdir(workdir)
    try:
        yield workdir
    finally:
        os.chdir(previous)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def redacted_stderr() -> Iterator[None]:
    """Capture everything written to file descriptor 2 (htslib writes there directly) and replay it redacted.

    Messages appear when the block ends; our own messages written meanwhile keep their order.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", errors="replace")
            if text:
                sys.stderr.write(redact(text))
                sys.stderr.flush()
