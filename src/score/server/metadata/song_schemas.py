"""Song's own JSON schemas, transcribed from SONG ``song-server/src/main/resources/schemas/analysis/``.

``ANALYSIS_BASE`` (analysisBase.json) is what every analysis type's schema is rendered into for a submit;
``ANALYSIS_UPDATE_BASE`` (analysisUpdate.json) the same for an update; ``REGISTRATION_META_SCHEMA``
(analysisTypeRegistration.json) what a schema must satisfy to be registered. Kept as Python data so they
ship with the code (no package-data configuration) and are never edited at run time (render deep-copies).
"""

from typing import Any

# analysisBase.json
ANALYSIS_BASE: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "id": "analysisPayload",
    "type": "object",
    "definitions": {
        "common": {
            "md5": {"type": "string", "pattern": "^[a-fA-F0-9]{32}$"},
            "submitterId": {"type": "string", "pattern": "^[A-Za-z0-9\\-\\._]{1,64}$"},
            "info": {"type": "object"},
        },
        "file": {
            "fileType": {"type": "string"},
            "fileData": {
                "type": "object",
                "required": ["dataType", "fileName", "fileSize", "fileType", "fileAccess", "fileMd5sum"],
                "properties": {
                    "dataType": {"type": "string"},
                    "fileName": {"type": "string", "pattern": "^[A-Za-z0-9_\\.\\-\\[\\]\\(\\)]+$"},
                    "fileSize": {"type": "integer", "min": 0},
                    "fileAccess": {"type": "string", "enum": ["open", "controlled"]},
                    "fileType": {"$ref": "#/definitions/file/fileType"},
                    "fileMd5sum": {"$ref": "#/definitions/common/md5"},
                    "info": {"$ref": "#/definitions/common/info"},
                },
            },
        },
        "donor": {
            "gender": {"type": "string", "enum": ["Male", "Female", "Other"]},
            "donorData": {
                "type": "object",
                "required": ["submitterDonorId", "gender"],
                "properties": {
                    "submitterDonorId": {"$ref": "#/definitions/common/submitterId"},
                    "gender": {"$ref": "#/definitions/donor/gender"},
                    "info": {"$ref": "#/definitions/common/info"},
                },
            },
        },
        "specimen": {
            "specimenTissueSource": {
                "type": "string",
                "enum": [
                    "Blood derived",
                    "Blood derived - bone marrow",
                    "Blood derived - peripheral blood",
                    "Bone marrow",
                    "Buccal cell",
                    "Lymph node",
                    "Solid tissue",
                    "Plasma",
                    "Serum",
                    "Urine",
                    "Cerebrospinal fluid",
                    "Sputum",
                    "Other",
                    "Pleural effusion",
                    "Mononuclear cells from bone marrow",
                    "Saliva",
                    "Skin",
                    "Intestine",
                    "Buffy coat",
                    "Stomach",
                    "Esophagus",
                    "Tonsil",
                    "Spleen",
                    "Bone",
                    "Cerebellum",
                    "Endometrium",
                ],
            },
            "specimenType": {
                "type": "string",
                "enum": [
                    "Normal",
                    "Normal - tissue adjacent to primary tumour",
                    "Primary tumour",
                    "Primary tumour - adjacent to normal",
                    "Primary tumour - additional new primary",
                    "Recurrent tumour",
                    "Metastatic tumour",
                    "Metastatic tumour - metastasis local to lymph node",
                    "Metastatic tumour - metastasis to distant location",
                    "Metastatic tumour - additional metastatic",
                    "Xenograft - derived from primary tumour",
                    "Xenograft - derived from tumour cell line",
                    "Cell line - derived from xenograft tumour",
                    "Cell line - derived from tumour",
                    "Cell line - derived from normal",
                    "Tumour - unknown if derived from primary or metastatic",
                    "Cell line \u2013 derived from metastatic tumour",
                    "Xenograft \u2013 derived from metastatic tumour",
                ],
            },
            "tumourNormalDesignation": {"type": "string", "enum": ["Normal", "Tumour"]},
            "specimenData": {
                "type": "object",
                "required": ["submitterSpecimenId", "specimenTissueSource", "tumourNormalDesignation", "specimenType"],
                "properties": {
                    "submitterSpecimenId": {"$ref": "#/definitions/common/submitterId"},
                    "specimenTissueSource": {"$ref": "#/definitions/specimen/specimenTissueSource"},
                    "tumourNormalDesignation": {"$ref": "#/definitions/specimen/tumourNormalDesignation"},
                    "specimenType": {"$ref": "#/definitions/specimen/specimenType"},
                    "specimenClass": {"not": {}},
                    "info": {"$ref": "#/definitions/common/info"},
                },
            },
        },
        "analysisType": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}, "version": {"type": ["integer", "null"]}},
        },
        "sample": {
            "sampleTypes": {
                "type": "string",
                "enum": [
                    "Total DNA",
                    "Amplified DNA",
                    "ctDNA",
                    "Other DNA enrichments",
                    "Total RNA",
                    "Ribo-Zero RNA",
                    "polyA+ RNA",
                    "Other RNA fractions",
                ],
            },
            "sampleData": {
                "type": "object",
                "required": ["submitterSampleId", "sampleType"],
                "properties": {
                    "submitterSampleId": {"$ref": "#/definitions/common/submitterId"},
                    "sampleType": {"$ref": "#/definitions/sample/sampleTypes"},
                    "info": {"$ref": "#/definitions/common/info"},
                },
            },
        },
    },
    "required": ["studyId", "analysisType", "samples", "files"],
    "properties": {
        "analysisId": {"not": {}},
        "studyId": {"type": "string", "minLength": 1},
        "analysisType": {"allOf": [{"$ref": "#/definitions/analysisType"}]},
        "samples": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "allOf": [{"$ref": "#/definitions/sample/sampleData"}],
                "required": ["specimen", "donor"],
                "properties": {
                    "specimen": {"$ref": "#/definitions/specimen/specimenData"},
                    "donor": {"$ref": "#/definitions/donor/donorData"},
                },
                "if": {"properties": {"specimen": {"properties": {"tumourNormalDesignation": {"const": "Tumour"}}}}},
                "then": {
                    "properties": {
                        "matchedNormalSubmitterSampleId": {
                            "oneOf": [{"const": None}, {"$ref": "#/definitions/common/submitterId"}]
                        }
                    },
                    "required": ["matchedNormalSubmitterSampleId"],
                },
                "else": {
                    "properties": {"matchedNormalSubmitterSampleId": {"const": None}},
                    "required": ["matchedNormalSubmitterSampleId"],
                },
            },
        },
        "files": {"type": "array", "minItems": 1, "items": {"$ref": "#/definitions/file/fileData"}},
    },
}

