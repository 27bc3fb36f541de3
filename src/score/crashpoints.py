"""Named crash points: the kill -9 test matrix stops a process at an exact step, not after a guessed delay.

A step that must survive a crash calls ``crash_point("finalize.completed")``. When the process was started
with ``SCORE_CRASH_AT=finalize.completed`` (several names: comma-separated), it kills itself with SIGKILL
right there, as ``kill -9`` would: no clean-up, no flush, no ``finally``. Unset (every real deployment),
a crash point is one lookup in an empty set.

The names are listed in ``SERVER_POINTS`` and ``CLIENT_POINTS`` so the tests can prove they cover every
point and a typo in a test fails instead of silently never crashing.
"""

from __future__ import annotations

import os
import signal

ENV = "SCORE_CRASH_AT"

SERVER_POINTS = (
    "initiate.store_started",  # the store's upload exists, its state document does not
    "finalize_part.unmarked",  # an old marker of the part was removed, the new one not written
    "finalize.committed",  # the verified MD5 is recorded: from here the finalize only rolls forward
    "finalize.old_meta_hidden",  # an overwritten object's .meta is gone, the new bytes not yet in place
    "finalize.completed",  # the bytes are in place under data/{id}, no .meta yet
    "finalize.meta_written",  # the object is visible, its upload state not yet removed
    "finalize.state_half_removed",  # some of the upload's markers are deleted, its state document not
)
CLIENT_POINTS = (
    "upload.initiated",  # the server has the upload, the journal is written, no part sent
    "upload.part_sent",  # a part is in the store but not recorded with the server
    "upload.part_recorded",  # a part is recorded
    "upload.parts_done",  # every part is recorded, finalize not asked
    "upload.finalized",  # the server finalized, the journal is still beside the file
)

_ARMED = frozenset(name.strip() for name in os.environ.get(ENV, "").split(",") if name.strip())


def crash_point(name: str) -> None:
    """Die here (SIGKILL) if this process was started with ``SCORE_CRASH_AT`` naming ``name``."""
    if name in _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)
