"""The rest of Song 5.x's API on the embedded registry, as Song's own clients call it (issue 15, item 7).

Every expectation is transcribed from Song (overture-stack/SONG, read at HEAD of the mirror; paths below are
under song-server/src/main/java/bio/overture/song/server/ unless they name song-core):

* analysis types: controller/analysisType/AnalysisTypeController.java (GET/POST /schemas, GET
  /schemas/{name}?version=&unrenderedOnly=), AnalysisTypePageableResolver.java (limit 20, offset 0, sort by
  version DESC), service/AnalysisTypeService.java (version = count of registrations of the name, the
  ANALYSIS_TYPE_NOT_FOUND / ILLEGAL_ANALYSIS_TYPE_NAME / MALFORMED_PARAMETER messages, rendering into
  resources/schemas/analysis/analysisBase.json), song-core model/AnalysisType.java and PageDTO.java (shapes);
* submit validation: service/ValidationService.java (``validate``: type resolved, latest when no version,
  fileTypes option, schema -> SCHEMA_VIOLATION via SubmitService.validatePayload);
* updates: controller/AnalysisController.java (PUT/PATCH /{analysisId}, void), service/analysis/
  AnalysisServiceImpl.java (updateAnalysis, patchUpdateAnalysis, resources/schemas/analysis/analysisUpdate.json);
  controller/FileController.java (PUT/DELETE /files/{id}), service/FileModificationService.java
  (CONTENT_UPDATE only while UNPUBLISHED: ILLEGAL_FILE_UPDATE_REQUEST; messages), song-core
  model/FileUpdateResponse.java, model/enums/FileUpdateTypes.java, resources/schemas/fileUpdateRequest.json;
* reads: AnalysisController.java (/paginated -> service/analysis/GetAnalysisResponse.java; /search/id),
  controller/StudyController.java (/{studyId}/all -> model/entity/composites/StudyWithDonors.java),
  controller/ExportController.java + service/ExportService.java + song-core model/ExportedPayload.java;
* messages: model/dto/GenericMessage.java, StudyService.saveStudy ("Successfully created study '%s'");
* errors: song-core exceptions/ServerErrors.java (ids) and exceptions/SongError.java (fields).
"""

from __future__ import annotations

import copy
import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from score.server.metadata.base import PUBLISHED, UNPUBLISHED
from score.server.metadata.registry import Registry, object_id_for, song_id
from tests.integration.test_registry_api import (  # noqa: F401  (srv is a fixture)
    MD5_A,
    MD5_B,
    Server,
    assert_song_error,
    create_study,
    srv,
)

TYPE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["experiment"],
    "properties": {
        "experiment": {
            "type": "object",
            "required": ["platform"],
            "properties": {"platform": {"type": "string"}, "runs": {"type": "integer"}},
        }
    },
}
SAMPLE = {
    "submitterSampleId": "SA1",
    "sampleType": "Total DNA",
    "matchedNormalSubmitterSampleId": None,
    "specimen": {
        "submitterSpecimenId": "SP1",
        "specimenTissueSource": "Solid tissue",
        "tumourNormalDesignation": "Normal",
        "specimenType": "Normal",
    },
    "donor": {"submitterDonorId": "D1", "gender": "Female"},
}


def song_payload(study: str = "S1", *, version: int | None = None, name: str = "variantCall", **extra: Any) -> dict:
    """A payload valid against Song's analysisBase.json rendered with TYPE_SCHEMA."""
    analysis_type: dict[str, Any] = {"name": name}
    if version is not None:
        analysis_type["version"] = version
    return {
        "studyId": study,
        "analysisType": analysis_type,
        "samples": [copy.deepcopy(SAMPLE)],
        "files": [
            {
                "fileName": "a.vcf.gz",
                "fileSize": 1,
                "fileMd5sum": MD5_A,
                "fileType": "VCF",
                "fileAccess": "open",
                "dataType": "Variants",
            }
        ],
        "experiment": {"platform": "ILLUMINA"},
        **extra,
    }


def register(s: Server, name: str = "variantCall", schema: Any = None, **extra: Any) -> httpx.Response:
    body = {"name": name, "schema": TYPE_SCHEMA if schema is None else schema, **extra}
    return s.client.post("/song/schemas", json=body, headers=s.admin)


