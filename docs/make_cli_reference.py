"""Write docs/cli.md: every `lenscal` command's --help, generated (never edited by hand).

python docs/make_cli_reference.py          # rewrite docs/cli.md
python docs/make_cli_reference.py --check  # exit 1 when docs/cli.md is stale (the tests)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ["COLUMNS"] = "100"  # rich reads the width from here: the page is the same everywhere
os.environ["NO_COLOR"] = "1"
os.environ["TERMINAL_WIDTH"] = "100"

import typer.core
import typer.main
from typer.testing import CliRunner

from lenscal.cli import app

PAGE = Path(__file__).resolve().parent / "cli.md"


def commands() -> list[list[str]]:
    """Every command and group by its words, in the order `lenscal --help` lists them."""
    found: list[list[str]] = []

    def walk(command: object, words: list[str]) -> None:
        if not getattr(command, "hidden", False):
            found.append(words)
        for name, sub in (getattr(command, "commands", None) or {}).items():
            walk(sub, [*words, name])

    walk(typer.main.get_command(app), [])
    return found


def render() -> str:
    typer.core.HAS_RICH = False  # click's plain help: stable text, no box drawing
    runner = CliRunner()
    parts = [
        "# CLI reference",
        "",
        "Generated from each command's `--help` by `docs/make_cli_reference.py` (`make docs`);",
        "`tests/test_docs.py` fails when this page is stale. Commands that score or inject share",
        "one vocabulary (`lenscal/commands/options.py`): `--scorer ADDR` (repeatable),",
        "`--injector ADDR`, `--model BUNDLE|RUN_ID|NAME`, `--token-file`, `--tls-ca`, `--device`,",
        "`--registry`; `--endpoint` is a hidden, deprecated spelling of `--scorer`.",
        "",
        "Errors on bad input print one line (`error: <file>: <problem>`) and exit with status 2.",
        "Library log messages are hidden unless `lenscal --verbose ...`. `--device` is `auto`",
        "(CUDA when present, else CPU), `cpu`, `cuda` or `cuda:N` everywhere; an explicit `cuda`",
        "without a GPU is an error, never a silent fall-back.",
        "",
    ]
    for words in commands():
        result = runner.invoke(app, [*words, "--help"], terminal_width=100, env={"COLUMNS": "100"})
        title = " ".join(["lenscal", *words])
        help_text = "\n".join(line.rstrip() for line in result.output.strip().splitlines())
        parts += [f"## `{title}`", "", "```text", help_text, "```", ""]
    return "\n".join(parts)


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        if not PAGE.is_file() or PAGE.read_text() != text:
            print(f"{PAGE} is stale: run `make docs`", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text)
    print(f"-> {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
