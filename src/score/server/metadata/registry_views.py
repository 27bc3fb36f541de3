"""Pure shapes the registry answers in: Song's export payloads, study tree, id search and update rules.

Kept apart from ``registry`` (which owns storage and transactions) so each of Song's transformations
can be read next to the Java it transcribes:

* ``export_payload``: SONG ``ExportService.convertToPayloadDTO`` + ``PayloadConverter`` (ids the
  registry derived are left out, empty values dropped: ``PayloadNonEmptyMixin``);
* ``study_tree``: ``StudyWithDonorsService.readWithChildren`` (donors > specimens > samples);
* ``IdSearch``: ``AnalysisController.idSearch`` / ``IdSearchRequest`` (regex patterns, ``.*`` default);
* ``merge_patch``: RFC 7386 JSON merge patch, as ``AnalysisServiceImpl.mergePatchRequest`` applies it;
* ``file_update_problems`` / ``file_update_type``: ``fileUpdateRequest.json`` and ``FileUpdateTypes``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from score.server.metadata.json_schema import validation_errors

NO_UPDATE, CONTENT_UPDATE, METADATA_UPDATE = "NO_UPDATE", "CONTENT_UPDATE", "METADATA_UPDATE"

# song-server/src/main/resources/schemas/fileUpdateRequest.json (its file_base definition)
FILE_UPDATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "fileSize": {"type": "integer", "minimum": 0, "exclusiveMinimum": True},
        "fileAccess": {"type": "string", "enum": ["open", "controlled"]},
        "dataType": {"type": "string"},
        "fileMd5sum": {"type": "string", "pattern": "^[a-fA-F0-9]{32}$"},
        "info": {"type": "object"},
    },
}
_EXPORT_DROPPED_FILE_FIELDS = ("objectId", "analysisId", "studyId")
_EXPORT_DROPPED_SAMPLE_FIELDS = ("sampleId", "specimenId")
_EXPORT_DROPPED_SPECIMEN_FIELDS = ("specimenId", "donorId")
_EXPORT_DROPPED_DONOR_FIELDS = ("donorId", "studyId")
_MAX_PATTERN = 256
# A quantified group (``(a+)+``, ``(x|y)*``, ``(..){2,}``) can backtrack exponentially; Postgres' regex
# engine does not, Python's does, so such patterns are refused instead of run on the request thread.
_NESTED_QUANTIFIER = re.compile(r"\)[*+?{]")


def _non_empty(value: Any) -> bool:
    return value not in (None, "", {}, [])


def _without(entity: Any, fields: Iterable[str]) -> Any:
    if not isinstance(entity, Mapping):
        return entity
    return {k: v for k, v in entity.items() if k not in fields and _non_empty(v)}


def export_payload(analysis: Mapping[str, Any], reserved: Iterable[str]) -> dict[str, Any]:
    """One analysis as the payload that would submit it again (``ExportService.convertToPayloadDTO``)."""
    samples = []
    for sample in analysis.get("samples") or []:
        out = _without(sample, _EXPORT_DROPPED_SAMPLE_FIELDS)
        if isinstance(out, dict):
            if isinstance(out.get("specimen"), Mapping):
                out["specimen"] = _without(out["specimen"], _EXPORT_DROPPED_SPECIMEN_FIELDS)
            if isinstance(out.get("donor"), Mapping):
                out["donor"] = _without(out["donor"], _EXPORT_DROPPED_DONOR_FIELDS)
        samples.append(out)
    payload: dict[str, Any] = {
        "studyId": analysis["studyId"],
        "analysisType": analysis["analysisType"],
        "samples": samples,
        "files": [_without(f, _EXPORT_DROPPED_FILE_FIELDS) for f in analysis.get("files") or []],
    }
    skipped = set(reserved) | {"samples"}
    payload.update({k: v for k, v in analysis.items() if k not in skipped})
    return {k: v for k, v in payload.items() if _non_empty(v)}


def study_tree(study: Mapping[str, Any], analyses: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """``StudyWithDonors``: the study's fields and every donor with its specimens and their samples."""
    donors: dict[str, dict[str, Any]] = {}
    specimens: dict[str, dict[str, Any]] = {}
    seen_samples: set[str] = set()
    for analysis in analyses:
        for sample in analysis.get("samples") or []:
            if not isinstance(sample, Mapping):
                continue
            donor, specimen = sample.get("donor"), sample.get("specimen")
            if not (isinstance(donor, Mapping) and isinstance(specimen, Mapping)):
                continue
            donor_id, specimen_id, sample_id = donor.get("donorId"), specimen.get("specimenId"), sample.get("sampleId")
            if not (isinstance(donor_id, str) and isinstance(specimen_id, str) and isinstance(sample_id, str)):
                continue
            if donor_id not in donors:
                donors[donor_id] = {
                    "donorId": donor_id,
                    "submitterDonorId": donor.get("submitterDonorId"),
                    "studyId": study["studyId"],
                    "gender": donor.get("gender"),
                    "info": donor.get("info") or {},
                    "specimens": [],
                }
            if specimen_id not in specimens:
                specimens[specimen_id] = {
                    "specimenId": specimen_id,
                    "donorId": donor_id,
                    "submitterSpecimenId": specimen.get("submitterSpecimenId"),
                    "tumourNormalDesignation": specimen.get("tumourNormalDesignation"),
                    "specimenTissueSource": specimen.get("specimenTissueSource"),
                    "specimenType": specimen.get("specimenType"),
                    "info": specimen.get("info") or {},
                    "samples": [],
                }
                donors[donor_id]["specimens"].append(specimens[specimen_id])
            if sample_id not in seen_samples:
                seen_samples.add(sample_id)
                specimens[specimen_id]["samples"].append(
                    {
                        "sampleId": sample_id,
                        "specimenId": specimen_id,
                        "submitterSampleId": sample.get("submitterSampleId"),
                        "matchedNormalSubmitterSampleId": sample.get("matchedNormalSubmitterSampleId"),
                        "sampleType": sample.get("sampleType"),
                        "info": sample.get("info") or {},
                    }
                )
    return {**study, "donors": list(donors.values())}


