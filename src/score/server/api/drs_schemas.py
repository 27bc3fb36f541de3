"""DRS 1.4's bodies as pydantic models, for the OpenAPI document only: the routes build and parse JSON
themselves (to answer DRS's error shape), so these say what they send and accept, for clients and fuzzers."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class DrsError(BaseModel):
    """DRS's error body."""

    msg: str = Field(description="What was wrong and what to do")
    status_code: int


class Checksum(BaseModel):
    checksum: str
    type: str = Field(description="md5")


class AccessURL(BaseModel):
    url: str
    headers: list[str] | None = None


class Authorizations(BaseModel):
    drs_object_id: str | None = None
    supported_types: list[Literal["None", "BasicAuth", "BearerAuth", "PassportAuth"]] | None = None
    passport_auth_issuers: list[str] | None = None
    bearer_auth_issuers: list[str] | None = None


class AccessMethod(BaseModel):
    type: Literal["https"]
    access_url: AccessURL | None = None
    access_id: str | None = None
    authorizations: Authorizations | None = None


class ContentsObject(BaseModel):
    name: str
    id: str | None = None
    drs_uri: list[str] | None = None
    contents: list[ContentsObject] | None = None


class DrsObject(BaseModel):
    """A file (access_methods) or an analysis (contents)."""

    id: str
    name: str | None = None
    self_uri: str
    size: int
    created_time: str
    updated_time: str | None = None
    version: str | None = None
    mime_type: str | None = None
    checksums: list[Checksum] = Field(min_length=1)
    access_methods: list[AccessMethod] | None = None
    contents: list[ContentsObject] | None = None
    description: str | None = None
    aliases: list[str] | None = None


class ServiceType(BaseModel):
    group: str
    artifact: Literal["drs"]
    version: str


class Organization(BaseModel):
    name: str
    url: str


class DrsServiceInfo(BaseModel):
    id: str
    name: str
    type: ServiceType
    description: str | None = None
    organization: Organization
    version: str
    maxBulkRequestLength: int
    documentationUrl: str | None = None
    environment: str | None = None


class Summary(BaseModel):
    requested: int
    resolved: int
    unresolved: int


class Unresolved(BaseModel):
    error_code: int
    object_ids: list[str]


class BulkObjects(BaseModel):
    summary: Summary
    unresolved_drs_objects: list[Unresolved]
    resolved_drs_object: list[DrsObject]


class BulkAccessURL(BaseModel):
    drs_object_id: str
    drs_access_id: str
    url: str
    headers: list[str] | None = None


class BulkAccessURLs(BaseModel):
    summary: Summary
    unresolved_drs_objects: list[Unresolved]
    resolved_drs_object_access_urls: list[BulkAccessURL]


class PostObjectBody(BaseModel):
    """POST /objects/{object_id}: ``expand`` as the query's; passports are not used (send a bearer token)."""

    expand: bool | None = None
    passports: list[str] | None = None


class PassportsBody(BaseModel):
    passports: list[str] | None = None


class BulkObjectIds(BaseModel):
    bulk_object_ids: list[str] = Field(min_length=1, max_length=100)
    passports: list[str] | None = None


class BulkObjectAccess(BaseModel):
    bulk_object_id: str
    bulk_access_ids: list[str] = Field(min_length=1)


class BulkObjectAccessIds(BaseModel):
    bulk_object_access_ids: list[BulkObjectAccess] = Field(min_length=1, max_length=100)
    passports: list[str] | None = None
