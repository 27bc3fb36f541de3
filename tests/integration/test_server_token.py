"""``score-server token`` (and ``cleanup``) find the running server's data dir from any directory, and a token is
never signed with a key made where the command only looked (issue 14, item 2).

Each test has its own ``XDG_STATE_HOME``, so the servers it starts are the only ones recorded there.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import httpx

from tests.conftest import BIN, ScoreServer

SCOPES = "score.WRITE score.READ song.WRITE"


def _env(state: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SCORE_DATA_DIR", "SCORE_CONFIG")}
    return {**env, "XDG_STATE_HOME": str(state), **extra}


def _server_command(command: str, cwd: Path, state: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "score-server"), command, *args],
        cwd=cwd,
        env=_env(state, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _token(cwd: Path, state: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return _server_command("token", cwd, state, "--scopes", SCOPES, *args, **env)


def _listing(server: ScoreServer, token: str) -> httpx.Response:
    return httpx.get(f"{server.url}/listing", headers={"Authorization": f"Bearer {token}"}, timeout=30)


def _recorded(state: Path) -> list[dict[str, object]]:
    return json.loads((state / "score" / "server.json").read_text())["servers"]


def test_a_token_minted_in_another_directory_is_signed_with_the_running_servers_key(tmp_path: Path) -> None:
    state = tmp_path / "state"
    server = ScoreServer(tmp_path / "server-data", extra_env={"XDG_STATE_HOME": str(state)}).start()
    elsewhere = tmp_path / "another-shell"
    elsewhere.mkdir()
    data_dir = server.data_dir.resolve()
    try:
        (entry,) = _recorded(state)
        assert server.process is not None
        assert (entry["pid"], entry["url"], entry["data_dir"]) == (server.process.pid, server.url, str(data_dir))
        minted = _token(elsewhere, state)
        assert minted.returncode == 0, minted.stderr
        token = minted.stdout.strip()
        assert minted.stdout == token + "\n" and token.count(".") == 2, "stdout is the bare token, for $(...)"
        assert f"signed with the key of data dir {data_dir} (the score-server running at {server.url}" in minted.stderr
        assert not (elsewhere / "score-data").exists(), "no key is made in the current directory"
        answer = _listing(server, token)
        assert answer.status_code == 200, answer.text
        assert answer.json() == []

        swept = _server_command("cleanup", elsewhere, state, "--older-than", "1h")
        assert swept.returncode == 0, swept.stderr
        assert f"cleaning data dir {data_dir} (the score-server running at {server.url}" in swept.stderr
        assert "0 of 0 uploads aborted as stale" in swept.stderr
        assert not (elsewhere / "score-data").exists()
    finally:
        server.stop()
    assert _recorded(state) == [], "a stopped server removes its entry"

    refused = _token(elsewhere, state)
    assert refused.returncode == 1 and refused.stdout == ""
    message = refused.stderr
    assert f"no signing key at {elsewhere / 'score-data' / 'keys' / 'token-signing.pem'}" in message
    assert f"as no running score-server is recorded in {state / 'score' / 'server.json'}" in message
    assert "--data-dir DIR or SCORE_DATA_DIR=DIR" in message and "Start the server first" in message
    assert not (elsewhere / "score-data").exists(), "looking never makes a key"
    no_sweep = _server_command("cleanup", elsewhere, state)
    assert no_sweep.returncode == 1 and f"data dir {elsewhere / 'score-data'}" in no_sweep.stderr
    assert "does not exist" in no_sweep.stderr and not (elsewhere / "score-data").exists()


def test_only_an_explicit_data_dir_gets_a_new_key_and_it_says_so(tmp_path: Path) -> None:
    state = tmp_path / "state"
    empty = tmp_path / "empty"
    empty.mkdir()

    looked = _token(tmp_path, state, SCORE_DATA_DIR=str(empty))
    assert looked.returncode == 1 and looked.stdout == ""
    assert f"no signing key at {empty / 'keys' / 'token-signing.pem'}: looked in {empty} (SCORE_DATA_DIR)" in (
        looked.stderr
    )
    assert not (empty / "keys").exists()

    made = _token(tmp_path, state, "--data-dir", str(empty))
    assert made.returncode == 0, made.stderr
    key = empty / "keys" / "token-signing.pem"
    assert f"no signing key in {empty}: made a new one ({key}); only a server on this data dir accepts" in made.stderr
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    again = _token(tmp_path, state, "--data-dir", str(empty))
    assert again.returncode == 0 and "made a new one" not in again.stderr
    assert f"signed with the key of data dir {empty} (--data-dir)" in again.stderr

    missing = _token(tmp_path, state, "--data-dir", str(tmp_path / "typo"))
    assert missing.returncode == 1 and f"--data-dir {tmp_path / 'typo'} does not exist" in missing.stderr
    assert not (tmp_path / "typo").exists()


def test_several_servers_on_different_data_dirs_are_not_guessed_between(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = ScoreServer(tmp_path / "one", extra_env={"XDG_STATE_HOME": str(state)}).start()
    second = ScoreServer(tmp_path / "two", extra_env={"XDG_STATE_HOME": str(state)}).start()
    try:
        ambiguous = _token(tmp_path, state)
        assert ambiguous.returncode == 1 and ambiguous.stdout == ""
        assert "several score-server processes are running on different data dirs" in ambiguous.stderr
        for server in (first, second):
            assert server.process is not None
            assert f"{server.url} (pid {server.process.pid}): {server.data_dir.resolve()}" in ambiguous.stderr
        assert "--data-dir DIR or SCORE_DATA_DIR=DIR" in ambiguous.stderr

        chosen = _token(tmp_path, state, SCORE_DATA_DIR=str(second.data_dir))
        assert chosen.returncode == 0, chosen.stderr
        assert _listing(second, chosen.stdout.strip()).status_code == 200
        refused = _listing(first, chosen.stdout.strip())
        assert refused.status_code == 401 and "Signature verification failed" in refused.json()["message"]
        assert "note:" not in chosen.stderr

        stray = tmp_path / "stray"
        stray.mkdir()
        odd = _token(tmp_path, state, "--data-dir", str(stray))
        assert odd.returncode == 0
        assert "note: no running score-server uses this data dir" in odd.stderr
        assert f"{first.url} uses {first.data_dir.resolve()}" in odd.stderr
    finally:
        first.stop()
        second.stop()


def test_a_server_that_cannot_record_itself_still_serves(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    server = ScoreServer(tmp_path / "data", extra_env={"XDG_STATE_HOME": str(not_a_dir)}).start()
    try:
        log = server.log_path.read_text()
        assert f"note: cannot record this server in {not_a_dir / 'score' / 'server.json'}" in log
        assert f"needs --data-dir {server.data_dir.resolve()}" in log
        assert _listing(server, server.token(SCOPES)).status_code == 200
    finally:
        server.stop()
