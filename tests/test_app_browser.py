"""src.app and the report page in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright), as a
first-time user meets them, on a phone (390×844) and a desktop (1280×900): Restore reachable without scrolling, the
estimate before it, progress per step, results scrolled into view, tables that do not break words, downloads that
match the command line, non-images refused at upload, Stop, the queue of a second visitor, a closed tab ending its
job, and the report page no wider than the window. Marked ``browser``: skipped unless asked for (``make
test-browser`` installs what they need and runs them), and skipped cleanly when Gradio, Playwright or the browser is
missing.

The app runs as its own process, started as the README says (``python -m src.app --ckpt ...``), on a free port.
``UIR_APP_TEST_CKPT`` swaps in another checkpoint (e.g. a trained one), ``UIR_APP_TEST_DEGRADATION`` another
degradation of the upload (default: Gaussian noise, σ = 25); ``UIR_APP_SCREENSHOT`` saves the desktop page with the
restored image there (experiments/app_screenshot.png: a DiffUIR-T demo checkpoint, ``low_light``);
``UIR_APP_SCREENSHOTS`` a folder for every screenshot taken (``make test-browser``: experiments/app/), for a
reviewer to compare the two widths.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
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
START_TIMEOUT = 480  # s: importing Gradio and torch, loading and timing the model, on two busy cores


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


PHONE, DESKTOP = {"width": 390, "height": 844}, {"width": 1280, "height": 900}


def _shots(tmp_path) -> Path:
    folder = Path(os.environ.get("UIR_APP_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def big_image(tmp_path_factory):
    """A 2400×1600 photo: 24 tiles of 512 px, long enough to stop, queue behind and abandon."""
    from skimage import data

    path = tmp_path_factory.mktemp("big") / "big.png"
    Image.fromarray(data.astronaut()).resize((2400, 1600), Image.Resampling.BILINEAR).save(path)
    return path


@pytest.fixture(scope="module")
def app(ckpt, tmp_path_factory):
    """``python -m src.app --ckpt <ckpt>`` on a free port, in an empty working folder; stopped with SIGTERM.
    Yields (url, log file)."""
    port = _free_port()
    cwd = tmp_path_factory.mktemp("app_cwd")
    tmp_root = tmp_path_factory.mktemp("app_tmp")  # the app's mkdtemp lands here: checked for clean-up below
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_root), "GRADIO_ANALYTICS_ENABLED": "False"}
    log_path = cwd.parent / "app.log"
    log = log_path.open("w+")
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
    yield url, log_path
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.seek(0)
    output = log.read()
    assert "Running on local URL:  http://127.0.0.1:" in output  # bound to localhost
    assert "Traceback" not in output, output[-3000:]  # refusals, stops and closed tabs are one line each
    assert list(cwd.iterdir()) == [], "the app wrote into its working directory"
    assert list(tmp_root.iterdir()) == [], "the app left files behind in its temporary folder"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


def _open(browser, url, viewport=DESKTOP):
    context = browser.new_context(viewport=viewport, accept_downloads=True)
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("#restore", timeout=60_000)
    return page


def _wait_uploaded(page, stem: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#uploads")).to_contain_text(stem, timeout=90_000)  # Gradio lists the uploaded file


def _status(page) -> str:
    return page.locator("#status").inner_text()


def _wait_status(page, *words: str, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = _status(page)
        if any(w in text for w in words):
            return text
        page.wait_for_timeout(250)
    raise AssertionError(f"status never said any of {words}: {_status(page)!r}")


def _fits(page, width: int) -> None:
    """Nothing wider than the window: no sideways scrolling of the page."""
    assert page.evaluate("document.documentElement.scrollWidth") <= width


# words broken inside a table cell (the phone's "tim e"): a word whose letters lie on more than one line
BROKEN_WORDS = """sel => { const broken = [];
  for (const cell of document.querySelectorAll(sel)) {
    const walk = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walk.nextNode(); node; node = walk.nextNode()) {
      for (const m of node.textContent.matchAll(/\\S+/g)) {
        const r = document.createRange(); r.setStart(node, m.index); r.setEnd(node, m.index + m[0].length);
        if (new Set([...r.getClientRects()].map(x => Math.round(x.top))).size > 1) broken.push(m[0]);
      } } }
  return broken; }"""


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_restore_on_phone_and_desktop_matches_the_command_line(app, browser, ckpt, images, viewport, tmp_path):
    url, _ = app
    name = "phone" if viewport is PHONE else "desktop"
    shots = _shots(tmp_path)
    page = _open(browser, url, viewport)
    restore = page.locator("#restore").bounding_box()
    assert restore["y"] + restore["height"] <= viewport["height"]  # Restore reachable without scrolling
    _fits(page, viewport["width"])
    info = page.locator("#model-info").inner_text()
    assert "Trained to remove:" in info and "no degradation detector" in info and "parameters" in info
    assert "/" not in info.split("\n")[0]  # a readable model line, not a path
    page.screenshot(path=str(shots / f"app_{name}_start.jpg"), quality=80)

    page.fill("#seed input", "3")
    page.locator("#uploads input[type=file]").set_input_files(str(images / "degraded.png"))
    _wait_uploaded(page, "degraded")
    from playwright.sync_api import expect

    expect(page.locator("#estimate")).to_contain_text("per megapixel measured", timeout=60_000)
    assert "1 image, 0.03 megapixels: about" in page.locator("#estimate").inner_text()
    page.click("#restore")
    assert "Done in" in _wait_status(page, "Done", "Failed", "Stopped", "Nothing")
    link = page.locator("#downloads a[download]").first
    link.wait_for(timeout=60_000)
    page.wait_for_timeout(1000)  # the scroll to the results
    slider = page.locator("#slider").bounding_box()
    assert 0 <= slider["y"] < viewport["height"] * 0.6  # the results are in view
    _fits(page, viewport["width"])
    assert page.locator("#summary th").count() >= 3
    assert page.evaluate(BROKEN_WORDS, "#summary th, #summary td") == []  # no word broken across lines
    page.screenshot(path=str(shots / f"app_{name}_restored.jpg"), quality=80)
    page.screenshot(path=str(shots / f"app_{name}_restored_full.jpg"), quality=80, full_page=True)
    if os.environ.get("UIR_APP_SCREENSHOT") and viewport is DESKTOP:
        page.screenshot(path=os.environ["UIR_APP_SCREENSHOT"], full_page=True)

    with page.expect_download() as info:
        link.click()
    downloaded = tmp_path / info.value.suggested_filename
    info.value.save_as(downloaded)
    assert downloaded.name == "degraded_restored.png"
    summary = page.locator("#summary").inner_text()
    assert "Restored 1 of 1 image(s)" in summary and "192×144, RGB, 8-bit" in summary
    assert page.locator("#slider img").count() >= 2  # the before/after pair is shown

    from src.restore import main as restore_main

    assert restore_main([str(images / "degraded.png"), "--ckpt", str(ckpt), "--out", str(tmp_path / "cli"),
                         "--device", "cpu", "--seed", "3", "--no-progress"]) == 0
    cli = tmp_path / "cli" / "degraded.png"
    ours, theirs, clean = (np.asarray(Image.open(p)) for p in (downloaded, cli, images / "clean.png"))
    assert ours.shape == clean.shape == (144, 192, 3)
    assert abs(psnr(ours, clean) - psnr(theirs, clean)) < 1e-6
    assert downloaded.read_bytes() == cli.read_bytes()
    page.context.close()


def test_non_images_are_refused_at_upload_and_settings_in_the_apps_words(app, browser, images, tmp_path):
    from playwright.sync_api import expect

    from src.utils.images import ImageReadError, read_image

    url, log_path = app
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(ImageReadError) as err:
        read_image(images / "corrupt.png")
    page = _open(browser, url, PHONE)
    page.locator("#uploads input[type=file]").set_input_files([str(images / "corrupt.png"), str(tmp_path / "notes.txt"),
                                                               str(images / "degraded.png")])
    summary = page.locator("#summary")
    expect(summary).to_contain_text("notes.txt", timeout=90_000)  # refused at upload, in the results panel
    assert f"corrupt.png: {err.value.reason}" in summary.inner_text() and "not an image" in summary.inner_text()
    expect(page.locator("#uploads")).not_to_contain_text("notes.txt")
    assert "Refused at upload: corrupt.png, notes.txt" in _status(page)  # also right under Restore
    listed = page.locator("#uploads").inner_text()
    assert "degraded" in listed and "corrupt" not in listed
    _fits(page, PHONE["width"])
    page.screenshot(path=str(_shots(tmp_path) / "app_phone_refused.jpg"), quality=80, full_page=True)
    log = log_path.read_text()
    assert "src.app: refused upload notes.txt: not an image" in log and "refused upload corrupt.png: " in log

    page.fill("#overlap input", "600")  # more than the tile: refused in the page's own words
    page.locator("#overlap input").press("Enter")
    expect(page.locator("#estimate")).to_contain_text("Tile overlap 600: must be smaller than Tile size 512",
                                                      timeout=60_000)
    page.click("#restore")
    expect(summary).to_contain_text("Tile overlap 600: must be smaller than Tile size 512", timeout=60_000)
    assert "--tile" not in summary.inner_text()
    page.context.close()


def test_stop_queue_and_closed_tab(app, browser, images, big_image, tmp_path):
    from playwright.sync_api import expect

    url, log_path = app
    shots = _shots(tmp_path)
    first, second = _open(browser, url, PHONE), _open(browser, url, DESKTOP)  # two visitors
    first.locator("#uploads input[type=file]").set_input_files(str(big_image))
    _wait_uploaded(first, "big")
    first.fill("#steps input", "50")  # 24 tiles × 50 steps: long on any machine, so there is time to stop it
    first.locator("#steps input").press("Enter")
    expect(first.locator("#estimate")).to_contain_text("in 24 tiles of 512 px: about", timeout=60_000)
    queued_before = log_path.read_text().count(" queued: ")
    first.click("#restore")
    text = _wait_status(first, "step 1 of 50 done", timeout=300)  # progress inside the first tile
    assert "big.png · tile 1 of 24 · step 1 of 50 done" in text and "elapsed" in text
    value = float(first.locator("#status progress").get_attribute("value"))
    assert 0 < value < 0.05

    second.locator("#uploads input[type=file]").set_input_files(str(images / "degraded.png"))
    _wait_uploaded(second, "degraded")
    second.click("#restore")
    assert "1 job ahead of yours (you are number 2 in the queue)" in _wait_status(second, "queue")
    second.locator("#restore").click(force=True)  # again: one job per visitor at a time (disabled, or refused)
    second.wait_for_timeout(2000)
    assert log_path.read_text().count(" queued: ") == queued_before + 2
    assert "1 job ahead of yours" in _wait_status(second, "queue")
    first.screenshot(path=str(shots / "app_phone_running.jpg"), quality=80)
    second.screenshot(path=str(shots / "app_desktop_waiting.jpg"), quality=80)

    pressed = time.monotonic()
    first.click("#stop")
    assert "Stopped after" in _wait_status(first, "Stopped", timeout=120)
    stopped_in = time.monotonic() - pressed
    assert "Done in" in _wait_status(second, "Done", "Failed", timeout=300)  # the queue moved on
    assert "Restored 1 of 1" in second.locator("#summary").inner_text()
    assert first.locator("#downloads a[download]").count() == 0  # nothing written for the stopped job

    first.click("#restore")  # again, then the visitor closes the tab
    _wait_status(first, "step 1 of 50 done", timeout=300)
    first.context.close()
    closed, done_before = time.monotonic(), log_path.read_text().count(" done: 1 image(s)")
    second.click("#restore")
    while log_path.read_text().count(" done: 1 image(s)") == done_before:  # the second visitor's new job
        assert time.monotonic() - closed < 300, "the job after a closed tab did not finish in 5 min"
        second.wait_for_timeout(250)
    waited = time.monotonic() - closed
    assert "Done in" in _wait_status(second, "Done", "Failed")
    log = log_path.read_text()
    assert "Stop pressed by" in log and "stopped (Stop pressed)" in log
    abandoned = log.index("stopped (tab closed)")  # the abandoned job ended before the next one ran
    assert "its job is cancelled" in log and abandoned < log.rindex(" done: 1 image(s)")
    print(f"stopped {stopped_in:.1f} s after Stop; after the tab closed the next job was done in {waited:.1f} s")
    second.context.close()


def test_report_page_fits_a_phone_and_a_desktop(browser, tmp_path):
    from src.metrics.perceptual import MetricUnavailable, missing_weights
    from src.reporting.report import SetResult, aggregate, write_report

    pytest.importorskip("matplotlib")
    records = [{"task": t, "psnr_in": 20.0 + i, "ssim_in": 0.5, "psnr": 26.0 + i, "ssim": 0.8}
               for i, t in enumerate(["noise", "low_light", "haze", "rain", "snow"] * 2)]
    rows = aggregate(records, ["psnr", "ssim"])
    for row in rows:
        row["paper_psnr"], row["paper_ssim"] = ("23.01", "0.880") if row["task"] == "low_light" else (None, None)
        row["paper_source"] = "DiffUIR T1 'Enhancement' DiffUIR-T(ours)" if row["task"] == "low_light" else ""
    weights = tmp_path / "a" / "rather" / "long" / "folder" / "of" / "metric_weights"
    unavailable = {m: MetricUnavailable(m, missing_weights(m, weights)) for m in ("lpips", "fid")}
    result = SetResult("builtin", rows, ["psnr", "ssim", "lpips", "fid"], paper_metrics=["psnr", "ssim"])
    paths = write_report(tmp_path / "report", "diffuir_t_demo: evaluation", [result], unavailable,
                         {"checkpoint": str(tmp_path / "logs" / "diffuir_t_demo" / "runs" / "2026-12-03_14-00-00"
                                            / "checkpoints" / "last.ckpt"), "metric weights": str(weights)})
    shots = _shots(tmp_path)
    for viewport, name in ((PHONE, "phone"), (DESKTOP, "desktop")):
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        page.goto(paths["report_html"].as_uri())
        page.wait_for_load_state("load")
        _fits(page, viewport["width"])
        # every element ends inside the window; a wide table scrolls sideways inside its own box (.scroll)
        widest = page.evaluate("Math.max(...[...document.querySelectorAll('body *')].filter(e => "
                               "!e.parentElement.closest('.scroll')).map(e => e.getBoundingClientRect().right))")
        assert widest <= viewport["width"], f"an element reaches {widest} px"
        chart = page.locator("img.chart")
        assert chart.evaluate("img => img.naturalWidth") > 500 and chart.bounding_box()["width"] <= viewport["width"]
        assert page.get_by_text("Metrics not computed").count() == 1
        page.screenshot(path=str(shots / f"report_{name}.jpg"), quality=80, full_page=True)
        context.close()
