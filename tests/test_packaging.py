"""What an installed dropimport holds: every package of the tree (the image installs it with
`pip install .`, not as the editable install of the tests)."""

import configparser
from fnmatch import fnmatchcase
from pathlib import Path

ROOT = Path(__file__).parent.parent
TOP = ("agent", "worker", "schemas", "dropimport")


def test_every_package_of_the_tree_is_shipped():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    assert config["options"]["packages"].strip() == "find:"
    include = [p.strip() for p in config["options.packages.find"]["include"].split(",")]
    packages = {".".join(init.parent.relative_to(ROOT).parts)
                for top in TOP for init in (ROOT / top).rglob("__init__.py")}
    assert {"worker.read", "worker.write", "worker.runtime", "worker.cli"} <= packages
    shipped = {p for p in packages if any(fnmatchcase(p, pattern) for pattern in include)}
    assert shipped == packages
