"""A content-addressed cache of built artifacts, keyed by model hash, flags and tool versions."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import reco
from reco import sha256_file

logger = logging.getLogger(__name__)

CACHE_ENV = "RECO_COMPILER_CACHE"
META_FILE = "meta.json"


def default_cache_dir() -> Path:
    """$RECO_COMPILER_CACHE, else $XDG_CACHE_HOME/reco-compiler, else ~/.cache/reco-compiler."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "reco-compiler"


def compiler_source_sha256() -> str:
    """sha256 over this package's code and the runtime's (the .py, .c and .h files): a change
    to how models are generated, compiled, loaded or checked must never reuse a build made by
    the old code."""
    digest = hashlib.sha256()
    packages = (Path(__file__).parent, Path(reco.__file__).parent)
    paths = [p for d in packages for p in sorted(d.glob("*.py")) + sorted(d.glob("*.[ch]"))]
    for path in paths:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def cache_key(inputs: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of everything that determines the build's output."""
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class BuildCache:
    """Entries are directories <root>/<key>/ holding the artifacts and meta.json (their hashes)."""

    def __init__(self, root: Path) -> None:
        """A cache rooted at root (created on first store)."""
        self.root = root

    def lookup(self, key: str) -> tuple[Path, dict[str, Any]] | None:
        """The entry's directory and metadata, if present and every file matches its hash."""
        entry = self.root / key
        try:
            meta: dict[str, Any] = json.loads((entry / META_FILE).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        for name, digest in meta.get("files", {}).items():
            path = entry / name
            if not path.is_file() or sha256_file(path) != digest:
                logger.warning(
                    "build cache entry %s: %s is missing or corrupt; ignoring it", entry, name
                )
                return None
        return entry, meta

    def store(self, key: str, files: dict[str, Path], meta: dict[str, Any]) -> None:
        """Copies files into a new entry, atomically (a temp dir renamed into place).

        A failure to write the cache is logged and otherwise ignored: the cache only saves time.
        """
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{key[:12]}."))
            try:
                hashes = {}
                for name, source in files.items():
                    shutil.copy2(source, staging / name)
                    hashes[name] = sha256_file(staging / name)
                (staging / META_FILE).write_text(
                    json.dumps({**meta, "files": hashes}, indent=2, sort_keys=True)
                )
                entry = self.root / key
                if entry.exists():  # a corrupt entry that lookup() refused
                    shutil.rmtree(entry)
                staging.rename(entry)
            finally:
                if staging.exists():
                    shutil.rmtree(staging)
        except OSError as exc:
            logger.warning("could not store build cache entry %s in %s: %s", key, self.root, exc)
