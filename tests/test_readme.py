"""The README's examples stay true."""

import configparser
import json
import re
from collections import Counter
from pathlib import Path

from worker.read.template import check

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text("utf-8")
# The pages a newcomer reads: the README, the reference in docs/, and the benchmark's own
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
         *sorted((ROOT / "bench").glob("*.md"))]
FENCE = re.compile(r"^ *```.*?^ *```", re.M | re.S)


def test_every_json_template_in_the_readme_is_valid():
    # Other JSON (a webhook's body, a message) is fenced without a language: ```json is a template
    blocks = [(page.name, block) for page in PAGES
              for block in re.findall(r"```json\n(.*?)```", page.read_text("utf-8"), re.S)]
    assert blocks
    for name, block in blocks:
        try:
            check(json.loads(block))
        except Exception as error:
            raise AssertionError(f"a template in {name}: {error}") from error


def test_every_relative_link_points_to_a_page_and_a_heading_that_exist():
    links = [(page, target) for page in PAGES
             for target in re.findall(r"\]\(([^)\s]+)\)", FENCE.sub("", page.read_text("utf-8")))
             if not re.match(r"[a-z]+:", target)]
    assert links
    for page, target in links:
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target}: no such file"
        if anchor:
            assert anchor in anchors(linked), f"{page.name}: {target}: no such heading"


def anchors(page):
    """The #anchors GitHub gives a page's headings: lowercase, punctuation out, spaces to -."""
    found, seen = set(), Counter()
    for heading in re.findall(r"^#+ +(.+?) *$", FENCE.sub("", page.read_text("utf-8")), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        found.add(f"{slug}-{seen[slug]}" if seen[slug] else slug)  # a repeated heading: -1, -2
        seen[slug] += 1
    return found


def test_the_readme_names_the_two_commands():
    assert "make run" in README and "make test" in README
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_every_file_the_walkthrough_uploads_is_in_a_fresh_clone():
    uploaded = [path for quoted, plain in re.findall(r'^curl -T (?:"(\S+)"|(\S+)) ', README, re.M)
                for path in braces(quoted or plain)]
    assert uploaded
    for path in uploaded:
        assert path.startswith("/") or (ROOT / path).is_file(), f"{path} is not in the clone"


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
    config.read(ROOT / "setup.cfg")
    assert config["metadata"]["license_expression"] == "MIT"
    assert "License ::" not in config["metadata"]["classifiers"]