def submit_ok(s: Server, body: dict, study: str = "S1") -> str:
    r = s.client.post(f"/song/submit/{study}", json=body, headers=s.admin)
    assert r.status_code == 200, r.text
    return r.json()["analysisId"]


@pytest.fixture
def typed(srv: Server) -> Server:  # noqa: F811
    """A registry with study S1 and analysis type variantCall version 1 registered (so types are enforced)."""
    create_study(srv, "S1")
    assert register(srv).status_code == 200
    return srv


# ---- /schemas ------------------------------------------------------------------------------------


def test_register_answers_the_stored_type_and_each_registration_is_a_new_version(srv: Server) -> None:  # noqa: F811
    r = register(srv)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    first = r.json()
    # AnalysisType: name, version, createdAt, options (the request's: null here), schema (rendered)
    assert set(first) == {"name", "version", "createdAt", "options", "schema"}
    assert (first["name"], first["version"], first["options"]) == ("variantCall", 1, None)
    # renderPayloadJsonSchema: the type's properties and required merged into analysisBase.json
    assert first["schema"]["properties"]["experiment"] == TYPE_SCHEMA["properties"]["experiment"]
    assert {"studyId", "analysisType", "samples", "files"} <= set(first["schema"]["properties"])
    assert first["schema"]["required"] == ["studyId", "analysisType", "samples", "files", "experiment"]

    second = register(srv, options={"fileTypes": ["VCF"]}).json()
    assert (second["version"], second["options"]) == (2, {"fileTypes": ["VCF"]})
    assert register(srv, name="other").json()["version"] == 1

    latest = srv.client.get("/song/schemas/variantCall").json()
    assert (latest["name"], latest["version"], latest["options"]) == ("variantCall", 2, None)
    assert srv.client.get("/song/schemas/variantCall", params={"version": 1}).json()["version"] == 1
    raw = srv.client.get("/song/schemas/variantCall", params={"unrenderedOnly": "true"}).json()
    assert raw["schema"] == TYPE_SCHEMA


def test_list_is_songs_page_dto_newest_version_first(srv: Server) -> None:  # noqa: F811
    for name in ("variantCall", "variantCall", "seqRead"):
        assert register(srv, name=name).status_code == 200
    page = srv.client.get("/song/schemas").json()
    assert set(page) == {"limit", "offset", "count", "resultSet"}
    assert (page["limit"], page["offset"], page["count"]) == (20, 0, 3)
    # default sort: version (id) DESC
    assert [(t["name"], t["version"]) for t in page["resultSet"]] == [
        ("seqRead", 1),
        ("variantCall", 2),
        ("variantCall", 1),
    ]
    assert page["resultSet"][0]["options"] == {"fileTypes": []}  # convertToAnalysisType always sets options

    only = srv.client.get("/song/schemas", params={"names": "variantCall", "versions": "2", "hideSchema": "true"})
    assert only.json()["count"] == 1
    (hidden,) = only.json()["resultSet"]
    assert (hidden["name"], hidden["version"]) == ("variantCall", 2)
    assert "schema" not in hidden  # @JsonInclude(NON_NULL) on AnalysisType.schema

    paged = srv.client.get("/song/schemas", params={"limit": 1, "offset": 1, "sortOrder": "asc"}).json()
    assert (paged["limit"], paged["offset"], paged["count"]) == (1, 1, 3)
    assert [(t["name"], t["version"]) for t in paged["resultSet"]] == [("variantCall", 2)]

    assert_song_error(srv.client.get("/song/schemas", params={"versions": "0"}), 400, "malformed.parameter")
    # found by the CI fuzzer: '¹' passes str.isdigit() and then fails int() (a 500 before)
    assert_song_error(srv.client.get("/song/schemas", params={"versions": "\u00b9"}), 400, "malformed.parameter")
    assert_song_error(srv.client.get("/song/schemas", params={"sort": "createdAt"}), 400, "malformed.parameter")
    assert_song_error(srv.client.get("/song/schemas", params={"limit": "x"}), 400, "malformed.parameter")


