"""A real browser over a running `lenscal ui`: Debian's chromium, headless, driven by
selenium through Debian's chromium-driver. It loads the registry page, a record page, the
D05 report and a grid page; every <img> must have decoded (naturalWidth > 0) and the console
must hold no error. A screenshot of each page is kept (``$LENSCAL_SCREENSHOTS``, default
``results/ui-screenshots``: CI keeps it as an artifact). `make test` installs the browser;
without it the test fails, saying how to install it."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import REPO

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def _need_browser() -> None:
    if not (CHROMIUM and DRIVER):
        pytest.fail("Debian's chromium and chromium-driver are not installed: `make browser` installs them")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Path | str]]]:
    _need_browser()
    from tests.ui_world import build_ui_world

    root = tmp_path_factory.mktemp("ui-browser")
    mp = pytest.MonkeyPatch()
    mp.setenv("LENSCAL_HOME", str(root / "home"))
    mp.chdir(root)
    try:
        world = build_ui_world(root)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [sys.executable, "-m", "lenscal.cli", "ui", "--port", str(port),
               "--results", str(world["results"]), "--registry", str(world["registry"])]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                if proc.poll() is not None:
                    pytest.fail(f"lenscal ui exited: {proc.stdout.read() if proc.stdout else ''}")
                time.sleep(0.3)
            yield f"http://127.0.0.1:{port}", world
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    _need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1800",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


SHOTS = Path(os.environ.get("LENSCAL_SCREENSHOTS") or REPO / "results" / "ui-screenshots")


@pytest.mark.parametrize("name", ["registry", "record", "d05-report", "grid"])
def test_page_loads_with_every_image_and_no_console_error(
    served: tuple[str, dict[str, Path | str]], browser: object, name: str
) -> None:
    base, _world = served
    driver: object = browser
    driver.get(f"{base}/api/records?kind=diagnostic")  # type: ignore[attr-defined]
    d05 = re.search(r'"id":\s*"(D05[^"]+)"', driver.page_source).group(1)  # type: ignore[attr-defined,union-attr]
    path = {
        "registry": "/registry",
        "record": f"/record/{d05}",
        "d05-report": "/results/results/D05_demo",
        "grid": "/results/results/grid-demo",
    }[name]
    driver.get_log("browser")  # type: ignore[attr-defined]  # (drop what the JSON page logged)
    driver.get(base + path)  # type: ignore[attr-defined]
    deadline = time.monotonic() + 30
    script = "return Array.from(document.images).every(i => i.complete)"
    while not driver.execute_script(script) and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.2)
    images = driver.execute_script(  # type: ignore[attr-defined]
        "return Array.from(document.images).map(i => [i.getAttribute('src'), i.naturalWidth])"
    )
    if name in ("d05-report", "grid"):
        assert images, f"{path}: no figures on the page"
    broken = [src for src, width in images if not width]
    assert not broken, f"{path}: images that did not load: {broken}"
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]  # type: ignore[attr-defined]
    assert not errors, f"{path}: console errors: {errors}"
    SHOTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.body.scrollHeight")  # type: ignore[attr-defined]
    driver.set_window_size(1400, min(max(int(height), 900), 6000))  # type: ignore[attr-defined]
    assert driver.save_screenshot(str(SHOTS / f"{name}.png"))  # type: ignore[attr-defined]
    driver.set_window_size(1400, 1800)  # type: ignore[attr-defined]