@dataclass(frozen=True)
class IdSearch:
    """``IdSearchRequest``: one regex per id; None means Song's wildcard ``.*``."""

    donorId: str | None = None
    sampleId: str | None = None
    specimenId: str | None = None
    objectId: str | None = None
    submitterSampleId: str | None = None
    submitterDonorId: str | None = None
    submitterSpecimenId: str | None = None

    def compiled(self) -> dict[str, re.Pattern[str]]:
        """Each given pattern compiled. One Python cannot run safely (invalid, over ``_MAX_PATTERN``
        characters, or with a quantified group that can backtrack exponentially) is matched as literal
        text instead: Postgres, which Song asks, has no such blow-up, and a search never fails here."""
        out = {}
        for name, pattern in vars(self).items():
            if pattern is None or pattern == "":
                continue
            if len(pattern) > _MAX_PATTERN or _NESTED_QUANTIFIER.search(pattern):
                out[name] = re.compile(re.escape(pattern))
                continue
            try:
                out[name] = re.compile(pattern)
            except re.error:
                out[name] = re.compile(re.escape(pattern))
        return out

    def matches(self, analysis: Mapping[str, Any]) -> bool:
        """Postgres ``~`` semantics (a match anywhere), over one sample row and one file row, as the view."""
        patterns = self.compiled()
        if not patterns:
            return True
        rows = [_sample_ids(s) for s in analysis.get("samples") or [] if isinstance(s, Mapping)] or [{}]
        files = [f.get("objectId") for f in analysis.get("files") or []] or [None]
        for ids in rows:
            for object_id in files:
                values = {**ids, "objectId": object_id}
                if all(isinstance(values.get(k), str) and p.search(values[k]) for k, p in patterns.items()):
                    return True
        return False


def _sample_ids(sample: Mapping[str, Any]) -> dict[str, Any]:
    donor = sample.get("donor") if isinstance(sample.get("donor"), Mapping) else {}
    specimen = sample.get("specimen") if isinstance(sample.get("specimen"), Mapping) else {}
    return {
        "sampleId": sample.get("sampleId"),
        "submitterSampleId": sample.get("submitterSampleId"),
        "specimenId": specimen.get("specimenId"),
        "submitterSpecimenId": specimen.get("submitterSpecimenId"),
        "donorId": donor.get("donorId"),
        "submitterDonorId": donor.get("submitterDonorId"),
    }


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, ``null`` removes a key, anything else replaces."""
    if not isinstance(patch, Mapping):
        return patch
    out = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def file_update_problems(request: Any) -> list[str]:
    """Violations of Song's ``fileUpdateRequest.json``."""
    return validation_errors(FILE_UPDATE_SCHEMA, request)


def file_update_type(original: Mapping[str, Any], request: Mapping[str, Any]) -> str:
    """``FileUpdateTypes.resolveFileUpdateType``: a field left out (or null) is unchanged."""

    def changed(field: str) -> bool:
        value = request.get(field)
        return value is not None and value != original.get(field)

    if changed("fileMd5sum") or changed("fileSize"):
        return CONTENT_UPDATE
    if changed("fileAccess") or changed("dataType") or changed("info"):
        return METADATA_UPDATE
    return NO_UPDATE
