"""The API fuzzing campaign with a bounded budget (see ``api_fuzz`` for the long run): zero failures."""

from __future__ import annotations

import os
from pathlib import Path

from tests.campaign.api_fuzz import campaign, summary

SECONDS_PER_MODE = int(os.environ.get("SCORE_FUZZ_SECONDS", "25"))


def test_fuzzing_the_whole_api_finds_no_server_error_and_no_schema_violation(tmp_path: Path) -> None:
    outcomes = campaign(SECONDS_PER_MODE, tmp_path)
    print("\n" + summary(outcomes))
    failing = [o for o in outcomes if o.exit_code != 0]
    assert not failing, "\n\n".join(f"--- {o.mode} ---\n{o.report[-12000:]}" for o in failing)
    assert all(o.cases > 100 for o in outcomes), summary(outcomes)  # the fuzzer really ran
