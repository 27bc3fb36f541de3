"""HAProxy in front of score-server replicas, running deploy/haproxy.cfg exactly as shipped.

The config takes its addresses from the environment (``SCORE_LB_BIND``, ``SCORE_REPLICA_<n>``), so the file a
deployment uses is the file the replicas test and the load bench run. Debian's ``haproxy`` (installed by
.ci/run).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "haproxy.cfg"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
RISE_SECONDS = 2.5  # "rise 2" at "inter 500ms" (deploy/haproxy.cfg): until every replica is in


class HAProxy:
    """``haproxy -db -f deploy/haproxy.cfg`` listening on 127.0.0.1:``port``, balancing ``replica_ports``."""

    def __init__(self, port: int, replica_ports: Sequence[int], log: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log
        env = {**os.environ, "SCORE_LB_BIND": f"127.0.0.1:{port}"}
        env.update({f"SCORE_REPLICA_{n}": f"127.0.0.1:{p}" for n, p in enumerate(replica_ports, 1)})
        self._log = log.open("ab")
        command = [HAPROXY, "-db", "-f", str(CONFIG)]
        self.process = subprocess.Popen(command, stdout=self._log, stderr=self._log, env=env)

    def wait_ready(self, all_replicas: bool = True, timeout: float = 20) -> HAProxy:
        """Up and answering readiness through a replica; with ``all_replicas`` also every replica's health
        check passed, so the first requests are spread evenly. RuntimeError, with HAProxy's log, if not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"haproxy exited: {self.log_path.read_text()[-2000:]}")
            with suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/actuator/health/readiness", timeout=1).status_code == 200:
                    if all_replicas:
                        time.sleep(RISE_SECONDS)
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"haproxy did not come up: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
