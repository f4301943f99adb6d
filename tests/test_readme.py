"""The README's examples stay true."""

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
