"""The documentation stays true: README short, the layer table the layer test's, the CLI
reference generated from today's --help, no pointer to files the repository lacks."""

from __future__ import annotations

import re
import subprocess
import sys

from .conftest import REPO
from .test_architecture import LAYERS

DOCS = REPO / "docs"


def test_readme_is_short_and_its_links_resolve() -> None:
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    targets = re.findall(r"\]\(([^)#]+)\)", text)
    assert targets, "the README links to the docs"
    missing = [t for t in targets if not t.startswith("http") and not (REPO / t).exists()]
    assert not missing, missing


def test_the_architecture_page_shows_the_layer_tests_table() -> None:
    page = (DOCS / "architecture.md").read_text()
    rows = re.findall(r"^\| (\d) [a-zA-Z ]+ \| (.+) \|$", page, flags=re.MULTILINE)
    documented = {int(n): set(re.findall(r"`([a-z_]+)`", packages)) for n, packages in rows}
    assert documented == dict(enumerate(LAYERS)), "docs/architecture.md's layer table differs from the test's"


def test_the_cli_reference_is_generated_from_todays_help() -> None:
    run = subprocess.run(
        [sys.executable, str(DOCS / "make_cli_reference.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr + "\nrun `make docs` to regenerate docs/cli.md"


def test_no_file_points_to_documents_the_repository_lacks() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    offenders = []
    for name in tracked:
        path = REPO / name
        if path.suffix not in {".py", ".md", ".yaml", ".yml", ".toml", ".proto", ".sh", ".txt", ""}:
            continue
        if name == "tests/test_docs.py" or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for document in ("DESIGN.md", "DOMAIN.md", "ANCHORS.md"):
            if document in text:
                offenders.append(f"{name}: {document}")
    assert not offenders, offenders