# analysisUpdate.json
ANALYSIS_UPDATE_BASE: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "$id": "analysis-update",
    "title": "Base schema for validating analysis update requests",
    "type": "object",
    "required": ["analysisType"],
    "properties": {
        "analysisId": {"not": {}},
        "studyId": {"not": {}},
        "analysisState": {"not": {}},
        "analysisType": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}, "version": {"type": ["integer", "null"]}},
        },
        "analysisTypeId": {"not": {}},
        "samples": {"not": {}},
        "files": {"not": {}},
    },
}

# analysisTypeRegistration.json
REGISTRATION_META_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "$id": "analysis-type-meta-schema",
    "title": "Meta-schema for validating AnalysisType schemas",
    "type": ["object", "boolean"],
    "required": ["properties", "type"],
    "properties": {
        "type": {"type": "string", "const": "object"},
        "definitions": {"type": "object"},
        "properties": {
            "type": "object",
            "required": ["experiment"],
            "additionalProperties": True,
            "properties": {
                "studyId": {"not": {}},
                "analysisState": {"not": {}},
                "analysisType": {"not": {}},
                "analysisTypeId": {"not": {}},
                "samples": {"not": {}},
                "files": {"not": {}},
                "analysisId": {"not": {}},
                "experiment": {"type": "object"},
            },
        },
        "required": {
            "type": "array",
            "uniqueItems": True,
            "items": {"type": "string"},
            "contains": {"const": "experiment"},
        },
    },
    "default": True,
    "additionalProperties": False,
}
