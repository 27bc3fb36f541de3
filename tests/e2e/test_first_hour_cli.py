"""A new user's first hour with score-client (issue 14, items 1, 3, 5, 8): the real command against a real
server, or against nothing at all, judged by its exit codes and its words.

* an unreachable server is named at once, with what is being retried, and given up on in seconds;
* a URL without a scheme is refused before anything runs, with the fix;
* ``info`` says whether the servers answer;
* ``download ID --output-dir D`` works as its usage line says;
* advice to re-run appears only where re-running helps; an expired token is explained once;
* summaries count what this run moved (``1 part``, no rate of bytes that never moved);
* every command takes ``-h``; ``completion bash|zsh`` prints a script.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import httpx
import pytest

from tests.conftest import BIN, SMALL_PART, Client, Registry, ScoreServer, free_port, make_file, md5_of
from tests.e2e.test_resume import _kill_after

STUDY = "FIRSTHOUR"
SOME_ID = "5b3f5d7a-1b7e-4c55-9d53-0f0e7c2a9a11"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScoreServer]:
    """One server for the module (each test registers files of its own): the file stays well under a minute."""
    instance = ScoreServer(tmp_path_factory.mktemp("first-hour") / "server-data").start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def admin_token(server: ScoreServer) -> str:
    return server.token("score.WRITE score.READ song.WRITE")


def _nowhere(tmp_path: Path, **env: str) -> tuple[Client, str]:
    """A client whose STORAGE_URL is a port where nothing listens (no server process at all)."""
    url = f"http://127.0.0.1:{free_port()}"
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return Client(cast(ScoreServer, SimpleNamespace(url=url)), None, work), url


def _timed(client: Client, *args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = client.run(*args, timeout=60, **env)
    return result, time.monotonic() - started


def _published(registry: Registry, client: Client, files: list[Path]) -> dict[str, str]:
    analysis_id, ids = registry.submit(STUDY, files)
    for f in files:
        result = client.run("upload", "--file", str(f), "--object-id", ids[f.name])
        assert result.returncode == 0, result.stderr
        assert "the rest done before" not in result.stderr  # a fresh upload moved every byte it reports
    assert registry.publish(STUDY, analysis_id).status_code == 200
    return ids


# -- 1. an unreachable server ---------------------------------------------------------------------
def test_a_refused_connection_is_named_retried_briefly_and_given_up_on_within_seconds(tmp_path: Path) -> None:
    client, url = _nowhere(tmp_path)
    secret = "not-a-real-token-but-secret"
    # the default number of retries (10), which a refused connection does not get
    result, took = _timed(
        client, "download", SOME_ID, "--output-dir", "out", STORAGE_RETRYNUMBER="10", ACCESSTOKEN=secret
    )
    assert result.returncode == 1, result.stderr
    assert took < 5, f"{took:.1f} s to give up on a port where nothing listens"
    assert f"cannot reach {url}" in result.stderr and "(connection refused)" in result.stderr
    assert "retrying (1/2)" in result.stderr and "retrying (2/2)" in result.stderr  # said as each retry starts
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and url in last and "tried 3 times" in last
    assert "check that the server is running" in last and "_URL" in last  # which setting to check
    assert secret not in result.stderr and not (client.workdir / "out").exists()

    # --verbose says the same once, not "retrying X after X"
    verbose, took = _timed(client, "--verbose", "download", SOME_ID, "--output-dir", "out")
    assert verbose.returncode == 1 and took < 5
    assert "after pinging" not in verbose.stderr and "retrying pinging" not in verbose.stderr


def test_a_url_without_a_scheme_is_refused_at_once_with_the_fix(tmp_path: Path) -> None:
    client, _ = _nowhere(tmp_path)
    result, took = _timed(client, "download", SOME_ID, "--output-dir", "out", STORAGE_URL="localhost:8087")
    assert result.returncode == 1 and took < 2, (took, result.stderr)
    assert "STORAGE_URL 'localhost:8087' has no scheme; write http://localhost:8087" in result.stderr
    assert "UnsupportedProtocol" not in result.stderr

    result, took = _timed(client, "info", METADATA_URL="localhost:8087/song")
    assert result.returncode == 1 and took < 2
    assert "METADATA_URL 'localhost:8087/song' has no scheme; write http://localhost:8087/song" in result.stderr

    config = tmp_path / "client.toml"
    config.write_text('storage_url = "localhost:8087"\n')
    result, took = _timed(
        client, "upload", "--file", "x", "--object-id", SOME_ID, STORAGE_URL="", SCORE_CLIENT_CONFIG=str(config)
    )
    assert result.returncode == 1 and took < 2
    assert f"storage_url 'localhost:8087' in {config} has no scheme; write http://localhost:8087" in result.stderr

    # what needs no server still works while the URL is wrong
    assert client.run("version", STORAGE_URL="localhost:8087").returncode == 0
    helped = client.run("download", "-h", STORAGE_URL="localhost:8087")
    assert helped.returncode == 0 and helped.stdout.startswith("Usage: score-client download")


def test_info_says_whether_the_servers_answer(server: ScoreServer, client: Client, tmp_path: Path) -> None:
    result = client.run("info")
    assert result.returncode == 0, result.stderr
    assert f"storage url:    {server.url} (answers: Score API " in result.stdout
    assert f"metadata url:   {server.url}/song (answers)" in result.stdout

    nowhere, url = _nowhere(tmp_path)
    result, took = _timed(nowhere, "info")
    assert result.returncode == 0 and took < 4, (took, result.stderr)
    assert f"storage url:    {url} (not reachable: connection refused)" in result.stdout
    assert f"metadata url:   {url}/song (not reachable: connection refused)" in result.stdout


# -- 3. positional object ids ---------------------------------------------------------------------
def test_download_takes_object_ids_as_its_usage_line_says(
    registry: Registry, client: Client, server: ScoreServer, tmp_path: Path
) -> None:
    one = make_file(tmp_path / "one.bin", 100, seed=31)
    two = make_file(tmp_path / "two.bin", 3 * SMALL_PART, seed=32)
    ids = _published(registry, client, [one, two])

    usage = client.run("download", "--help").stdout
    assert "Usage: score-client download [OPTIONS] [OBJECT_ID]..." in usage
    result = client.run("download", ids["one.bin"], "--output-dir", "out")
    assert result.returncode == 0, result.stderr
    assert md5_of(client.workdir / "out" / "one.bin") == md5_of(one)
    # arguments and --object-id together
    result = client.run("download", ids["one.bin"], "--object-id", ids["two.bin"], "--output-dir", "both")
    assert result.returncode == 0, result.stderr
    assert md5_of(client.workdir / "both" / "two.bin") == md5_of(two)
    assert md5_of(client.workdir / "both" / "one.bin") == md5_of(one)
    # a bad argument is named as what it is
    bad = client.run("download", "nonsense", "--output-dir", "out")
    assert bad.returncode == 1 and "nonsense is not a valid UUID" in bad.stderr


# -- 5. messages ----------------------------------------------------------------------------------
def test_one_part_and_a_short_job_are_reported_in_plain_words(
    registry: Registry, client: Client, tmp_path: Path
) -> None:
    source = make_file(tmp_path / "tiny.bin", 100, seed=33)
    _, ids = registry.submit(STUDY, [source])
    result = client.run("upload", "--file", str(source), "--object-id", ids["tiny.bin"])
    assert result.returncode == 0, result.stderr
    assert "1 part sent" in result.stderr and "1 parts" not in result.stderr
    summary = result.stderr.strip().splitlines()[-1]
    assert summary.startswith("1 file: 1 uploaded, 100 B in "), summary
    assert "/s" not in summary, f"a rate of a few milliseconds means nothing: {summary}"


def test_re_running_is_advised_only_where_it_helps(
    registry: Registry, client: Client, server: ScoreServer, tmp_path: Path
) -> None:
    source = make_file(tmp_path / "f.bin", 2 * SMALL_PART, seed=34)
    analysis_id, ids = registry.submit(STUDY, [source])
    oid = ids["f.bin"]
    wrong = client.run("upload", "--file", str(source), "--object-id", oid, "--md5", "0" * 32)
    assert wrong.returncode == 1
    assert "differs from the MD5 registered" in wrong.stderr
    assert "run the same command again" not in wrong.stderr and "resum" not in wrong.stderr
    assert wrong.stderr.strip().endswith("see the errors above for what to fix")

    assert client.run("upload", "--file", str(source), "--object-id", oid).returncode == 0
    assert registry.publish(STUDY, analysis_id).status_code == 200
    # A store this machine cannot reach, found only while moving bytes: there, running again helps.
    elsewhere = ScoreServer(server.data_dir, extra_env={"SCORE_PUBLIC_URL": f"http://127.0.0.1:{free_port()}"})
    elsewhere.start()
    try:
        work = tmp_path / "elsewhere"
        work.mkdir()
        away = Client(elsewhere, client.token, work)
        result = away.run("download", oid, "--output-dir", "out", "--verify-connection", "false")
        assert result.returncode == 1
        assert "run the same command again once the server and the store answer" in result.stderr, result.stderr
    finally:
        elsewhere.stop()


def test_an_expired_token_is_explained_once(
    registry: Registry, client: Client, server: ScoreServer, tmp_path: Path
) -> None:
    source = make_file(tmp_path / "f.bin", 100, seed=35)
    ids = _published(registry, client, [source])
    expired = server.token("score.READ score.WRITE", ttl="1s")
    time.sleep(2)
    download = client.run("download", ids["f.bin"], "--output-dir", "out", ACCESSTOKEN=expired)
    upload = client.run("upload", "--file", str(source), "--object-id", ids["f.bin"], "--force", ACCESSTOKEN=expired)
    for result in (download, upload):
        assert result.returncode == 1
        assert "your access token expired at" in result.stderr, result.stderr
        assert result.stderr.count("get a new one") == 1, result.stderr
        assert result.stderr.count("expired") == 1, result.stderr
        assert expired not in result.stderr
    assert "for 1 object:" in download.stderr or ids["f.bin"] in download.stderr  # never "1 objects"
    assert "1 objects" not in download.stderr + upload.stderr


def test_a_resumed_download_reports_the_bytes_it_moved(
    registry: Registry, client: Client, server: ScoreServer, tmp_path: Path
) -> None:
    size = 120 * SMALL_PART
    source = make_file(tmp_path / "big.bin", size, seed=36)
    oid = _published(registry, client, [source])["big.bin"]
    process = client.start("--parallel", "1", "download", oid, "--output-dir", "out")
    _kill_after(process, server, "get", len(server.access_events("get")) + 30)
    state = client.workdir / "out" / f".{oid}"
    finished = len(list(state.glob("part-*")))
    assert 0 < finished < 120, finished

    result = client.run("download", oid, "--output-dir", "out")
    assert result.returncode == 0, result.stderr
    assert md5_of(client.workdir / "out" / "big.bin") == md5_of(source)
    assert f"{finished} parts already done" in result.stderr, result.stderr
    summary = result.stderr.strip().splitlines()[-1]
    found = re.search(r"7\.5 MiB \(([\d.]+) (KiB|MiB) transferred, the rest done before\)", summary)
    assert found, summary
    moved = float(found.group(1)) * (1024 if found.group(2) == "KiB" else 1024 * 1024)
    assert abs(moved - (120 - finished) * SMALL_PART) < 0.1 * 1024 * 1024, summary

    fresh = client.run("download", oid, "--output-dir", "again")
    assert fresh.returncode == 0 and "the rest done before" not in fresh.stderr and "already done" not in fresh.stderr


def test_the_upload_profile_refusal_names_its_own_action(server: ScoreServer) -> None:
    profile = httpx.get(f"{server.url}/profile")
    assert profile.status_code == 401
    assert profile.json()["message"].startswith("reading the upload profile needs an access token")
    listing = httpx.get(f"{server.url}/listing")
    assert listing.status_code == 401 and listing.json()["message"].startswith("listing objects needs an access token")


# -- 8. help and completion -----------------------------------------------------------------------
def _commands() -> list[str]:
    listed = subprocess.run([str(BIN / "score-client"), "--help"], capture_output=True, text=True, check=True).stdout
    names = [line.split()[0] for line in listed.split("Commands:", 1)[1].splitlines() if line.strip()]
    assert {"download", "upload", "view", "samtools", "completion", "info"} <= set(names), names
    return names


def test_every_command_takes_dash_h(tmp_path: Path) -> None:
    client, _ = _nowhere(tmp_path)
    names = _commands()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(zip(names, pool.map(lambda name: client.run(name, "-h"), names), strict=True))
    for name, result in results.items():
        assert result.returncode == 0, (name, result.stderr)
        assert result.stdout.startswith(f"Usage: score-client {name}"), (name, result.stdout)
        if "--verify-connection" in result.stdout:
            described = result.stdout.split("--verify-connection", 1)[1].split("\n  -", 1)[0]
            assert "sentinel" in described, (name, described)  # it says what it does

    samtools = results["samtools"].stdout
    usage = samtools.split("\n\n", 1)[0]
    assert usage == "Usage: score-client samtools [OPTIONS] OPERATION [ARGS]...", usage  # no word broken
    assert "quickcheck" in samtools and "-h is samtools' own" in samtools
    assert client.run("samtools", "view", "-h").stdout.startswith("Usage: score-client samtools")


def test_completion_prints_a_script_for_bash_and_zsh(tmp_path: Path) -> None:
    client, _ = _nowhere(tmp_path)
    bash = client.run("completion", "bash")
    assert bash.returncode == 0 and "_SCORE_CLIENT_COMPLETE=bash_complete" in bash.stdout
    assert "complete -o nosort -F _score_client_completion score-client" in bash.stdout
    zsh = client.run("completion", "zsh")
    assert zsh.returncode == 0 and zsh.stdout.startswith("#compdef score-client")
    helped = client.run("completion", "-h").stdout
    assert 'eval "$(score-client completion bash)"' in helped and "~/.zshrc" in helped
    wrong = client.run("completion", "tcsh")
    assert wrong.returncode == 1 and "'tcsh' is not one of" in wrong.stderr

    # the script's question, answered as the shell would ask it
    env = {**os.environ, "COMP_WORDS": "score-client dow", "COMP_CWORD": "1", "_SCORE_CLIENT_COMPLETE": "bash_complete"}
    words = subprocess.run([str(BIN / "score-client")], env=env, capture_output=True, text=True, timeout=30)
    assert words.returncode == 0 and "plain,download" in words.stdout.splitlines(), words.stdout
