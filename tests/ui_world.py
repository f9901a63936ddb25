"""A small real world for the UI's tests, made by the commands a user runs (README, "A first
session") in this process: a mock survey in shards, a one-epoch demo training, a demo grid
run and D05 at the demo preset, all recorded in a registry of their own."""

from __future__ import annotations

import os
from pathlib import Path

from typer.testing import CliRunner


def build_ui_world(root: Path) -> dict[str, Path | str]:
    from lenscal.cli import app

    registry = f"sqlite:///{root / 'registry.sqlite'}"
    os.environ["LENSCAL_REGISTRY_URL"] = registry
    results, data = root / "results", root / "demo-data"
    runner = CliRunner()

    def run(*args: str) -> None:
        result = runner.invoke(app, list(args), catch_exceptions=False)
        assert result.exit_code == 0, f"lenscal {' '.join(args)}:\n{result.output}"

    run("demo-data", "--out", str(data), "--n", "200")
    shards = data / "shards"
    model = results / "runs" / "demo_resnet"
    run(
        "train", "--config", "demo_resnet", "--preset", "demo",
        "--set", f"dataset.shards_dir={shards}", "--set", "train.epochs=1", "--set", f"train.out_dir={model}",
    )  # fmt: skip
    run(
        "grid", "run", "--grid", "mock_demo", "--preset", "demo", "--hosts", str(shards),
        "--model", str(model / "best"), "--out", str(results / "grid-demo"),
    )  # fmt: skip
    run(
        "grid", "run", "--grid", "mock_demo", "--preset", "demo", "--hosts", str(shards),
        "--model", str(model / "best"), "--out", str(results / "grid-demo-seed2"), "--seed", "2",
    )  # fmt: skip
    run("selection", "compare", str(results / "grid-demo"), str(results / "grid-demo-seed2"), "--force",
        "--out", str(results / "selection-compare" / "demo" / "compare"))  # fmt: skip
    run("diagnose", "D05", "--preset", "demo", "--hosts", str(shards), "--model", "demo_resnet",
        "--out", str(results / "D05_demo"))  # fmt: skip
    return {"registry": registry, "results": results, "shards": shards}
