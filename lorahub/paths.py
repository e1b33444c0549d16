"""Where lorahub keeps its files: the home (registry, managed store, previews) and the cache."""

from __future__ import annotations

import os
from pathlib import Path


def lorahub_home() -> Path:
    """The registry home: `LORAHUB_HOME`, else the per-user data dir."""
    env = os.environ.get("LORAHUB_HOME")
    if env:
        return Path(env).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_data_dir("lorahub"))


def lorahub_cache() -> Path:
    """The cache of built artefacts (tiny models): `LORAHUB_CACHE`, else the per-user cache dir."""
    env = os.environ.get("LORAHUB_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_cache_dir("lorahub"))


def registry_path() -> Path:
    """The SQLite file of the registry."""
    return lorahub_home() / "registry.db"


def store_dir() -> Path:
    """The managed store: adapters copied in (`add --copy`), trained, merged or pulled."""
    return lorahub_home() / "adapters"


def previews_dir() -> Path:
    """Preview images, kept beside the registry rather than inside the SQLite file."""
    return lorahub_home() / "previews"
