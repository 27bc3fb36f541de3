"""The mount's directory tree: paths of a listing in one of Score's two layouts, rebuilt whole on refresh.

* ``bundle``: ``/<analysisId>/<fileName>`` — a data file and its index sit side by side, as tools expect.
* ``object-id``: ``/<objectId>``, and beside each data file a symbolic link ``<objectId>.<ext>`` to its
  index file's object (``x.bam`` -> ``x.bam.bai``), so samtools finds the index the way it looks for it.

A tree is immutable: a refresh builds a new one and swaps it in, so a lookup never sees half a refresh.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from score.client.mount.listing import Listing, MountedFile
from score.client.session import INDEX_EXTENSIONS, index_names

log = logging.getLogger("score.mount")
LAYOUTS = ("bundle", "object-id")


@dataclass(frozen=True)
class Link:
    """A symbolic link inside the mount, to a path relative to the link's directory."""

    target: str


Node = MountedFile | Link | dict[str, "Node"]


class Tree:
    def __init__(self, listing: Listing, layout: str) -> None:
        self.root: dict[str, Node] = {}
        self.files = len(listing.files)
        if layout == "bundle":
            for f in sorted(listing.files.values(), key=lambda f: (f.analysis_id, f.file_name, f.object_id)):
                if _safe(f.analysis_id) and _safe(f.file_name):
                    folder = self.root.setdefault(f.analysis_id, {})
                    assert isinstance(folder, dict)
                    self._add(folder, f.file_name, f)
                else:
                    log.warning("object %s is not listed: its analysis id or file name is not a file name", f.object_id)
        elif layout == "object-id":
            for f in listing.files.values():
                self.root[f.object_id] = f
            for f, index in _index_pairs(listing):
                link = f"{f.object_id}{_extension(index.file_name)}"
                if link not in self.root:
                    self.root[link] = Link(index.object_id)
        else:
            raise ValueError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")

    @staticmethod
    def _add(folder: dict[str, Node], name: str, f: MountedFile) -> None:
        if name in folder:
            log.warning("object %s is not listed: another file of its analysis is also named %r", f.object_id, name)
        else:
            folder[name] = f

    def lookup(self, path: str) -> Node | None:
        node: Node = self.root
        for name in path.strip("/").split("/") if path.strip("/") else ():
            if not isinstance(node, dict):
                return None
            found = node.get(name)
            if found is None:
                return None
            node = found
        return node


def _safe(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\0" not in name


def _extension(index_name: str) -> str:
    lower = index_name.lower()
    return next(ext for ext in INDEX_EXTENSIONS if lower.endswith(ext))


def _index_pairs(listing: Listing) -> list[tuple[MountedFile, MountedFile]]:
    """Each data file with its index file: a file of the same analysis named ``<data file name><ext>``."""
    by_name = {(f.analysis_id, f.file_name.lower()): f for f in listing.files.values()}
    pairs = []
    for f in listing.files.values():
        for name in index_names(f.file_name):
            index = by_name.get((f.analysis_id, name))
            if index is not None:
                pairs.append((f, index))
    return pairs