def test_unknown_types_and_bad_registrations_answer_songs_errors(srv: Server) -> None:  # noqa: F811
    assert_song_error(srv.client.get("/song/schemas/nope"), 404, "analysis.type.not.found", "'nope'")
    register(srv)
    assert_song_error(
        srv.client.get("/song/schemas/variantCall", params={"version": 9}),
        404,
        "analysis.type.not.found",
        "Version '9' of analysisType with name 'variantCall' does not exist",
    )
    assert_song_error(srv.client.get("/song/schemas/a%20b"), 400, "malformed.parameter", "regex")
    assert_song_error(register(srv, name="registration"), 400, "illegal.analysis.type.name")
    assert_song_error(register(srv, name="bad name"), 400, "malformed.parameter")
    # analysisTypeRegistration.json: an "experiment" object is required; no "files" property allowed
    assert_song_error(register(srv, schema={"type": "object", "properties": {}}), 400, "schema.violation")
    no_files = {**TYPE_SCHEMA, "properties": {**TYPE_SCHEMA["properties"], "files": {}}}
    assert_song_error(register(srv, schema=no_files), 400, "schema.violation")
    assert_song_error(srv.client.post("/song/schemas", json={"name": "x"}, headers=srv.admin), 400, "schema.violation")
    # the registration meta-schema itself is served at /schemas/registration
    meta = srv.client.get("/song/schemas/registration").json()
    assert meta["properties"]["properties"]["required"] == ["experiment"]


def test_registering_needs_the_system_scope(srv: Server) -> None:  # noqa: F811
    assert_song_error(srv.client.post("/song/schemas", json={"name": "t"}), 401, "unauthorized.token")
    r = srv.client.post("/song/schemas", json={"name": "t"}, headers=srv.token("PROGRAMDATA-S1.WRITE"))
    assert_song_error(r, 403, "forbidden.token", "song.WRITE")


# ---- submit against registered types -------------------------------------------------------------


def test_submit_stores_name_and_version_latest_when_omitted(typed: Server) -> None:
    aid = submit_ok(typed, song_payload())
    assert typed.client.get(f"/song/studies/S1/analysis/{aid}").json()["analysisType"] == {
        "name": "variantCall",
        "version": 1,
    }
    register(typed)
    latest = submit_ok(typed, song_payload())
    pinned = submit_ok(typed, song_payload(version=1))
    get = typed.client.get
    assert get(f"/song/studies/S1/analysis/{latest}").json()["analysisType"]["version"] == 2
    assert get(f"/song/studies/S1/analysis/{pinned}").json()["analysisType"]["version"] == 1


def test_submit_refuses_unregistered_types_versions_and_schema_violations(typed: Server) -> None:
    post = typed.client.post
    r = post("/song/submit/S1", json=song_payload(name="demo"), headers=typed.admin)
    assert_song_error(r, 404, "analysis.type.not.found", "'demo'")
    r = post("/song/submit/S1", json=song_payload(version=5), headers=typed.admin)
    assert_song_error(r, 404, "analysis.type.not.found", "Version '5'")
    no_experiment = song_payload()
    del no_experiment["experiment"]
    r = post("/song/submit/S1", json=no_experiment, headers=typed.admin)
    assert_song_error(r, 400, "schema.violation", "experiment")
    r = post("/song/submit/S1", json=song_payload(samples=[]), headers=typed.admin)  # analysisBase: minItems 1
    assert_song_error(r, 400, "schema.violation", "samples")


def test_file_types_option_limits_file_types(typed: Server) -> None:
    register(typed, options={"fileTypes": ["BAM"]})
    r = typed.client.post("/song/submit/S1", json=song_payload(), headers=typed.admin)
    assert_song_error(r, 400, "schema.violation", "a.vcf.gz name is not supported, supported formats are BAM")


def test_before_any_registration_every_type_name_is_accepted_as_before(srv: Server) -> None:  # noqa: F811
    create_study(srv, "S1")
    open_payload = {"studyId": "S1", "analysisType": {"name": "demo"}, "files": song_payload()["files"]}
    aid = submit_ok(srv, open_payload)
    assert srv.client.get(f"/song/studies/S1/analysis/{aid}").json()["analysisType"] == {"name": "demo"}
    register(srv)  # from now on types are enforced, as in Song
    r = srv.client.post("/song/submit/S1", json=open_payload, headers=srv.admin)
    assert_song_error(r, 404, "analysis.type.not.found")


