"""``score-client mount``: the repository as a read-only file system (FUSE), read straight from the store."""
