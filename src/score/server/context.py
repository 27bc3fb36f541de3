"""Everything a request handler needs, built once from settings by ``app.build_app``.

Routers reach it through ``request.app.state.context``: no module-level globals, so several apps
(e.g. two servers in one test process) never share state by accident.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from score.server.audit import AuditLog
    from score.server.auth.principal import TokenVerifier
    from score.server.metadata.base import MetadataSource
    from score.server.services.downloads import DownloadService
    from score.server.services.htsget import HtsgetService
    from score.server.services.uploads import UploadService
    from score.server.settings import ServerSettings
    from score.server.storage.base import ObjectStore


@dataclass
class ServerContext:
    settings: ServerSettings
    store: ObjectStore
    metadata: MetadataSource
    verifier: TokenVerifier
    uploads: UploadService
    downloads: DownloadService
    audit: AuditLog
    htsget: HtsgetService
    # Every call a request makes is a local file or SQLite read (see ``app.answers_in_process``): cheap routes
    # then answer on the event loop instead of a worker thread (``api.deps.run_blocking``).
    in_process: bool = False
