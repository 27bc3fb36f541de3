"""The README's five-minute tour, run as written (issue 14, items 2 and 10).

The server is started as the README's first command starts it (``score-server serve``, no options, from the
checkout), and the tour's block runs in bash from *another* directory, as "another shell" may be: its token
must still be signed with that server's key. The one change to the text is the port (a free one instead of
8087, which another server on this machine may hold); ``STORAGE_URL`` says the same to the client. Every step
must print something a person can read, each answer on its own line.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import BIN
from tests.services.process import free_port

README = Path(__file__).resolve().parents[2] / "README.md"


def tour_script() -> str:
    """The first bash block of the README's "Five-minute tour" section, verbatim."""
    text = README.read_text()
    section = text[text.index("## Five-minute tour") :]
    section = section[: section.index("\n## ", 1)]
    found = re.search(r"```bash\n(.*?)```", section, re.S)
    assert found, "the tour has a bash block"
    return found.group(1)


class TourServer:
    """``score-server serve`` as the README starts it: in the checkout, on its default data dir."""

    def __init__(self, checkout: Path, state: Path) -> None:
        self.checkout = checkout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = checkout / "server.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCORE_")}
        env.update({"SCORE_PORT": str(self.port), "XDG_STATE_HOME": str(state)})
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [str(BIN / "score-server"), "serve"], cwd=checkout, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                if httpx.get(f"{self.url}/actuator/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError(f"the tour's server did not start: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(15)


@pytest.fixture
def tour_server(tmp_path: Path) -> Iterator[TourServer]:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    server = TourServer(checkout, tmp_path / "state")
    yield server
    server.stop()


def run_tour(server: TourServer, shell_dir: Path, state: Path) -> subprocess.CompletedProcess[str]:
    script = tour_script().replace("8087", str(server.port))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SCORE_") and k not in ("ACCESSTOKEN", "METADATA_URL", "STORAGE_URL")
    }
    env.update(
        {
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",  # the tour's PATH line assumes the checkout's .venv
            "XDG_STATE_HOME": str(state),
            "STORAGE_URL": f"http://localhost:{server.port}",
            "SCORE_CLIENT_CONFIG": "",  # no client config file of the machine's user
        }
    )
    return subprocess.run(
        ["bash", "-e", "-c", script], cwd=shell_dir, env=env, capture_output=True, text=True, timeout=180
    )


def test_the_five_minute_tour_runs_as_written_from_another_directory(tour_server: TourServer, tmp_path: Path) -> None:
    shell_dir = tmp_path / "another-shell"
    shell_dir.mkdir()
    data_dir = (tour_server.checkout / "score-data").resolve()

    first = run_tour(tour_server, shell_dir, tmp_path / "state")
    assert first.returncode == 0, f"stdout:\n{first.stdout}\nstderr:\n{first.stderr}"
    lines = first.stdout.splitlines()
    assert first.stdout.endswith("\n"), "the last answer does not run into the next prompt"
    # Song 5.2+'s GenericMessage JSON (StudyController.saveStudy, AnalysisController.publishAnalysis)
    assert json.loads(lines[0]) == {"message": "Successfully created study 'ABC123'"}
    submitted = json.loads(lines[1])
    analysis = submitted["analysisId"]
    assert submitted == {"analysisId": analysis, "status": "OK"}
    assert json.loads(lines[2]) == {"message": f"AnalysisId {analysis} successfully published"}
    assert lines[3:] == ["hello"], f"the downloaded file is shown, nothing else on stdout: {lines}"
    assert f"signed with the key of data dir {data_dir} (the score-server running at {tour_server.url}" in first.stderr
    assert "reads.txt" in first.stderr, "upload and download say what they did"
    assert (shell_dir / "out" / analysis / "reads.txt").read_text() == "hello\n"
    assert not (shell_dir / "score-data").exists(), "no key was made in the other shell's directory"

    # The tour says a second run is fine: the study exists (Song's 409, readable), the rest runs again.
    second = run_tour(tour_server, shell_dir, tmp_path / "state")
    assert second.returncode == 0, f"stdout:\n{second.stdout}\nstderr:\n{second.stderr}"
    exists = json.loads(second.stdout.splitlines()[0])
    assert (exists["errorId"], exists["httpStatusCode"]) == ("study.already.exists", 409)
    again = json.loads(second.stdout.splitlines()[1])["analysisId"]
    assert again != analysis and second.stdout.splitlines()[-1] == "hello"
