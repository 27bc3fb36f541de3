"""JSON contract tests: field names and shapes of Score's wire model (reference §1)."""

from __future__ import annotations

import json
from pathlib import Path

from score.core import md5
from score.core.models import CompletedPart, ObjectInfo, ObjectSpecification, Part, UploadProgress

FIXTURES = Path(__file__).parent.parent / "fixtures"


def test_part_fields_in_order_and_source_md5_omitted_when_null() -> None:
    part = Part(partNumber=1, partSize=10, offset=0, url="http://x/y")
    assert list(part.to_wire()) == ["partNumber", "partSize", "offset", "url", "md5"]
    assert part.to_wire()["md5"] is None  # null values are emitted ...
    with_source = Part(partNumber=2, partSize=5, offset=10, sourceMd5="ab" * 16).to_wire()
    assert with_source["sourceMd5"] == "ab" * 16  # ... except sourceMd5, omitted when null


def test_object_specification_shape() -> None:
    spec = ObjectSpecification(
        objectKey="data/x",
        objectId="x",
        uploadId="u",
        objectSize=10,
        objectMd5=None,
        parts=[Part(partNumber=1, partSize=10, offset=0)],
    )
    wire = spec.to_wire()
    assert list(wire) == ["objectKey", "objectId", "uploadId", "parts", "objectSize", "objectMd5"]
    assert wire["objectMd5"] is None
    assert wire["parts"][0] == {"partNumber": 1, "partSize": 10, "offset": 0, "url": None, "md5": None}
    assert ObjectSpecification.model_validate_json(json.dumps(wire)) == spec


def test_upload_progress_object_info_completed_part_shapes() -> None:
    progress = UploadProgress(objectId="o", uploadId="u", parts=[Part(partNumber=1, partSize=1, offset=0)])
    assert list(progress.to_wire()) == ["objectId", "uploadId", "parts"]
    assert ObjectInfo(id="i", lastModified=1, size=2).to_wire() == {"id": "i", "lastModified": 1, "size": 2}
    marker = CompletedPart(partNumber=17, md5="a" * 32, etag="b" * 32)
    assert json.dumps(marker.to_wire(), separators=(",", ":")) == (
        '{"partNumber":17,"md5":"' + "a" * 32 + '","etag":"' + "b" * 32 + '"}'
    )


def test_legacy_meta_is_read() -> None:
    spec = ObjectSpecification.model_validate_json((FIXTURES / "legacy.meta").read_text())
    assert spec.objectMd5 is None  # absent in legacy documents
    assert spec.objectSize == 22020096
    assert [p.partNumber for p in spec.parts] == [1, 2]
    assert spec.parts[0].sourceMd5 == md5.MISSING and not md5.known(spec.parts[0].sourceMd5)
    assert md5.known(spec.parts[1].sourceMd5)
    assert "relocated" not in spec.to_wire()  # ignored on read, never written


def test_md5_conversions_match_score_pairs() -> None:
    assert md5.hex_to_base64("2bdf4f6127a6971262c023a492e6fb27") == "K99PYSemlxJiwCOkkub7Jw=="
    assert md5.base64_to_hex("zr3Wr5sSkz2iYfBGSs/YCA==") == "cebdd6af9b12933da261f0464acfd808"
    assert md5.base64_to_hex("iC9XnDziOQvKwyeOSUfKIg==") == "882f579c3ce2390bcac3278e4947ca22"
    assert md5.equal("2BDF4F6127A6971262C023A492E6FB27", "K99PYSemlxJiwCOkkub7Jw==")
    assert not md5.equal("2bdf4f6127a6971262c023a492e6fb27", "cebdd6af9b12933da261f0464acfd808")
    assert not md5.equal(None, None)
    assert not md5.is_hex("K99PYSemlxJiwCOkkub7Jw==") and not md5.is_base64("2bdf4f6127a6971262c023a492e6fb27")
