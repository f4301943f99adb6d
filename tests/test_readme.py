"""The README's examples stay true."""

import configparser
import json
import re
from pathlib import Path

from worker.template import check

README = (Path(__file__).parent.parent / "README.md").read_text("utf-8")


def test_every_json_template_in_the_readme_is_valid():
    blocks = re.findall(r"```json\n(.*?)```", README, re.S)
    assert blocks
    for block in blocks:
        check(json.loads(block))


def test_the_readme_names_the_two_commands():
    assert "make run" in README and "make test" in README
    assert "make test" in (Path(__file__).parent.parent / ".ci" / "run").read_text()


def test_every_file_the_walkthrough_uploads_is_in_a_fresh_clone():
    root = Path(__file__).parent.parent
    uploaded = [path for quoted, plain in re.findall(r'^curl -T (?:"(\S+)"|(\S+)) ', README, re.M)
                for path in braces(quoted or plain)]
    assert uploaded
    for path in uploaded:
        assert path.startswith("/") or (root / path).is_file(), f"{path} is not in the clone"


def braces(path):
    """The paths curl's `-T "dir/{a,b}"` uploads, in turn."""
    head, found, rest = path.partition("{")
    if not found:
        return [path]
    names, _, tail = rest.partition("}")
    return [head + name + tail for name in names.split(",")]


def test_the_package_declares_its_license_as_an_spdx_expression():
    # A license classifier makes setuptools warn three times on every install
    config = configparser.ConfigParser()
    config.read(Path(__file__).parent.parent / "setup.cfg")
    assert config["metadata"]["license_expression"] == "MIT"
    assert "License ::" not in config["metadata"]["classifiers"]
