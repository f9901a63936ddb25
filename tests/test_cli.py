"""The lenscal command as a user runs it: help everywhere, named errors, exit codes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lenscal.cli import app

from .conftest import LENSCAL, make_toy_cutouts

runner = CliRunner()
COMMANDS = [
    [],
    ["version"],
    ["info"],
    ["ingest"],
    ["split"],
    ["demo"],
    ["demo-data"],
    ["shards"],
    ["shards", "info"],
    ["shards", "verify"],
    ["mock-survey"],
    ["train"],
    ["export-onnx"],
    ["evaluate"],
    ["score"],
    ["score-survey"],
    ["plan"],
    ["meta"],
    ["meta", "fit"],
    ["serve"],
    ["serve", "scorer"],
    ["serve", "injector"],
    ["inject"],
    ["inject", "render"],
    ["inject", "sample"],
    ["registry"],
    *[
        ["registry", c]
        for c in (
            "list",
            "show",
            "add",
            "set-status",
            "record-results",
            "invalidate",
            "alias",
            "diff",
            "verify",
            "render",
            "import",
        )
    ],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "root")
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_info_on_real_cutout(real_cutout_paths: list[Path]) -> None:
    result = runner.invoke(app, ["info", "--json", str(real_cutout_paths[0])])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output.splitlines()[0])
    assert record["shape"] == [3, 101, 101] and set(record["bands"]) == {"g", "r", "z"}


def test_bad_input_exits_2_with_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"nope")
    run = subprocess.run([*LENSCAL, "info", str(bad)], capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.strip().startswith(f"error: {bad}: unreadable or truncated NPZ file")
    assert "Traceback" not in run.stderr


def test_ingest_then_shards_info_and_verify(tmp_path: Path) -> None:
    manifest = make_toy_cutouts(tmp_path / "c", 7)
    out = tmp_path / "s"
    result = runner.invoke(
        app,
        ["ingest", "--manifest", str(manifest), "--out", str(out), "--dtype", "float16", "--shard-size", "3"],
    )
    assert result.exit_code == 0, result.output
    assert "7 cutouts" in result.output and "3 shard(s) written" in result.output
    info = runner.invoke(app, ["shards", "info", str(out)])
    assert "7/7 cutouts (3, 101, 101) float16 in 3/3 shards; complete" in info.output
    assert runner.invoke(app, ["shards", "verify", str(out)]).exit_code == 0
    shard = out / "shard-00002.npy"
    data = bytearray(shard.read_bytes())
    data[-2] ^= 0x01
    shard.write_bytes(bytes(data))
    run = subprocess.run([*LENSCAL, "shards", "verify", str(out)], capture_output=True, text=True)
    assert run.returncode == 2 and "SHA-256 does not match" in run.stderr


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_demo_is_the_main_job_and_leaves_defaults_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`lenscal demo` (what `make demo` runs) with nothing configured: data, training, a local
    Prefect server and the services, D05 at the demo preset through its deployment, the
    registry rendered. Again: everything reused. Then `lenscal run D05 --watch` on its defaults."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    out = tmp_path / "demo"
    command = [*LENSCAL, "demo", "--out", str(out), "--n", "300"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    report = Path(summary["diagnostic/D05"]) / "report.md"
    assert report.is_file() and "bright_arc" in report.read_text()
    assert "D05" in (out / "EXPERIMENT_REGISTRY.md").read_text()
    assert (Path(summary["train/demo_resnet"]) / "model.onnx").is_file()
    again = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and "reused" in again.stdout, again.stderr[-3000:]
    assert json.loads((out / "summary.json").read_text())["diagnostic/D05"] == summary["diagnostic/D05"]
    rerun = subprocess.run(
        [*LENSCAL, "run", "D05", "--param", "preset=demo", "--watch"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert summary["diagnostic/D05"] in rerun.stdout
    # The output deleted, the registry kept: refused before any server starts, in one line
    # naming the lost bundle (it used to train again and fail late: "already Trained").
    shutil.rmtree(out)
    lost = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert lost.returncode == 2, lost.stdout[-3000:] + lost.stderr[-3000:]
    assert f"its bundle {out / 'results' / 'runs' / 'demo_resnet' / 'best'} is gone" in lost.stderr
    assert "Traceback" not in lost.stderr and "Prefect server" not in lost.stdout


# --- one option vocabulary ---------------------------------------------------------------


def _leaf_commands() -> dict[str, object]:
    """Every runnable command of ``lenscal`` by its words (``grid run``), from the click tree."""
    import typer.main

    found: dict[str, object] = {}

    def walk(command: object, words: list[str]) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in subcommands.items():
                walk(sub, [*words, name])
        else:
            found[" ".join(words)] = command

    walk(typer.main.get_command(app), [])
    return found


def _help_options(words: str) -> set[str]:
    result = runner.invoke(app, [*words.split(), "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return set(re.findall(r"(--[a-z0-9][a-z0-9-]*)", result.output))


#: The commands that score through the Scorer interface, and those that inject.
SCORING = {"score", "score-survey", "evaluate", "meta fit", "grid run", "diagnose"}
INJECTING = {"grid run", "grid replay", "diagnose"}


def test_every_command_that_scores_or_injects_takes_the_shared_options() -> None:
    from lenscal.commands.options import INJECTING_OPTIONS, SCORING_OPTIONS

    commands = _leaf_commands()
    assert set(commands) >= SCORING | INJECTING, sorted(commands)
    missing = {}
    for words in sorted(commands):
        options = _help_options(words)
        # A command that names a scorer or an injector at all takes the whole vocabulary.
        wanted = set()
        if words in SCORING or "--scorer" in options:
            wanted |= set(SCORING_OPTIONS)
        if words in INJECTING or "--injector" in options:
            wanted |= set(INJECTING_OPTIONS)
        if wanted - options:
            missing[words] = sorted(wanted - options)
        assert "--endpoint" not in options, f"{words}: --endpoint is a hidden alias now"
    assert not missing, missing


@pytest.mark.parametrize("words", sorted(SCORING))
def test_scorer_is_repeatable_and_endpoint_is_its_hidden_alias(words: str) -> None:
    command = _leaf_commands()[words]
    params = {p.name: p for p in command.params}  # type: ignore[attr-defined]
    scorer = next(p for p in params.values() if "--scorer" in p.opts)
    assert scorer.multiple, f"{words}: --scorer must be repeatable"
    aliases = [p for p in params.values() if "--endpoint" in p.opts]
    if words in ("score", "score-survey"):  # the commands that spelled it --endpoint before
        assert len(aliases) == 1
    for alias in aliases:
        assert alias.hidden and alias.multiple


def test_endpoint_still_works_and_says_it_is_deprecated(tmp_path: Path) -> None:
    # a closed port: the alias is parsed and used (the run fails to connect, naming the address)
    run = subprocess.run(
        [
            *LENSCAL,
            "score",
            "--endpoint",
            "127.0.0.1:9",
            "--shards",
            str(tmp_path),
            "--out",
            str(tmp_path / "s.pq"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "--endpoint is deprecated; use --scorer" in run.stderr
    assert run.returncode == 2