def test_a_registry_made_before_analysis_types_opens_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "song.db"
    registry = Registry(path)
    registry.create_study("S1", {"name": "old"})
    aid = registry.submit("S1", {"studyId": "S1", "analysisType": "legacy", "files": song_payload()["files"]})
    del registry
    with sqlite3.connect(path) as db:  # what an older release's database looks like: no analysis_type
        db.execute("DROP TABLE analysis_type")  # (nor schema_version: versions came later still)
        db.execute("DROP TABLE schema_version")
    reopened = Registry(path)
    assert reopened.get_analysis("S1", aid)["analysisType"] == {"name": "legacy"}
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM analysis_type").fetchone() == (0,)
    assert reopened.submit("S1", {"studyId": "S1", "analysisType": "legacy", "files": song_payload()["files"]})


# ---- updates -------------------------------------------------------------------------------------


def test_put_analysis_replaces_the_dynamic_part_and_keeps_samples_and_files(typed: Server) -> None:
    aid = submit_ok(typed, song_payload(note="old"))
    before = typed.client.get(f"/song/studies/S1/analysis/{aid}").json()
    register(typed)
    update = {"analysisType": {"name": "variantCall", "version": 2}, "experiment": {"platform": "NANOPORE"}}
    r = typed.client.put(f"/song/studies/S1/analysis/{aid}", json=update, headers=typed.admin)
    assert (r.status_code, r.content) == (200, b"")  # void in AnalysisController.updateAnalysis
    after = typed.client.get(f"/song/studies/S1/analysis/{aid}").json()
    assert after["experiment"] == {"platform": "NANOPORE"}
    assert "note" not in after  # replaced, not merged
    assert after["analysisType"] == {"name": "variantCall", "version": 2}
    assert after["samples"] == before["samples"] and after["files"] == before["files"]
    assert after["updatedAt"] >= before["updatedAt"]

    put = typed.client.put
    bad = {"analysisType": {"name": "variantCall"}, "experiment": {}}  # platform required
    assert_song_error(put(f"/song/studies/S1/analysis/{aid}", json=bad, headers=typed.admin), 400, "schema.violation")
    with_files = {**update, "files": []}  # analysisUpdate.json: "files": {"not": {}}
    r = put(f"/song/studies/S1/analysis/{aid}", json=with_files, headers=typed.admin)
    assert_song_error(r, 400, "schema.violation")
    r = put(f"/song/studies/S1/analysis/{aid}", json={"experiment": {}}, headers=typed.admin)
    assert_song_error(r, 400, "malformed.parameter", "analysisType")
    r = put("/song/studies/S1/analysis/nope", json=update, headers=typed.admin)
    assert_song_error(r, 404, "analysis.id.not.found")
    assert_song_error(put(f"/song/studies/S1/analysis/{aid}", json=update), 401, "unauthorized.token")


def test_patch_analysis_merges_into_the_dynamic_part(typed: Server) -> None:
    aid = submit_ok(typed, song_payload(note="keep", extra={"a": 1, "b": 2}))
    patch = {"experiment": {"runs": 3}, "extra": {"a": None}}
    r = typed.client.patch(f"/song/studies/S1/analysis/{aid}", json=patch, headers=typed.admin)
    assert (r.status_code, r.content) == (200, b"")
    after = typed.client.get(f"/song/studies/S1/analysis/{aid}").json()
    assert after["experiment"] == {"platform": "ILLUMINA", "runs": 3}
    assert after["extra"] == {"b": 2} and after["note"] == "keep"
    r = typed.client.patch(f"/song/studies/S1/analysis/{aid}", json={"experiment": {"runs": "x"}}, headers=typed.admin)
    assert_song_error(r, 400, "schema.violation", "runs")


def _file(s: Server, aid: str) -> dict:
    return s.client.get(f"/song/studies/S1/analysis/{aid}/files").json()[0]


