"""Pinned npm packages installed on first use under ``<repo>/.cache/<prefix>``, once, behind a file lock.

Each package gets its own prefix: ``npm install --no-save`` prunes whatever else is in ``node_modules``, so two
packages sharing one prefix would uninstall each other. Parallel test processes (pytest-xdist, several suites at
once) serialise the install with a file lock instead of racing npm into one folder.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache"


def installed_version(package: str, prefix: Path) -> str | None:
    try:
        return json.loads((prefix / "node_modules" / package / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def npm_binary_or_module(package: str, version: str, prefix: Path, binary: str | None = None) -> Path:
    """``package@version`` installed into ``prefix``: the path of its ``.bin/<binary>`` if given, else its folder.

    Installs with npm the first time (or when another version is there); later calls only read a package.json.
    """
    module = prefix / "node_modules" / package
    target = prefix / "node_modules" / ".bin" / binary if binary else module
    if target.exists() and installed_version(package, prefix) == version:
        return target
    prefix.mkdir(parents=True, exist_ok=True)
    with open(prefix / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be installing right now: wait for it
        if target.exists() and installed_version(package, prefix) == version:
            return target
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError(f"npm is not on the PATH: install Node.js 20 (with npm) to run tests needing {package}")
        result = subprocess.run(
            [npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(prefix), f"{package}@{version}"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0 or not target.exists() or installed_version(package, prefix) != version:
            raise RuntimeError(f"npm could not install {package}@{version}:\n{result.stderr[-3000:]}")
    return target
