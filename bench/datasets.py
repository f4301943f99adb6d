"""The benchmark's datasets: how each file is generated, its template, how COPY reads it.

- `mixed` (the default of W1, W2, W3 and M): customers' mess (mixed.py), UTF-8 with a BOM,
  about 7% of its rows rejected; template-mixed.json.
- `cp1252`: the same rows in Windows-1252, as Excel writes "CSV" in Western Europe.
- `plain`: the issue's first file (data.py): plain ASCII e-mails, French mobiles, every row
  imported; template.json. Workload A, and W4, W5, W6, D and S, always load it.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from . import data, mixed

HERE = Path(__file__).parent


@dataclass(frozen=True)
class Dataset:
    """`write(path, seed, count, changed)` writes a file of `count` rows; `template` is the
    account's for it (its `file` names the upload); `encoding`, the Python codec it is
    written in; `copy_encoding`, PostgreSQL's name of it. `clean`: COPY reads every row of its
    files, which the baselines then load as they are."""

    name: str
    template: dict
    write: Callable
    encoding: str
    copy_encoding: str
    clean: bool


def _template(name, encoding=None):
    template = json.loads((HERE / name).read_text("utf-8"))
    if encoding:
        template["format"]["encoding"] = encoding
    return template


PLAIN = Dataset("plain", _template("template.json"), data.write, "utf-8", "UTF8", clean=True)
MIXED = Dataset("mixed", _template("template-mixed.json"),
                partial(mixed.write, encoding="utf-8-sig"), "utf-8-sig", "UTF8", clean=False)
CP1252 = Dataset("cp1252", _template("template-mixed.json", "cp1252"),
                 partial(mixed.write, encoding="cp1252"), "cp1252", "WIN1252", clean=False)
DATASETS = {dataset.name: dataset for dataset in (MIXED, CP1252, PLAIN)}