def test_update_file_answers_file_update_response_and_guards_published_content(typed: Server) -> None:
    aid = submit_ok(typed, song_payload())
    original = _file(typed, aid)
    oid = original["objectId"]
    assert oid == object_id_for(aid, "a.vcf.gz")
    url = f"/song/studies/S1/files/{oid}"

    r = typed.client.put(url, json={"fileMd5sum": MD5_B, "fileSize": 7}, headers=typed.admin)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {
        "fileUpdateType": "CONTENT_UPDATE",
        "originalAnalysisState": UNPUBLISHED,
        "unpublishedAnalysis": False,
        "message": f"Updated file with objectId '{oid}' and analysisId '{aid}'",
        "originalFile": original,
    }
    assert (_file(typed, aid)["fileMd5sum"], _file(typed, aid)["fileSize"]) == (MD5_B, 7)
    assert typed.client.get(url).json()["fileMd5sum"] == MD5_B  # GET /studies/{studyId}/files/{id}

    r = typed.client.put(url, json={"fileMd5sum": MD5_B}, headers=typed.admin)
    assert (r.json()["fileUpdateType"], r.json()["message"]) == (
        "NO_UPDATE",
        f"No update for file with objectId '{oid}' and analysisId '{aid}'",
    )

    typed.catalog.store(oid, 7, MD5_B)
    assert typed.client.put(f"/song/studies/S1/analysis/publish/{aid}", headers=typed.admin).status_code == 200
    r = typed.client.put(url, json={"fileAccess": "controlled", "info": {"k": 1}}, headers=typed.admin)
    assert (r.json()["fileUpdateType"], r.json()["originalAnalysisState"]) == ("METADATA_UPDATE", PUBLISHED)
    assert typed.registry.analysis_state("S1", aid) == PUBLISHED
    assert _file(typed, aid)["info"] == {"k": 1}
    # FileModificationService.updateWithRequest: content changes need UNPUBLISHED
    r = typed.client.put(url, json={"fileMd5sum": MD5_A}, headers=typed.admin)
    assert_song_error(r, 400, "illegal.file.update.request", "'PUBLISHED' and 'UNPUBLISHED' is required")
    assert typed.registry.analysis_state("S1", aid) == PUBLISHED

    r = typed.client.put(url, json={"fileSize": 0}, headers=typed.admin)  # exclusiveMinimum 0
    assert_song_error(r, 400, "invalid.file.update.request")
    r = typed.client.put(url, json={"fileMd5sum": "x"}, headers=typed.admin)
    assert_song_error(r, 400, "invalid.file.update.request")
    missing = song_id("nope")
    r = typed.client.put(f"/song/studies/S1/files/{missing}", json={"fileSize": 1}, headers=typed.admin)
    assert_song_error(r, 404, "file.not.found")


def test_delete_files_answers_ok(typed: Server) -> None:
    aid = submit_ok(typed, song_payload())
    oid = _file(typed, aid)["objectId"]
    r = typed.client.delete(f"/song/studies/S1/files/{oid}", headers=typed.admin)
    assert (r.status_code, r.text) == (200, "OK")
    assert_song_error(typed.client.get(f"/song/studies/S1/files/{oid}"), 404, "file.not.found")
    assert_song_error(typed.client.delete(f"/song/studies/S1/files/{oid}", headers=typed.admin), 404, "file.not.found")


# ---- reads ---------------------------------------------------------------------------------------


def test_paginated_listing_is_not_an_analysis_id(typed: Server) -> None:
    ids = sorted(submit_ok(typed, song_payload()) for _ in range(3))
    url = "/song/studies/S1/analysis/paginated"
    r = typed.client.get(url, params={"analysisStates": "UNPUBLISHED", "limit": 2, "offset": 1})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"analyses", "totalAnalyses", "currentTotalAnalyses"}
    assert (body["totalAnalyses"], body["currentTotalAnalyses"]) == (3, 2)
    assert [a["analysisId"] for a in body["analyses"]] == ids[1:]  # sorted by analysis id
    assert typed.client.get(url).json() == {"analyses": [], "totalAnalyses": 0, "currentTotalAnalyses": 0}
    assert_song_error(typed.client.get(url, params={"analysisStates": "NOPE"}), 400, "malformed.parameter")
    assert_song_error(typed.client.get("/song/studies/S9/analysis/paginated"), 404, "study.id.does.not.exist")


def test_search_by_id_matches_samples_donors_and_files(typed: Server) -> None:
    aid = submit_ok(typed, song_payload())
    analysis = typed.client.get(f"/song/studies/S1/analysis/{aid}").json()
    sample = analysis["samples"][0]
    url = "/song/studies/S1/analysis/search/id"
    for params in (
        {"sampleId": sample["sampleId"]},
        {"donorId": sample["donor"]["donorId"]},
        {"specimenId": sample["specimen"]["specimenId"]},
        {"fileId": analysis["files"][0]["objectId"]},
        {"submitterSampleId": "SA1", "submitterDonorId": "D1"},
    ):
        r = typed.client.get(url, params=params)
        assert r.status_code == 200, r.text
        assert [a["analysisId"] for a in r.json()] == [aid], params
    assert typed.client.get(url, params={"donorId": "nobody"}).json() == []
    r = typed.client.post(url, json={"submitterDonorIds": "D1"})
    assert [a["analysisId"] for a in r.json()] == [aid]
    assert_song_error(typed.client.get("/song/studies/S9/analysis/search/id"), 404, "study.id.does.not.exist")


