"""Song's analysis payload as the registry takes it: validation, and the ids Song derives from it.

Split from ``registry`` so the storage code and the payload rules can be read (and tested) apart. Ids are
Song's local id service's name-based UUIDs (``song_id``), so a payload gets the same ids here as in Song
and data can move between the two.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from score.server.metadata.song_errors import (
    DONOR_ID_IS_CORRUPTED,
    MALFORMED_PARAMETER,
    SAMPLE_ID_IS_CORRUPTED,
    SCHEMA_VIOLATION,
    SPECIMEN_ID_IS_CORRUPTED,
    STUDY_ID_MISMATCH,
    STUDY_ID_MISSING,
    RegistryError,
    SongErrorCode,
)

ACCESS_LEVELS = ("open", "controlled")
# Song's id namespace (SONG ``IdConfig.java``: ``NAMESPACE_UUID``, the RFC 4122 OID namespace). Every
# derived id depends on it, so it must stay equal to Song's for ids to migrate between Song and here.
SONG_ID_NAMESPACE = uuid.UUID("6ba7b812-9dad-11d1-80b4-00c04fd430c8")
# Fields the registry owns in the analysis JSON; a payload cannot set them.
RESERVED_ANALYSIS_FIELDS = frozenset(
    {
        "analysisId",
        "studyId",
        "analysisState",
        "analysisType",
        "files",
        "createdAt",
        "updatedAt",
        "firstPublishedAt",
        "publishedAt",
        "analysisStateHistory",
    }
)
MAX_FILE_SIZE = 2**63 - 1  # what the database (and Song's Java long) can hold
_MD5 = re.compile(r"^[0-9a-fA-F]{32}\Z")


@dataclass(frozen=True)
class _FileSpec:
    file_name: str
    file_size: int
    file_md5sum: str
    file_type: str
    file_access: str
    data_type: str
    info: dict[str, Any] | None


@dataclass(frozen=True)
class _Submission:
    analysis_type: dict[str, Any]
    files: list[_FileSpec]
    data: dict[str, Any]


# --------------------------------------------------------------------------------------------------
# Pure helpers


def song_id(*keys: str) -> str:
    """Song's local id derivation, reproduced exactly so ids agree with a Song server's.

    SONG ``LocalIdService.generateId`` joins the business keys with ``":"`` (Guava ``Joiner.on(":")``)
    and feeds the string to ``IdConfig.createNameBasedGenerator()``: JUG's
    ``Generators.nameBasedGenerator(NAMESPACE_UUID, MessageDigest.getInstance("SHA-1"))``, which hashes
    namespace bytes + UTF-8 name with SHA-1 and stamps version 5, i.e. RFC 4122 UUIDv5 as
    ``uuid.uuid5`` computes it (not Java's ``UUID.nameUUIDFromBytes``, which is MD5/v3).
    """
    return str(uuid.uuid5(SONG_ID_NAMESPACE, ":".join(keys)))


def object_id_for(analysis_id: str, file_name: str) -> str:
    """The object id of a file: Song's ``getFileId(analysisId, fileName)``, so Song and clients re-derive it."""
    return song_id(analysis_id, file_name)


def _assign_id(entity: dict[str, Any], field: str, derived: str, code: SongErrorCode) -> None:
    """Set a derived id, refusing a different one in the payload as Song does (``*_ID_IS_CORRUPTED``)."""
    given = entity.get(field)
    if given not in (None, "") and given != derived:
        raise RegistryError(
            code,
            f"The input {field} '{given}' is corrupted because it does not match the derived {field} "
            f"'{derived}': omit {field} from the payload or send the derived value",
        )
    entity[field] = derived


def _with_sample_ids(study_id: str, samples: Any) -> Any:
    """Give each sample, specimen and donor Song's ids (``getSampleId/getSpecimenId/getDonorId``).

    Song keys them by ``studyId`` and the submitter id (``SampleService.createSampleId``,
    ``SpecimenService.createSpecimenId``, ``DonorService.createDonorId``) and links them
    (``sample.specimenId``, ``specimen.donorId``), so an analysis read from here looks like one read from
    Song. Entries without the submitter ids are left as submitted: the registry does not validate
    Song's sample schema.
    """
    if not isinstance(samples, list):
        return samples
    out: list[Any] = []
    for raw in samples:
        if not isinstance(raw, Mapping):
            out.append(raw)
            continue
        sample = dict(raw)
        specimen = dict(sample["specimen"]) if isinstance(sample.get("specimen"), Mapping) else None
        donor = dict(sample["donor"]) if isinstance(sample.get("donor"), Mapping) else None
        donor_id = None
        if donor is not None and isinstance(donor.get("submitterDonorId"), str):
            donor_id = song_id(study_id, donor["submitterDonorId"])
            _assign_id(donor, "donorId", donor_id, DONOR_ID_IS_CORRUPTED)
            donor["studyId"] = study_id
            sample["donor"] = donor
        specimen_id = None
        if specimen is not None and isinstance(specimen.get("submitterSpecimenId"), str):
            specimen_id = song_id(study_id, specimen["submitterSpecimenId"])
            _assign_id(specimen, "specimenId", specimen_id, SPECIMEN_ID_IS_CORRUPTED)
            if donor_id is not None:
                _assign_id(specimen, "donorId", donor_id, DONOR_ID_IS_CORRUPTED)
            sample["specimen"] = specimen
        if isinstance(sample.get("submitterSampleId"), str):
            _assign_id(sample, "sampleId", song_id(study_id, sample["submitterSampleId"]), SAMPLE_ID_IS_CORRUPTED)
            if specimen_id is not None:
                _assign_id(sample, "specimenId", specimen_id, SPECIMEN_ID_IS_CORRUPTED)
        out.append(sample)
    return out


def _file_name_problem(name: Any) -> str | None:
    """Why a file name is unsafe as one path segment in Score and on a client's disk, or None."""
    if not isinstance(name, str) or not name.strip():
        return "must be a non-empty string"
    if "/" in name or "\\" in name:
        return "must not contain '/' or '\\' (a file name, not a path)"
    if ".." in name:
        return "must not contain '..'"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return "must not contain control characters"
    if name != name.strip():
        return "must not start or end with whitespace"
    return None


def _text_problem(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else "must be a non-empty string"


def _file_problems(index: int, raw: Any) -> list[str]:
    """Every schema problem of one payload file, prefixed with its JSON path."""
    where = f"files[{index}]"
    if not isinstance(raw, Mapping):
        return [f"{where}: must be a JSON object"]
    checks: dict[str, str | None] = {
        "fileName": _file_name_problem(raw.get("fileName")),
        "fileType": _text_problem(raw.get("fileType")),
        "dataType": _text_problem(raw.get("dataType")),
    }
    size = raw.get("fileSize")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_FILE_SIZE:
        checks["fileSize"] = f"must be an integer from 0 to {MAX_FILE_SIZE} (the size in bytes)"
    md5 = raw.get("fileMd5sum")
    if not isinstance(md5, str) or not _MD5.match(md5):
        checks["fileMd5sum"] = "must be the file's MD5 as 32 hexadecimal characters"
    if raw.get("fileAccess") not in ACCESS_LEVELS:
        checks["fileAccess"] = "must be 'open' or 'controlled'"
    info = raw.get("info")
    if info is not None and not isinstance(info, Mapping):
        checks["info"] = "must be a JSON object when present"
    return [f"{where}.{field}: {problem}" for field, problem in checks.items() if problem]


def _parse_files(raw_files: Any) -> list[_FileSpec]:
    if not isinstance(raw_files, list) or not raw_files:
        raise RegistryError(SCHEMA_VIOLATION, "files: the payload must list at least one file in a 'files' array")
    problems = [p for i, raw in enumerate(raw_files) for p in _file_problems(i, raw)]
    seen: set[str] = set()
    for i, raw in enumerate(raw_files):
        name = raw.get("fileName") if isinstance(raw, Mapping) else None
        if not isinstance(name, str):
            continue
        if name in seen:
            problems.append(
                f"files[{i}].fileName: {name!r} appears more than once; file names must be unique within an analysis"
            )
        seen.add(name)
    if problems:
        raise RegistryError(
            SCHEMA_VIOLATION, "the payload is invalid; fix these fields and submit again: " + "; ".join(problems)
        )
    return [
        _FileSpec(
            file_name=raw["fileName"],
            file_size=raw["fileSize"],
            file_md5sum=raw["fileMd5sum"],
            file_type=raw["fileType"],
            file_access=raw["fileAccess"],
            data_type=raw["dataType"],
            info=dict(raw["info"]) if raw.get("info") is not None else None,
        )
        for raw in raw_files
    ]


def _parse_analysis_type(raw: Any) -> dict[str, Any]:
    """Song's ``{"name", "version"}``; a bare string (Song 1.x payloads) is taken as the name."""
    if raw is None:
        raise RegistryError(
            MALFORMED_PARAMETER,
            'The analysisType field cannot be null: add "analysisType": {"name": "<type>"} to the payload',
        )
    if isinstance(raw, str) and raw.strip():
        return {"name": raw}
    if isinstance(raw, Mapping) and isinstance(raw.get("name"), str) and raw["name"].strip():
        version = raw.get("version")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            raise RegistryError(MALFORMED_PARAMETER, "analysisType.version must be an integer when present")
        return {"name": raw["name"]} if version is None else {"name": raw["name"], "version": version}
    raise RegistryError(
        MALFORMED_PARAMETER, 'The analysisType name field cannot be null: use "analysisType": {"name": "<type>"}'
    )


def _check_payload_study(study_id: str, payload: Mapping[str, Any]) -> None:
    payload_study = payload.get("studyId")
    if payload_study is None:
        raise RegistryError(
            STUDY_ID_MISSING, f'The field \'studyId\' is missing in the payload: add "studyId": "{study_id}"'
        )
    if payload_study != study_id:
        raise RegistryError(
            STUDY_ID_MISMATCH,
            f"The studyId in the URL path '{study_id}' should match the studyId '{payload_study}' in the "
            "payload: submit to the payload's study or correct the payload",
        )


def parse_submission(study_id: str, payload: Any) -> _Submission:
    """Validate a Song payload and split it into the parts the registry stores."""
    if not isinstance(payload, Mapping):
        raise RegistryError(SCHEMA_VIOLATION, "the payload must be a JSON object (Song's analysis payload)")
    analysis_type = _parse_analysis_type(payload.get("analysisType"))
    _check_payload_study(study_id, payload)
    files = _parse_files(payload.get("files"))
    data = {k: v for k, v in payload.items() if k not in RESERVED_ANALYSIS_FIELDS}
    if "samples" in data:
        data["samples"] = _with_sample_ids(study_id, data["samples"])
    return _Submission(analysis_type=analysis_type, files=files, data=data)
