"""Swagger UI at /docs in a real headless browser: Authorize takes a token and "Try it out" sends it (issue 14,
item 9).

Playwright drives Debian's Chromium (``apt-get install chromium``; ``.ci/run`` installs it): Playwright's own
browsers are never downloaded. A controlled-access object of study DOCS is uploaded and published; a token with
only ``PROGRAMDATA-DOCS.READ`` may read it. In the page, the same GET /download/{objectId} is answered 401 before
Authorize and 200 after, and the request the page sent carries the bearer token.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Client, Registry, ScoreServer, make_file

CHROMIUM = os.environ.get("SCORE_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STUDY = "DOCS"
DOWNLOAD_OPERATION = "#operations-download-download_download__object_id__get"


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[Any]:
    """A page of a fresh headless Chromium (its own user-data dir), or a failure saying what to install."""
    assert Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM}: apt-get install chromium (.ci/run does)"
    from playwright.sync_api import sync_playwright  # the dev extra's playwright; its browsers are not used

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        context.set_default_timeout(15_000)
        try:
            yield context.new_page()
        finally:
            context.close()


def _execute(operation: Any) -> str:
    """Press Execute and return the status code Swagger UI shows for the live response."""
    operation.locator("button.execute").click()
    status = operation.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for()
    return status.inner_text().strip()


def test_swagger_ui_authorizes_and_tries_an_authenticated_call(
    server: ScoreServer, registry: Registry, client: Client, tmp_path: Path, browser_page: Any
) -> None:
    path = make_file(tmp_path / "controlled.bin", 3000)
    analysis, ids = registry.submit(STUDY, [path], access="controlled")
    object_id = ids[path.name]
    uploaded = client.run("upload", "--file", str(path), "--object-id", object_id)
    assert uploaded.returncode == 0, uploaded.stderr
    assert registry.publish(STUDY, analysis).status_code == 200
    token = server.token(f"PROGRAMDATA-{STUDY}.READ")

    page = browser_page
    sent: list[tuple[str, str | None]] = []
    page.on("request", lambda request: sent.append((request.url, request.headers.get("authorization"))))
    page.goto(f"{server.url}/docs")

    operation = page.locator(DOWNLOAD_OPERATION)
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    operation.locator('tr[data-param-name="object_id"] input').fill(object_id)
    assert _execute(operation) == "401", "without Authorize the controlled object is refused"
    assert "needs an access token" in operation.locator(".live-responses-table tbody").inner_text()

    page.locator(".auth-wrapper button.authorize").click()
    dialog = page.locator(".modal-ux")
    assert "bearerAuth" in dialog.inner_text() and "(http, Bearer)" in dialog.inner_text()
    dialog.locator("input").fill(token)
    dialog.locator(".auth-btn-wrapper button.authorize").click()
    assert "Authorized" in dialog.inner_text()
    dialog.locator("button.btn-done").click()

    assert _execute(operation) == "200"
    answer = operation.locator(".live-responses-table tbody").inner_text()
    assert f'"objectId": "{object_id}"' in answer and '"objectSize": 3000' in answer
    assert f"Authorization: Bearer {token}" in operation.locator(".curl-command").inner_text()
    calls = [auth for url, auth in sent if f"/download/{object_id}" in url]
    assert calls == [None, f"Bearer {token}"], "the first call went without a token, the second with it"