def test_entire_study_is_the_donor_specimen_sample_tree(typed: Server) -> None:
    submit_ok(typed, song_payload())
    tree = typed.client.get("/song/studies/S1/all").json()
    donor_id, specimen_id, sample_id = song_id("S1", "D1"), song_id("S1", "SP1"), song_id("S1", "SA1")
    assert tree["studyId"] == "S1" and tree["name"] == "Study one"
    (donor,) = tree["donors"]
    assert (donor["donorId"], donor["submitterDonorId"], donor["gender"]) == (donor_id, "D1", "Female")
    (specimen,) = donor["specimens"]
    assert (specimen["specimenId"], specimen["donorId"], specimen["specimenType"]) == (specimen_id, donor_id, "Normal")
    (sample,) = specimen["samples"]
    assert (sample["sampleId"], sample["specimenId"], sample["sampleType"]) == (sample_id, specimen_id, "Total DNA")
    assert_song_error(typed.client.get("/song/studies/S9/all"), 404, "study.id.does.not.exist")


def test_export_answers_resubmittable_payloads_grouped_by_study(typed: Server) -> None:
    create_study(typed, "S2")
    a1 = submit_ok(typed, song_payload(note="one"))
    a2 = submit_ok(typed, song_payload("S2"), study="S2")

    (exported,) = typed.client.get("/song/export/studies/S1").json()
    assert set(exported) == {"studyId", "payloads"} and exported["studyId"] == "S1"
    (payload,) = exported["payloads"]
    assert payload["analysisType"] == {"name": "variantCall", "version": 1}
    assert payload["note"] == "one" and payload["experiment"] == {"platform": "ILLUMINA"}
    for gone in ("analysisId", "analysisState", "createdAt", "analysisStateHistory"):
        assert gone not in payload
    assert "objectId" not in payload["files"][0] and "sampleId" not in payload["samples"][0]
    assert "donorId" not in payload["samples"][0]["donor"]
    # ExportService's PayloadNonEmptyMixin drops empty values, the null matchedNormalSubmitterSampleId too, which
    # analysisBase.json requires: as with Song, it must be put back before the payload submits again.
    assert "matchedNormalSubmitterSampleId" not in payload["samples"][0]
    payload["samples"][0]["matchedNormalSubmitterSampleId"] = None
    submit_ok(typed, payload)

    by_ids = typed.client.get(f"/song/export/analysis/{a1},{a2}").json()
    assert [(e["studyId"], len(e["payloads"])) for e in by_ids] == [("S1", 1), ("S2", 1)]
    assert_song_error(typed.client.get("/song/export/analysis/nope"), 404, "analysis.id.not.found")
    for empty_id in (",", f"{a1},,{a2}"):  # the documented pattern names every id (found by the CI fuzzer)
        assert_song_error(typed.client.get(f"/song/export/analysis/{empty_id}"), 400, "malformed.parameter")
    assert_song_error(typed.client.get("/song/export/studies/S9"), 404, "study.id.does.not.exist")


# ---- messages and errors -------------------------------------------------------------------------


def test_unknown_routes_and_methods_answer_song_errors(srv: Server) -> None:  # noqa: F811
    body = assert_song_error(srv.client.get("/song/no/such/route"), 404, "id.not.found")
    assert body["httpStatusName"] == "NOT_FOUND" and isinstance(body["stackTrace"], list)
    r = srv.client.delete("/song/studies/S1/analysis/x/files")
    assert_song_error(r, 405, "not.implemented.yet")
    assert r.headers["allow"] == "GET"
    # The SDK's SongError.is_song_error: every one of these fields must be present
    for field in ("errorId", "httpStatusName", "httpStatusCode", "message", "requestUrl", "debugMessage"):
        assert field in json.loads(r.content)


def test_create_study_and_state_changes_answer_generic_message_json(srv: Server) -> None:  # noqa: F811
    r = srv.client.post("/song/studies/S7/", json={"studyId": "S7"}, headers=srv.admin)
    assert (r.status_code, r.headers["content-type"]) == (200, "application/json")
    assert r.json() == {"message": "Successfully created study 'S7'"}
