"""src.app in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright): upload, restore,
download, and a corrupt upload. Marked ``browser``: skipped unless asked for (``make test-browser`` installs
what they need and runs them), and skipped cleanly when Gradio, Playwright or the browser is missing.

The app runs as its own process, started as the README says (``python -m src.app --ckpt ...``), on a free port.
``UIR_APP_TEST_CKPT`` swaps in another checkpoint (e.g. a trained one), ``UIR_APP_TEST_DEGRADATION`` another
degradation of the upload (default: Gaussian noise, σ = 25); ``UIR_APP_SCREENSHOT`` saves the page with the restored
image there (experiments/app_screenshot.png: a DiffUIR-T demo checkpoint, ``low_light``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from src.metrics.fidelity import psnr
from tests.conftest import ROOT

CHROMIUM = os.environ.get("UIR_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
_missing = [name for name in ("gradio", "playwright") if importlib.util.find_spec(name) is None]
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(bool(_missing), reason=f"not installed: {', '.join(_missing)} (make test-browser)"),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no browser at {CHROMIUM} (apt-get install chromium)"),
]
START_TIMEOUT = 240  # s: importing Gradio and torch on two busy cores


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    if os.environ.get("UIR_APP_TEST_CKPT"):
        return Path(os.environ["UIR_APP_TEST_CKPT"])
    from tests.test_eval import save_tiny_checkpoint

    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A clean photo (scikit-image's astronaut, 192×144) and its degraded version, the upload."""
    from skimage import data

    from src.data.degradations import degrade, gaussian_noise

    folder = tmp_path_factory.mktemp("images")
    clean = np.asarray(Image.fromarray(data.astronaut()).resize((192, 144), Image.Resampling.BOX))
    task = os.environ.get("UIR_APP_TEST_DEGRADATION")  # another degradation of src.data.degradations
    degraded = (degrade(clean.astype(np.float32) / 255, task, np.random.default_rng(1)) if task else
             gaussian_noise(clean.astype(np.float32) / 255, 25, np.random.default_rng(0)))  # σ = 25 / 255
    Image.fromarray(clean).save(folder / "clean.png")
    Image.fromarray((np.clip(degraded, 0, 1) * 255).round().astype(np.uint8)).save(folder / "degraded.png")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    return folder


@pytest.fixture(scope="module")
def app_url(ckpt, tmp_path_factory):
    """``python -m src.app --ckpt <ckpt>`` on a free port, in an empty working folder; stopped with SIGTERM."""
    port = _free_port()
    cwd = tmp_path_factory.mktemp("app_cwd")
    tmp_root = tmp_path_factory.mktemp("app_tmp")  # the app's mkdtemp lands here: checked for clean-up below
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_root), "GRADIO_ANALYTICS_ENABLED": "False"}
    log = (cwd.parent / "app.log").open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "src.app", "--ckpt", str(ckpt), "--port", str(port),
                             "--device", "cpu"], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            pytest.fail(f"src.app exited with {proc.returncode}:\n{log.read()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(1)
    else:
        proc.kill()
        pytest.fail(f"src.app did not listen on {port} within {START_TIMEOUT} s")
    yield url
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.seek(0)
    output = log.read()
    assert "Running on local URL:  http://127.0.0.1:" in output  # bound to localhost
    assert list(cwd.iterdir()) == [], "the app wrote into its working directory"
    assert list(tmp_root.iterdir()) == [], "the app left files behind in its temporary folder"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="uir-chromium-")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS, accept_downloads=True,
            viewport={"width": 1360, "height": 940})
        yield context
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


def _open(browser, url):
    page = browser.new_page()
    page.goto(url)
    page.wait_for_selector("#restore", timeout=60_000)
    return page


def _wait_uploaded(page, stem: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#uploads")).to_contain_text(stem, timeout=90_000)  # Gradio lists the uploaded file


def test_upload_restore_download_matches_the_command_line(app_url, browser, ckpt, images, tmp_path):
    page = _open(browser, app_url)
    page.fill("#seed input", "3")
    page.locator("#uploads input[type=file]").set_input_files(str(images / "degraded.png"))
    _wait_uploaded(page, "degraded")
    page.click("#restore")
    link = page.locator("#downloads a[download]").first
    link.wait_for(timeout=180_000)
    with page.expect_download() as info:
        link.click()
    downloaded = tmp_path / info.value.suggested_filename
    info.value.save_as(downloaded)
    assert downloaded.name == "degraded_restored.png"

    summary = page.locator("#summary").inner_text()
    assert "Restored 1 of 1 image(s)" in summary and "192×144, RGB, 8-bit" in summary
    assert page.locator("#slider img").count() >= 2  # the before/after pair is shown
    page.wait_for_timeout(500)
    page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
    if os.environ.get("UIR_APP_SCREENSHOT"):
        page.screenshot(path=os.environ["UIR_APP_SCREENSHOT"], full_page=True)

    from src.restore import main as restore_main

    assert restore_main([str(images / "degraded.png"), "--ckpt", str(ckpt), "--out", str(tmp_path / "cli"),
                         "--device", "cpu", "--seed", "3", "--no-progress"]) == 0
    cli = tmp_path / "cli" / "degraded.png"
    ours, theirs, clean = (np.asarray(Image.open(p)) for p in (downloaded, cli, images / "clean.png"))
    assert ours.shape == clean.shape == (144, 192, 3)
    assert abs(psnr(ours, clean) - psnr(theirs, clean)) < 1e-6
    assert downloaded.read_bytes() == cli.read_bytes()
    page.close()


def test_corrupt_upload_shows_the_readers_error(app_url, browser, images):
    from src.utils.images import ImageReadError, read_image

    with pytest.raises(ImageReadError) as err:
        read_image(images / "corrupt.png")
    page = _open(browser, app_url)
    page.locator("#uploads input[type=file]").set_input_files(str(images / "corrupt.png"))
    _wait_uploaded(page, "corrupt")
    page.click("#restore")
    message = f"corrupt.png: {err.value.reason}"
    page.get_by_text(message, exact=False).first.wait_for(timeout=60_000)
    assert page.locator("#downloads a[download]").count() == 0
    page.close()
