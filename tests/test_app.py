"""src.app without a browser: the app's restore path gives src.restore's bytes (16-bit kept) and reports progress per
sampling step and tile; Stop ends a restoration within one step; the job queue (one job per visitor, positions,
cancel); the time estimate from the measured speed; what the page says about the model; refusals in the app's own
words; the CLI fails clearly without a checkpoint or without Gradio. The page itself is driven in Chromium by
tests/test_app_browser.py."""

import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from src.app import ModelCache, output_name, restore_files, summary_markdown
from src.inference import Restorer
from src.restore import main as restore_main
from src.utils.images import ImageReadError, encode_png16, read_image
from tests.test_eval import save_tiny_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


@pytest.fixture(scope="module")
def loaded(ckpt):
    return ModelCache([str(ckpt)], device="cpu", calibration_side=64).get(str(ckpt))


@pytest.fixture
def inputs(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "in"
    folder.mkdir()
    wide = (rng.random((40, 72, 3)) * 65535).astype(np.uint16)
    (folder / "wide.png").write_bytes(encode_png16(wide))
    Image.fromarray((rng.random((24, 20)) * 255).astype(np.uint8), mode="L").save(folder / "gray.jpg", quality=90)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    return folder


def test_app_restores_like_the_cli_keeps_bit_depth_and_reports_steps_and_tiles(ckpt, loaded, inputs, tmp_path):
    restorer = Restorer(loaded.model, "cpu", "32", None, 7, tile=32, overlap=8)
    ticks = []
    files = [str(inputs / "wide.png"), str(inputs / "broken.png"), str(inputs / "gray.jpg")]
    outcomes = restore_files(files, restorer, tmp_path / "app", None, lambda f, d: ticks.append((f, d)))
    assert [o.name for o in outcomes] == ["wide.png", "broken.png", "gray.jpg"]  # upload order
    tiles, steps = restorer.num_tiles(40, 72), loaded.steps
    assert tiles > 1 and steps > 1  # the 40×72 image is tiled, the sampler takes several steps
    fractions = [f for f, _ in ticks]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0) and fractions[0] == 0
    details = [d for _, d in ticks]
    for k in range(1, steps + 1):  # every step of every tile is reported, e.g. "wide.png (1 of 2) · tile 2 of 4 · …"
        assert any(f"wide.png (1 of 2) · tile {tiles} of {tiles} · step {k} of {steps} done" == d for d in details)
        assert f"gray.jpg (2 of 2) · step {k} of {steps} done" in details
    assert len([d for d in details if " done" in d]) == (tiles + 1) * steps

    assert restore_main([*files, "--ckpt", str(ckpt), "--out", str(tmp_path / "cli"), "--device", "cpu",
                         "--seed", "7", "--tile", "32", "--tile-overlap", "8", "--no-progress"]) == 1  # broken.png
    for o, cli_name in ((outcomes[0], "wide.png"), (outcomes[2], "gray.jpg")):
        assert o.output.name == output_name(inputs / cli_name)
        assert o.output.read_bytes() == (tmp_path / "cli" / cli_name).read_bytes()
    wide = read_image(outcomes[0].output)
    assert wide.bit_depth == 16 and (wide.width, wide.height) == (72, 40)
    assert read_image(outcomes[2].output).grayscale and "16-bit" in outcomes[0].size
    assert outcomes[0].before.dtype == np.uint8 and outcomes[0].after.shape == (40, 72, 3)


def test_bad_files_are_refused_with_the_readers_message(loaded, inputs, tmp_path):
    restorer = Restorer(loaded.model, "cpu", "32", None, 0, tile=0)
    text_file = inputs / "notes.png"
    text_file.write_text("not an image")
    outcomes = restore_files([str(text_file), str(inputs / "broken.png")], restorer, tmp_path / "out", None)
    reasons = {o.name: o.error for o in outcomes}
    for name in ("notes.png", "broken.png"):  # word for word what src.restore reports
        with pytest.raises(ImageReadError) as err:
            read_image(inputs / name)
        assert reasons[name] == err.value.reason and "image" in reasons[name]
    assert not (tmp_path / "out").exists()
    page = summary_markdown(outcomes, False, 0.1, "info")
    assert "Restored 0 of 2" in page and f"- `notes.png`: {reasons['notes.png']}" in page


