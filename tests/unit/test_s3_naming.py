"""S3 bucket naming and key routing (reference §3.2, §3.3): pure functions, no store needed."""

from __future__ import annotations

import pytest

from score.server.storage.layout import is_data_blob, object_id_of
from score.server.storage.s3 import (
    BucketRouter,
    md5_from_head,
    partition_bucket,
    partition_buckets,
    partition_index,
    range_header,
)

OBJECT_ID = "56f3cb04-4b6f-5a2e-9e1c-0123456789ab"


@pytest.mark.parametrize(
    ("key_chars", "pool", "suffix"),
    [(1, 2, ".1"), (1, 20, ".5"), (2, 10, ".6"), (2, 100, ".86"), (3, 2000, ".1391"), (7, 10, ".2")],
)
def test_partition_names_match_the_reference_examples(key_chars: int, pool: int, suffix: str) -> None:
    assert partition_bucket("oicr.icgc", OBJECT_ID, key_chars, pool) == "oicr.icgc" + suffix


def test_partition_index_has_no_zero_padding_and_uses_the_last_path_segment() -> None:
    assert partition_bucket("b", "06" + OBJECT_ID[2:], 2, 100) == "b.6"
    assert partition_index("data/" + OBJECT_ID, 2, 10) == 6
    assert partition_index(OBJECT_ID.upper(), 2, 100) == 86


def test_no_partitioning_keeps_the_base_bucket() -> None:
    assert partition_bucket("score.data", OBJECT_ID, 2, 0) == "score.data"
    assert partition_buckets("score.data", 0) == []
    assert partition_buckets("score.data", 3) == ["score.data.0", "score.data.1", "score.data.2"]


@pytest.mark.parametrize("bad", ["heliograph", "0x", "+5f", "5_6f", "5", ""])
def test_ids_whose_leading_characters_are_not_hex_cannot_be_partitioned(bad: str) -> None:
    with pytest.raises(ValueError, match="cannot be partitioned"):
        partition_index(bad, 2, 10)


def test_object_id_of_every_score_key() -> None:
    assert object_id_of(f"data/{OBJECT_ID}") == OBJECT_ID
    assert object_id_of(f"data/{OBJECT_ID}.meta") == OBJECT_ID
    assert object_id_of(f"upload/{OBJECT_ID}_2~lB3_sfTm/.meta") == OBJECT_ID
    marker = f'upload/{OBJECT_ID}_abc/part-0000000b|{{"partNumber":11,"md5":"x","etag":"y"}}'
    assert object_id_of(marker) == OBJECT_ID
    assert object_id_of("data/") is None
    assert object_id_of("other/thing") is None
    assert is_data_blob(f"data/{OBJECT_ID}")
    assert not is_data_blob(f"data/{OBJECT_ID}.meta")
    assert not is_data_blob(f"upload/{OBJECT_ID}_u/.meta")


def test_unpartitioned_routing_splits_blobs_from_state() -> None:
    router = BucketRouter("objects", "state", pool=0, key_chars=2)
    assert router.write_bucket(f"data/{OBJECT_ID}") == "objects"
    assert router.write_bucket(f"data/{OBJECT_ID}.meta") == "state"
    assert router.write_bucket(f"upload/{OBJECT_ID}_u/.meta") == "state"
    assert router.read_buckets(f"data/{OBJECT_ID}.meta") == ["state"]
    assert router.write_bucket("data/heliograph") == "objects"
    assert router.list_buckets("data/") == ["objects", "state"]
    assert router.list_buckets("upload/") == ["state"]


def test_state_bucket_defaults_to_the_object_bucket() -> None:
    router = BucketRouter("score.data", None, pool=0, key_chars=2)
    assert router.write_bucket(f"data/{OBJECT_ID}.meta") == "score.data"
    assert router.list_buckets("") == ["score.data"]


def test_partitioned_routing_writes_to_the_partition_and_reads_fall_back_to_the_base() -> None:
    router = BucketRouter("objects", "state", pool=10, key_chars=2)
    assert router.write_bucket(f"data/{OBJECT_ID}") == "objects.6"
    assert router.write_bucket(f"data/{OBJECT_ID}.meta") == "state.6"
    assert router.write_bucket(f"upload/{OBJECT_ID}_u/part-00000001|{{}}") == "state.6"
    assert router.read_buckets(f"data/{OBJECT_ID}") == ["objects.6", "objects"]
    assert router.read_buckets(f"data/{OBJECT_ID}.meta") == ["state.6", "state"]
    assert router.read_buckets(f"upload/{OBJECT_ID}_u/.meta") == ["state.6"]  # never relocated


def test_the_sentinel_and_unpartitionable_ids_live_in_the_base_object_bucket() -> None:
    router = BucketRouter("objects", "state", pool=10, key_chars=2)
    assert router.write_bucket("data/heliograph") == "objects"
    assert router.read_buckets("data/heliograph") == ["objects"]
    router.sentinel_key = "data/abcdef"  # a hex-looking sentinel name is still not partitioned
    assert router.read_buckets("data/abcdef") == ["objects"]
    assert router.write_bucket("data/zz-sample.meta") == "state"


def test_partitioned_listing_covers_every_bucket_unless_the_prefix_fixes_the_partition() -> None:
    router = BucketRouter("b", None, pool=3, key_chars=2)
    assert router.list_buckets("data/") == ["b.0", "b.1", "b.2", "b"]
    assert router.list_buckets("") == ["b.0", "b.1", "b.2", "b"]
    assert router.list_buckets("data/5") == ["b.0", "b.1", "b.2", "b"]  # one hex digit does not decide it
    assert router.list_buckets(f"data/{OBJECT_ID}") == ["b.2", "b"]  # 0x56 % 3 = 2; base for relocated
    assert router.list_buckets(f"upload/{OBJECT_ID}_") == ["b.2"]
    two = BucketRouter("o", "s", pool=2, key_chars=1)
    assert two.list_buckets("upload/") == ["s.0", "s.1", "s"]
    assert two.list_buckets("data/") == ["o.0", "o.1", "s.0", "s.1", "o", "s"]


def test_md5_from_head_prefers_content_md5_then_the_custom_property() -> None:
    hex_md5 = "5d41402abc4b2a76b9719d911017c592"  # md5("hello")
    b64_md5 = "XUFAKrxLKna5cZ2REBfFkg=="
    assert md5_from_head({"Content-MD5": b64_md5}, {}, "md5chksum") == hex_md5
    assert md5_from_head({}, {"md5chksum": b64_md5}, "md5chksum") == hex_md5
    assert md5_from_head({}, {"MD5CHKSUM": hex_md5.upper()}, "md5chksum") == hex_md5
    assert md5_from_head({"content-md5": "garbage"}, {"md5chksum": b64_md5}, "md5chksum") == hex_md5
    assert md5_from_head({}, {"other": b64_md5}, "md5chksum") is None
    assert md5_from_head({}, {}, "md5chksum") is None


def test_range_header_is_the_exact_value_clients_send() -> None:
    assert range_header(None, None) is None
    assert range_header(0, 10) == "bytes=0-9"
    assert range_header(100, 1) == "bytes=100-100"
    assert range_header(5, None) == "bytes=5-"
    assert range_header(5, -1) == "bytes=5-"
    with pytest.raises(ValueError):
        range_header(0, 0)
    with pytest.raises(ValueError):
        range_header(-1, 5)
