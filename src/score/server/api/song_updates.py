"""Song's update routes: an analysis' own data (PUT, PATCH) and its files (PUT, DELETE).

Transcribed from SONG ``AnalysisController.java`` (``updateAnalysis``, ``patchUpdateAnalysis``: ``void``, so
200 with an empty body) and ``FileController.java`` (``update``: a ``FileUpdateResponse``; ``delete``: the
text ``OK``). Every one needs the study's write permission (Song's ``studySecurity``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from score.server.api.deps import authorize
from score.server.api.openapi import (
    EXAMPLE_ANALYSIS_ID,
    EXAMPLE_OBJECT_ID,
    EXAMPLE_STUDY,
    ID_LIST_MARK,
    REGISTRY_SCOPES,
    SongAnalysisPatch,
    SongAnalysisUpdate,
    SongFileUpdate,
    json_body,
    json_examples,
    song_errors,
    token_required,
)
from score.server.api.song_common import id_list, json_body_of, registry_of
from score.server.auth.policy import Action

_FILE_UPDATE_EXAMPLE = {
    "fileUpdateType": "CONTENT_UPDATE",
    "originalAnalysisState": "UNPUBLISHED",
    "unpublishedAnalysis": False,
    "message": f"Updated file with objectId '{EXAMPLE_OBJECT_ID}' and analysisId '{EXAMPLE_ANALYSIS_ID}'",
    "originalFile": {
        "objectId": EXAMPLE_OBJECT_ID,
        "studyId": EXAMPLE_STUDY,
        "analysisId": EXAMPLE_ANALYSIS_ID,
        "fileName": "reads.txt",
        "fileSize": 6,
        "fileType": "TXT",
        "fileMd5sum": "b1946ac92492d2347c6235b4d2611184",
        "fileAccess": "controlled",
        "dataType": "demo",
        "info": {},
    },
}


def add_routes(router: APIRouter) -> None:
    write = token_required(REGISTRY_SCOPES)

    @router.put(
        "/studies/{studyId}/analysis/{analysisId}",
        response_class=Response,
        responses={200: {"description": "Updated (no body, as Song)"}, **song_errors(400, 401, 403, 404, 413, 422)},
        openapi_extra={
            **json_body(SongAnalysisUpdate, demo={"analysisType": {"name": "demo"}, "experiment": {}}),
            **write,
        },
    )
    async def update_analysis(studyId: str, analysisId: str, request: Request) -> Response:
        """Song's UpdateAnalysis: replaces the analysis' own fields, validated against the named type."""
        authorize(request, Action.REGISTRY_WRITE, study_id=studyId)
        body = await json_body_of(request)
        await run_in_threadpool(registry_of(request).update_analysis, studyId, analysisId, body)
        return Response(status_code=200)

    @router.patch(
        "/studies/{studyId}/analysis/{analysisId}",
        response_class=Response,
        responses={200: {"description": "Updated (no body, as Song)"}, **song_errors(400, 401, 403, 404, 413, 422)},
        openapi_extra={**json_body(SongAnalysisPatch, demo={"experiment": {"platform": "ILLUMINA"}}), **write},
    )
    async def patch_analysis(studyId: str, analysisId: str, request: Request) -> Response:
        """Song's PatchUpdateAnalysis: a JSON merge patch (RFC 7386) of the analysis' own fields."""
        authorize(request, Action.REGISTRY_WRITE, study_id=studyId)
        body = await json_body_of(request)
        await run_in_threadpool(registry_of(request).patch_analysis, studyId, analysisId, body)
        return Response(status_code=200)

    @router.put(
        "/studies/{studyId}/files/{objectId}",
        responses={
            200: {"content": json_examples(updated=_FILE_UPDATE_EXAMPLE)},
            **song_errors(400, 401, 403, 404, 413, 422),
        },
        openapi_extra={
            **json_body(SongFileUpdate, new_md5={"fileMd5sum": "0cc175b9c0f1b6a831c399e269772661"}),
            **write,
        },
    )
    async def update_file(studyId: str, objectId: str, request: Request) -> dict[str, Any]:
        """Song's UpdateFile: size and MD5 change only while UNPUBLISHED; access, dataType, info any time
        but SUPPRESSED."""
        authorize(request, Action.REGISTRY_WRITE, study_id=studyId)
        body = await json_body_of(request)
        return await run_in_threadpool(registry_of(request).update_file, studyId, objectId, body)

    @router.delete(
        "/studies/{studyId}/files/{objectId}",  # Song's {ids}: one template with GET and PUT, for Allow
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {"example": "OK"}}}, **song_errors(400, 401, 403, 404)},
        openapi_extra=write,
    )
    def delete_files(
        studyId: str, objectId: Annotated[str, Path(json_schema_extra={ID_LIST_MARK: True})], request: Request
    ) -> PlainTextResponse:
        """Song's DeleteFiles (comma-separated object ids): ``OK``. Files of a PUBLISHED analysis are kept."""
        authorize(request, Action.REGISTRY_WRITE, study_id=studyId)
        return PlainTextResponse(registry_of(request).delete_files(studyId, id_list(objectId, "objectId")))
