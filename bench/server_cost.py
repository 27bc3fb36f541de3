#!/usr/bin/env python3
"""What one file of a job costs the server: store requests by kind and server CPU, upload and download.

    .venv/bin/python bench/server_cost.py [--backend s3|local] [--files 400] [--size 256KiB]

Issue 12 asks what each file costs the server (calls, store requests, CPU ms) on local and S3. This starts
score-server (on a fresh SeaweedFS behind the tests' counting proxy for ``s3``, on its embedded store for
``local``), registers one analysis of FILES random files, uploads it with ``score-client upload
--analysis-id``, publishes it and downloads it with ``download --analysis-id``, and prints per direction the
wall time, the server's CPU (psutil) per file, and for S3 every store request the proxy saw, per file, by
method and key shape. The proxy adds latency and CPU of its own (it runs in this process): compare the
numbers with each other, and take speeds from ``bench/bundle.py``.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
from tests.conftest import BIN, Registry, ScoreServer  # noqa: E402
from tests.services.proxy import StoreProxy  # noqa: E402
from tests.services.seaweed import SeaweedS3  # noqa: E402

STUDY = "COST"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_SIGNING = {"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders"}


def parse_size(text: str) -> int:
    units = {"KiB": 1024, "MiB": 1024**2, "B": 1}
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(text[: -len(unit)]) * factor
    return int(text)


def request_kind(method: str, path: str, query: dict[str, list[str]]) -> str:
    """``GET data/{id}.meta``-style: ids and upload ids folded, signature parameters left out."""
    shape = _UUID.sub("{id}", path)
    shape = re.sub(r"_[^/]+/", "_{upload}/", shape)
    shape = shape.split("/", 2)[-1] if shape.count("/") >= 2 else "(bucket)"
    params = ",".join(sorted(k for k in query if k not in _SIGNING and k != "X-Amz-Signature"))
    return f"{method} {shape}" + (f" ?{params}" if params else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["s3", "local"], default="s3")
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--size", type=parse_size, default=256 * 1024)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="score-cost-"))
    store = proxy = None
    try:
        env: dict[str, str] = {}
        if args.backend == "s3":
            store = SeaweedS3(work / "seaweed").start()
            proxy = StoreProxy(store.endpoint).start()
            host = store.endpoint.split("/")[2]
            env = store.score_env(store.fresh_bucket(), endpoint=store.endpoint.replace(host, proxy.url.split("/")[2]))
        server = ScoreServer(work / "data", part_size=64 * 1024 * 1024, extra_env=env).start()
        try:
            token = server.token("score.WRITE score.READ song.WRITE")
            registry = Registry(server, token)
            folder = work / "in"
            folder.mkdir()
            files = [folder / f"f{i:05d}.bin" for i in range(args.files)]
            for path in files:
                path.write_bytes(os.urandom(args.size))
            analysis, _ = registry.submit(STUDY, files)
            client_env = {**os.environ, "ACCESSTOKEN": token, "STORAGE_URL": server.url}
            process = psutil.Process(server.process.pid)  # type: ignore[union-attr]
            steps = [
                ("upload", ["upload", "--analysis-id", analysis, "--study-id", STUDY, "--input-dir", str(folder)]),
                (
                    "download",
                    ["download", "--analysis-id", analysis, "--study-id", STUDY, "--output-dir", str(work / "out")],
                ),
            ]
            print(f"{args.files} files of {args.size} bytes, score-server on {args.backend}")
            for label, command in steps:
                if label == "download" and registry.publish(STUDY, analysis).status_code != 200:
                    raise SystemExit("publishing the analysis failed")
                subprocess.run(["sync"], check=False)
                if proxy is not None:
                    proxy.events.clear()
                cpu = sum(process.cpu_times()[:2])
                start = time.monotonic()
                result = subprocess.run(
                    [str(BIN / "score-client"), "--quiet", *command], env=client_env, capture_output=True, text=True
                )
                wall = time.monotonic() - start
                cpu = sum(process.cpu_times()[:2]) - cpu
                if result.returncode != 0:
                    raise SystemExit(f"{label} failed: {result.stderr[-2000:]}")
                print(f"\n{label}: {wall:.2f} s wall, server CPU {cpu / args.files * 1000:.1f} ms per file")
                if proxy is not None:
                    kinds = collections.Counter(request_kind(e.method, e.path, e.query) for e in proxy.events)
                    print(f"  store requests: {sum(kinds.values()) / args.files:.2f} per file")
                    for kind, count in kinds.most_common():
                        if count / args.files >= 0.01:
                            print(f"  {count / args.files:6.2f}  {kind}")
        finally:
            server.stop()
    finally:
        if proxy is not None:
            proxy.stop()
        if store is not None:
            store.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
