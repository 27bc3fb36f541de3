"""Score's key layout (storage/layout.py): every key it writes, it reads back as the same parts."""

from __future__ import annotations

from score.core.models import CompletedPart
from score.server.storage import layout

OID = "56f3cb04-4b6f-5a2e-9e1c-0123456789ab"
UPLOAD = "0123456789abcdef0123456789abcdef"


def test_keys_are_scores_layout() -> None:
    assert layout.data_key(OID) == f"data/{OID}"
    assert layout.meta_key(OID) == f"data/{OID}.meta"
    assert layout.state_prefix(OID, UPLOAD) == f"upload/{OID}_{UPLOAD}/"
    assert layout.state_prefix(OID, UPLOAD).startswith(layout.uploads_prefix(OID))


def test_a_marker_carries_its_part_in_its_name_and_parses_back() -> None:
    part = CompletedPart(partNumber=300, md5="d41d8cd98f00b204e9800998ecf8427e", etag='"abc"')
    key = layout.marker_key(OID, UPLOAD, part)
    assert key.startswith(layout.marker_prefix(OID, UPLOAD, 300)) and "part-0000012c|" in key
    assert layout.parse_marker(key) == part
    assert layout.parse_marker(layout.state_prefix(OID, UPLOAD) + ".meta") is None
    assert layout.parse_marker(layout.state_prefix(OID, UPLOAD) + "part-00000001|{not json") is None


def test_state_keys_parse_into_object_upload_and_name() -> None:
    for name in (".meta", layout.COMMITTED, "part-00000001|{}"):
        state = layout.parse_state_key(layout.state_prefix(OID, UPLOAD) + name)
        assert state is not None and (state.object_id, state.upload_id, state.name) == (OID, UPLOAD, name)
        assert state.folder == f"{OID}_{UPLOAD}"
    for other in (layout.data_key(OID), f"upload/{OID}/x", f"upload/{OID}_{UPLOAD}/", "upload/_x/y"):
        assert layout.parse_state_key(other) is None, other


def test_an_upload_id_with_underscores_stays_whole() -> None:
    seaweed = "a83c4c97eaa2d87e6d68569af23df4cf1c0d9f21_ae650ee5cf1c4e1195ae4ab311202ac8"  # SeaweedFS's form
    key = layout.state_prefix(OID, seaweed) + ".meta"
    for state in (layout.parse_state_key(key), layout.parse_state_key(key, OID)):
        assert state is not None and (state.object_id, state.upload_id) == (OID, seaweed)
    assert layout.parse_state_key(key, "56f3cb04") is None  # another object's (a prefix of this id)


def test_data_keys_name_their_object() -> None:
    assert layout.data_name(layout.data_key(OID)) == OID
    assert layout.data_name(layout.meta_key(OID)) is None
    assert layout.data_name(f"data/{OID}/deeper") is None
    assert layout.object_id_of(layout.meta_key(OID)) == layout.object_id_of(layout.state_prefix(OID, UPLOAD) + ".meta")


def test_data_entries_pair_bytes_with_their_meta_in_key_order() -> None:
    from score.server.storage.base import ObjectHead
    from score.server.storage.layout import DataEntry, data_entries

    keys = ["data/a", "data/a-copy", "data/a.meta", "data/b", "data/c.meta", "data/d/deeper", "data/e"]
    heads = [ObjectHead(k, n, 0) for n, k in enumerate(keys)]
    by = {h.key: h for h in heads}
    assert list(data_entries(heads)) == [
        DataEntry("a-copy", by["data/a-copy"], has_meta=False),
        DataEntry("a", by["data/a"], has_meta=True),
        DataEntry("b", by["data/b"], has_meta=False),
        DataEntry("c", None, has_meta=True),
        DataEntry("e", by["data/e"], has_meta=False),
    ]
