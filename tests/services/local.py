"""The embedded default seen through the store proxy: the server serves its own signed URLs at /_store."""

from __future__ import annotations


def part_number(event) -> int | None:  # type: ignore[no-untyped-def]
    """The part number of a client's part PUT to the local store's data endpoint, else None. A whole-object PUT
    (``op=whole``, one-part files) is its part 1."""
    if event.method != "PUT" or not event.path.startswith("/_store/"):
        return None
    if event.query.get("op") == ["put"]:
        return int(event.query["partNumber"][0])
    return 1 if event.query.get("op") == ["whole"] else None
