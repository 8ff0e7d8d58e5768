"""File helpers: streamed hashing and atomic writes (a reader never sees a half-written file)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

_BLOCK = 1 << 20


def sha256_file(path: str | Path) -> bytes:
    """sha256 (32 bytes) of a file's bytes, streamed, to compare with a hash recorded on chain."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.digest()


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` through ``path.part`` and an atomic rename."""
    path = Path(path)
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(part, path)
