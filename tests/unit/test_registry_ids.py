"""Registry ids must equal Song's, so analyses and objects can move between Song and the embedded registry."""

from __future__ import annotations

import uuid

import pytest

from score.server.metadata.registry import (
    SAMPLE_ID_IS_CORRUPTED,
    SONG_ID_NAMESPACE,
    RegistryError,
    object_id_for,
    parse_submission,
    song_id,
)

# Pinned from Song itself (overture-stack/SONG @ 434ddf2e), not recomputed with this code:
# song-server/src/test/java/bio/overture/song/server/service/id/LocalIdServiceTest.java lines 35-37 and
# twoParamTest (lines 73-88) assert these ids for getFileId/getDonorId/getSpecimenId/getSampleId, built by
# LocalIdService.generateId (LocalIdService.java lines 37, 74-76: COLON.join(keys)) with
# IdConfig.createNameBasedGenerator (IdConfig.java lines 52-53, 82-84: JUG name-based generator, namespace
# 6ba7b812-9dad-11d1-80b4-00c04fd430c8, SHA-1, i.e. UUIDv5).
SONG_PINNED = [
    (("parameter1_1", "parameter2_1"), "8540ebac-66f2-553a-b865-0d3006edd892"),
    (("parameter1_1", "parameter2_2"), "57f844eb-4ab4-5d3d-8dc1-8b7a463e20c1"),
    (("parameter1_2", "parameter2_1"), "b4f5aea1-1f4c-5e12-8557-76dbadb26239"),
]


def test_namespace_is_songs() -> None:
    assert str(SONG_ID_NAMESPACE) == "6ba7b812-9dad-11d1-80b4-00c04fd430c8"


@pytest.mark.parametrize(("keys", "expected"), SONG_PINNED)
def test_ids_match_song_local_id_service(keys: tuple[str, str], expected: str) -> None:
    assert song_id(*keys) == expected
    # getFileId(analysisId, fileName) is the same derivation, so object ids match too.
    assert object_id_for(*keys) == expected
    assert uuid.UUID(expected).version == 5


def _payload(samples: list[dict]) -> dict:
    return {
        "studyId": "S1",
        "analysisType": {"name": "t"},
        "files": [
            {
                "fileName": "a.bam",
                "fileSize": 1,
                "fileMd5sum": "0cc175b9c0f1b6a831c399e269772661",
                "fileType": "BAM",
                "fileAccess": "controlled",
                "dataType": "d",
            }
        ],
        "samples": samples,
    }


def test_sample_specimen_donor_ids_are_songs() -> None:
    sample = {
        "submitterSampleId": "SA1",
        "specimen": {"submitterSpecimenId": "SP1"},
        "donor": {"submitterDonorId": "D1"},
    }
    [out] = parse_submission("S1", _payload([sample])).data["samples"]
    # Song: getSampleId/getSpecimenId/getDonorId(studyId, submitterXId) -> uuid5(ns, "studyId:submitterXId")
    sample_id, specimen_id, donor_id = song_id("S1", "SA1"), song_id("S1", "SP1"), song_id("S1", "D1")
    assert sample_id == str(uuid.uuid5(SONG_ID_NAMESPACE, "S1:SA1"))
    assert out["sampleId"] == sample_id and out["specimenId"] == specimen_id
    assert out["specimen"] == {"submitterSpecimenId": "SP1", "specimenId": specimen_id, "donorId": donor_id}
    assert out["donor"] == {"submitterDonorId": "D1", "donorId": donor_id, "studyId": "S1"}


def test_matching_input_id_is_accepted_and_wrong_one_refused() -> None:
    good = {"submitterSampleId": "SA1", "sampleId": song_id("S1", "SA1")}
    assert parse_submission("S1", _payload([good])).data["samples"] == [good]
    with pytest.raises(RegistryError) as err:
        parse_submission("S1", _payload([{"submitterSampleId": "SA1", "sampleId": "not-it"}]))
    assert err.value.code == SAMPLE_ID_IS_CORRUPTED
