"""Song's read-only routes beyond single analyses: paging, id search, a study's tree, export, one file.

Transcribed from SONG ``AnalysisController.java`` (``/paginated``, ``/search/id``), ``StudyController.java``
(``/{studyId}/all``), ``ExportController.java`` (``/export/studies/{studyId}``, ``/export/analysis/{ids}``)
and ``FileController.java`` (``GET /studies/{studyId}/files/{id}``). Reads are public, as in Song
(``SecurityConfig``: ``/studies/**`` and ``/export/**`` are ``permitAll``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from score.server.api.openapi import ID_LIST_MARK, json_body, query_parameter, song_errors
from score.server.api.song_common import bad, id_list, int_param, json_body_of, registry_of, spring_int
from score.server.metadata.base import PUBLISHED
from score.server.metadata.registry import MALFORMED_PARAMETER
from score.server.metadata.registry_views import IdSearch

# AnalysisController.getAnalysis (paginated): limit 100 and offset 0 by default.
DEFAULT_ANALYSIS_LIMIT = 100
_ID_PARAMETERS = {  # query parameter -> IdSearchRequest field
    "donorId": "donorId",
    "sampleId": "sampleId",
    "specimenId": "specimenId",
    "fileId": "objectId",
    "submitterSampleId": "submitterSampleId",
    "submitterDonorId": "submitterDonorId",
    "submitterSpecimenId": "submitterSpecimenId",
}

_COUNT = spring_int(minimum=0)
_STATE = "(PUBLISHED|UNPUBLISHED|SUPPRESSED)"
_STATES = {"type": "string", "pattern": f"^( *{_STATE} *(, *{_STATE} *)*)?$"}
# IdSearchRequest's JSON names -> IdSearch fields (Song's JSON spells two of them in the plural)
_ID_BODY_FIELDS = {
    "donorId": "donorId",
    "sampleId": "sampleId",
    "specimenId": "specimenId",
    "objectId": "objectId",
    "submitterSampleId": "submitterSampleId",
    "submitterDonorIds": "submitterDonorId",
    "submitterSpecimenIds": "submitterSpecimenId",
}


class IdSearchBody(BaseModel):
    """Song's IdSearchRequest (``repository/search/IdSearchRequest.java``): regular expressions, each
    optional (Song's default ``.*``)."""

    donorId: str | None = None
    sampleId: str | None = None
    specimenId: str | None = None
    objectId: str | None = None
    submitterSampleId: str | None = None
    submitterDonorIds: str | None = None
    submitterSpecimenIds: str | None = None


def _states(request: Request) -> list[str]:
    raw = request.query_params.get("analysisStates") or PUBLISHED
    return [s.strip(" ") for s in raw.split(",")]


def add_routes(router: APIRouter) -> None:
    @router.get(
        "/studies/{studyId}/analysis/paginated",
        responses=song_errors(400, 404, 503),
        openapi_extra={
            "parameters": [
                query_parameter("analysisStates", _STATES, "Comma-separated states (default PUBLISHED)"),
                query_parameter("limit", _COUNT, "Analyses per page (default 100)"),
                query_parameter("offset", _COUNT, "Analyses to skip (default 0)"),
            ]
        },
    )
    def paginated(studyId: str, request: Request) -> dict[str, Any]:
        """Song's paginated GetAnalysesForStudy: ``{"analyses", "totalAnalyses", "currentTotalAnalyses"}``,
        ordered by analysis id."""
        limit = int_param(request, "limit", DEFAULT_ANALYSIS_LIMIT)
        offset = int_param(request, "offset", 0)
        return registry_of(request).list_analyses_page(studyId, _states(request), limit, offset)

    @router.get(
        "/studies/{studyId}/analysis/search/id",
        responses=song_errors(400, 404, 503),
        openapi_extra={
            "parameters": [
                query_parameter(
                    name, {"type": "string"}, f"A regular expression the {name} must contain (Postgres '~')"
                )
                for name in _ID_PARAMETERS
            ]
        },
    )
    def id_search(studyId: str, request: Request) -> list[dict[str, Any]]:
        """Song's IdSearch: analyses (any state) with a sample and file whose ids match every pattern."""
        search = IdSearch(**{field: request.query_params.get(name) for name, field in _ID_PARAMETERS.items()})
        return registry_of(request).id_search(studyId, search)

    @router.post(
        "/studies/{studyId}/analysis/search/id",
        responses=song_errors(400, 404, 413, 422, 503),
        openapi_extra=json_body(IdSearchBody, by_sample={"sampleId": ".*"}),
    )
    async def id_search_body(studyId: str, request: Request) -> list[dict[str, Any]]:
        """Song's IdSearch with an ``IdSearchRequest`` body (``objectId`` for the file id)."""
        body = await json_body_of(request)
        if not isinstance(body, dict) or any(not isinstance(body.get(k), str | None) for k in _ID_BODY_FIELDS):
            raise bad(
                MALFORMED_PARAMETER,
                f"the body must be an IdSearchRequest: {{{', '.join(_ID_BODY_FIELDS)}}}, each a string",
            )
        search = IdSearch(**{_ID_BODY_FIELDS[k]: v for k, v in body.items() if k in _ID_BODY_FIELDS})
        return await run_in_threadpool(registry_of(request).id_search, studyId, search)

    @router.get("/studies/{studyId}/all", responses=song_errors(400, 404, 503))
    def entire_study(studyId: str, request: Request) -> dict[str, Any]:
        """Song's GetEntireStudy: the study with its donors, their specimens and those specimens' samples."""
        return registry_of(request).study_with_donors(studyId)

    @router.get("/studies/{studyId}/files/{objectId}", responses=song_errors(400, 404, 503))
    def read_file(studyId: str, objectId: str, request: Request) -> dict[str, Any]:
        """Song's ReadFile: one file of the study."""
        return registry_of(request).read_file(studyId, objectId).to_wire()

    @router.get("/export/studies/{studyId}", responses=song_errors(400, 404, 503))
    def export_study(studyId: str, request: Request) -> list[dict[str, Any]]:
        """Song's ExportStudy: ``[{"studyId", "payloads": [...]}]``, every analysis as the payload that
        would submit it again."""
        return registry_of(request).export_study(studyId)

    @router.get("/export/analysis/{analysisIds}", responses=song_errors(400, 404, 503))
    def export_analyses(
        analysisIds: Annotated[str, Path(json_schema_extra={ID_LIST_MARK: True})], request: Request
    ) -> list[dict[str, Any]]:
        """Song's ExportAnalysis (comma-separated ids): one ``ExportedPayload`` per study."""
        return registry_of(request).export_analyses(id_list(analysisIds, "analysisIds"))