def test_summary_lists_degradation_time_and_notes():
    from src.app import Outcome

    page = summary_markdown([Outcome("a.png", output=None, size="8×8, RGB, 8-bit", degradation="rain", seconds=1.5,
                                     notes="x"), Outcome("b.png", error="no such file")], True, 2.0, "M")
    assert "| image | size | detected degradation | time | notes |" in page
    assert "| a.png | 8×8, RGB, 8-bit | rain | 1.50 s | x |" in page and "- `b.png`: no such file" in page


def test_cli_without_checkpoint_or_gradio_fails_clearly(ckpt, tmp_path, capsys, monkeypatch):
    import src.inference
    from src.app import main

    monkeypatch.setattr(src.inference, "DEFAULT_WEIGHTS", tmp_path / "no_shipped_weights")
    assert main([]) == 2
    assert "no checkpoint: pass --ckpt PATH" in capsys.readouterr().err
    assert main(["--ckpt", str(tmp_path / "missing.ckpt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "gradio", None)  # what `import gradio` meets when it is not installed
    assert main(["--ckpt", str(ckpt)]) == 2
    assert "needs Gradio, an optional extra: pip install -e '.[app]'" in capsys.readouterr().err


def test_output_names_keep_the_format_or_fall_back_to_png():
    assert output_name(Path("x/photo.tif")) == "photo_restored.tif"
    assert output_name(Path("scan.JPG")) == "scan_restored.JPG"
    assert output_name(Path("blob.xyz")) == "blob_restored.png"


def test_an_export_folder_restores_like_its_checkpoint(ckpt, inputs, tmp_path):
    from src.export import export

    folder = tmp_path / "exported"
    export(ckpt, "safetensors", folder)
    outputs = []
    for source in (str(ckpt), str(folder)):
        loaded = ModelCache([source], device="cpu", calibration_side=32).get(source)
        assert "parameters" in loaded.info
        restorer = Restorer(loaded.model, "cpu", "32", None, 1, tile=0)
        (outcome,) = restore_files([str(inputs / "gray.jpg")], restorer, tmp_path / Path(source).name, None)
        outputs.append(outcome.output.read_bytes())
    assert outputs[0] == outputs[1]


def test_stop_ends_a_restoration_within_one_sampling_step(loaded, inputs, tmp_path):
    from src.inference import Cancelled

    restorer = Restorer(loaded.model, "cpu", "32", None, 0, tile=32, overlap=8)
    steps_seen = []
    with pytest.raises(Cancelled):
        restore_files([str(inputs / "wide.png")], restorer, tmp_path / "out", None,
                      lambda f, d: steps_seen.append(d), should_stop=lambda: any(" done" in d for d in steps_seen))
    assert [d for d in steps_seen if " done" in d] == [f"wide.png · tile 1 of {restorer.num_tiles(40, 72)} · step 1 "
                                                      f"of {loaded.steps} done"]  # stopped right after it
    assert not (tmp_path / "out").exists()  # nothing written


def _blocking_job(started: threading.Event, release: threading.Event, log: list, name: str):
    """A job that says it started, then works in small slices until released or stopped (as restore_files does)."""
    from src.inference import Cancelled

    def run(job):
        log.append(name)
        started.set()
        while not release.wait(0.01):
            if job.should_stop():
                raise Cancelled(name)
            job.report(0.5, f"{name} half way")
        return name
    return run


def test_job_queue_one_job_per_visitor_positions_and_cancel():
    from src.app import Busy, JobQueue, status_html

    queue = JobQueue()
    order, releases = [], {n: threading.Event() for n in "abc"}
    started = {n: threading.Event() for n in "abc"}
    try:
        a = queue.submit("visitor-a", _blocking_job(started["a"], releases["a"], order, "a"), estimate=10)
        assert started["a"].wait(10)
        b = queue.submit("visitor-b", _blocking_job(started["b"], releases["b"], order, "b"), estimate=20)
        c = queue.submit("visitor-c", _blocking_job(started["c"], releases["c"], order, "c"), estimate=30)
        with pytest.raises(Busy, match="already have a job"):  # one job per visitor at a time
            queue.submit("visitor-b", lambda job: None)
        assert [queue.position(j) for j in (a, b, c)] == [0, 1, 2] and (a.state, b.state) == ("running", "waiting")
        assert a.remaining() == pytest.approx(10 - a.elapsed(), abs=0.5)  # no progress yet: the estimate
        assert queue.wait_ahead(c) == pytest.approx(a.remaining() + 20, abs=0.5)
        page = status_html(c, queue.position(c), queue.wait_ahead(c))
        assert "2 jobs ahead of yours (you are number 3 in the queue)" in page and "before yours starts" in page

        assert queue.cancel("visitor-b", "tab closed") is b  # a waiting job leaves the queue at once
        assert b.wait(0) and b.state == "stopped" and b.why_stopped == "tab closed" and queue.position(c) == 1
        assert queue.cancel("visitor-a") is a and a.wait(10)  # a running one stops at its next check
        assert a.state == "stopped" and "Stopped after" in status_html(a)
        assert started["c"].wait(10) and order == ["a", "c"]  # b never ran, c went next
        job = c
        while job.fraction == 0:
            job.wait(0.01)
        running = status_html(job)
        assert "<progress value='0.500'" in running and "c half way · 50% ·" in running and "elapsed" in running
        assert c.remaining() == pytest.approx(30 - c.elapsed(), abs=0.5)  # one report: still the estimate
        releases["c"].set()
        assert c.wait(10) and c.state == "done" and c.result == "c" and len(queue) == 0

        failing = queue.submit("visitor-b", lambda job: 1 / 0)  # a failure is the job's, the queue goes on
        assert failing.wait(10) and failing.state == "failed" and "ZeroDivisionError" in status_html(failing)
        assert queue.submit("visitor-b", lambda job: "again").wait(10)
    finally:
        for event in releases.values():
            event.set()
        queue.close()


def test_remaining_time_counts_down_from_the_estimate_then_the_measured_pace():
    from src.app import Job

    job = Job("v", lambda job: None, estimate=20.0)
    job.state, job.started = "running", 100.0
    assert job.remaining(now=105.0) == pytest.approx(15.0)  # no progress yet: the estimate less the time spent
    job.report(0.1, "step 1", now=110.0)  # the first step took long (e.g. the engine compiled for this size)
    assert job.remaining(now=112.0) == pytest.approx(8.0)  # one report: still the estimate
    job.report(0.2, "step 2", now=112.0)  # then 2 s per tenth
    assert job.remaining(now=112.0) == pytest.approx(16.0) and job.remaining(now=115.0) == pytest.approx(13.0)
    late = Job("w", lambda job: None, estimate=5.0)
    late.state, late.started = "running", 0.0
    assert late.remaining(now=6.0) is None  # past the estimate with nothing measured: unknown, not "0 s left"
    late.report(0.5, "half", now=8.0)
    assert late.remaining(now=9.0) == pytest.approx(7.0)


def test_speed_pools_measurements_and_counts_setup_once_per_new_shape():
    from src.app import Speed

    speed = Speed(setup=2.0)
    speed.remember((512, 512))  # the calibration's shape, compiled
    speed.add(3.0, 1.5, (512, 512))  # a known shape: all compute
    speed.add(5.0, 1.0, (200, 300))  # a new shape: 2 s of it were setup
    assert speed.rate == pytest.approx((3.0 + 3.0) / 2.5) and speed.runs == 2
    assert speed.estimate(1.0, [(512, 512), (200, 300)]) == pytest.approx(speed.rate)  # both known now
    assert speed.estimate(1.0, [(64, 64), (64, 64), (32, 32)]) == pytest.approx(speed.rate + 2 * 2.0)
    for side in range(10, 15):  # engines keep a few compiled shapes: old ones count as new again
        speed.remember((side, side))
    assert speed.is_new((512, 512)) and not speed.is_new((14, 14)) and Speed().estimate(1.0) is None


def test_estimate_comes_from_the_measured_speed(loaded):
    from src.app import duration, estimate_markdown, job_estimate, network_shape, work_megapixels

    assert loaded.speed.rate is not None and loaded.speed.rate > 0 and loaded.speed.runs == 1  # the calibration
    assert loaded.speed.shapes == [(64, 64)]
    untiled = Restorer(loaded.model, "cpu", "32", None, 0, tile=0)
    tiled = Restorer(loaded.model, "cpu", "32", None, 0, tile=256, overlap=64)
    m = untiled.multiple
    assert m > 1 and work_megapixels(untiled, 1000, 1500) == pytest.approx(  # padded to the model's multiple
        -(-1000 // m) * m * -(-1500 // m) * m / 1e6)
    assert work_megapixels(tiled, 1000, 1500) > work_megapixels(untiled, 1000, 1500)  # overlaps count
    assert network_shape(tiled, 1000, 1500) == (256, 256) and network_shape(untiled, 60, 64) == (64, 64)
    sizes = [(1500, 1000), (640, 480)]
    seconds = job_estimate(loaded, untiled, sizes)
    work = loaded.steps * (work_megapixels(untiled, 1000, 1500) + work_megapixels(untiled, 480, 640))
    assert seconds == pytest.approx(loaded.speed.rate * work + 2 * loaded.speed.setup)  # two new shapes
    text = estimate_markdown(loaded, untiled, sizes, waiting=1)
    assert f"2 images, 1.81 megapixels: about {duration(seconds)}**" in text
    assert "an estimate" in text and f"{loaded.steps} steps" in text and "1 job of other visitors ahead" in text
    twice = Restorer(loaded.model, "cpu", "32", 2 * loaded.steps, 0, tile=0)
    assert job_estimate(loaded, twice, sizes) == pytest.approx(2 * seconds - 2 * loaded.speed.setup)
    assert tiled.num_tiles(1000, 1500) > 1
    assert f"{tiled.num_tiles(1000, 1500)} tiles of 256 px" in estimate_markdown(loaded, tiled, [(1500, 1000)])
    assert estimate_markdown(None, untiled, [(64, 64)]).endswith("measures its speed).")
    assert estimate_markdown(loaded, untiled, []) == "Upload images to see how long they will take."


def test_the_page_says_what_the_model_does(loaded):
    import dataclasses

    from src.app import model_name

    assert loaded.name == "DiffUIR (width 8)" and loaded.engine and "parameters" in loaded.info
    assert "/" not in loaded.info and "Module" not in loaded.info  # no path, no class name
    assert loaded.trained_tasks == loaded.model.model_config["trained_tasks"]  # from the checkpoint's config
    noise_only = dataclasses.replace(loaded, trained_tasks=["noise", "low_light"]).describe()
    assert "**Trained to remove:** noise, low light. Not trained on haze, rain streaks, raindrops, snow, blur, " \
           "JPEG artefacts: expect little change there." in noise_only
    assert "DiffUIR has no degradation detector" in noise_only
    assert "not recorded in this checkpoint" in dataclasses.replace(loaded, trained_tasks=None).describe()

    from src.inference import DEFAULT_WEIGHTS
    from src.utils.checkpoints import load_restoration_model

    assert model_name(load_restoration_model(DEFAULT_WEIGHTS)) == "DiffUIR-T"  # the shipped export


def test_settings_and_refusals_use_the_apps_own_words(tmp_path):
    from src.app import check_uploads, refusal, settings_problems
    from src.utils.images import ImageReadError

    assert settings_problems(0, 0, 512, 64) == []
    assert settings_problems(3, 0, 64, 64) == ["Tile overlap 64: must be smaller than Tile size 64"]
    assert settings_problems(-1, 0, 0, 0) == ["Sampling steps -1: must be 0 (the model's own number) or more"]
    assert settings_problems(None, 0, 0, 0) == ["Sampling steps: enter a whole number"]
    assert all("--" not in p for p in settings_problems(0, -1, -5, -2))

    big = tmp_path / "big.png"
    Image.new("RGB", (20, 10)).save(big)
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    accepted, refused = check_uploads([str(big), str(text)], max_pixels=100)
    assert accepted == [] and [name for name, _ in refused] == ["big.png", "notes.txt"]
    assert "200 pixels is more than the limit of 100" in refused[0][1] and "python -m src.app --max-pixels" in \
        refused[0][1] and "src.restore" not in refused[0][1]
    with pytest.raises(ImageReadError) as err:
        read_image(text)
    assert refused[1][1] == refusal(err.value) == err.value.reason
    assert check_uploads([str(big)], None) == ([str(big)], [])


def test_the_app_picks_engine_and_precision_as_src_restore_does_and_says_which(ckpt):
    from src.inference import load_restorer

    for precision in ("auto", "32"):
        loaded = ModelCache([str(ckpt)], device="cpu", precision=precision, calibration_side=32).get(str(ckpt))
        _, cli = load_restorer(ckpt, "cpu", precision, engine="auto")  # what `python -m src.restore` runs
        assert (loaded.engine, loaded.precision, loaded.precision_note) == (cli.engine, cli.precision,
                                                                            cli.engine_note)
        assert loaded.engine in loaded.info
        if precision == "32":
            assert loaded.precision == "32" and "float32" in loaded.info
        if loaded.precision_note:  # e.g. "--precision auto: native bf16 CPU, 59.2 dB from fp32 ..."
            assert loaded.precision_note in loaded.describe()
