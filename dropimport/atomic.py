"""Writing files that other processes read while they change: accounts, templates, file
events, pull state, markers and reports."""

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    """Write a JSON document atomically: readers see the old file or the new one.

    The temporary file starts with a dot, so that the agent never takes one written in an
    import's folder for an upload (schemas.spool.is_pipeline_file).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=path.parent, prefix=".tmp-", delete=False
    ) as tmp:
        json.dump(document, tmp, ensure_ascii=False, indent=2)
        tmp.write("\n")
    os.replace(tmp.name, path)
