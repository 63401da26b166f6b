"""src.app without a browser: the app's restore path gives src.restore's bytes (16-bit kept), counts tiles for the
progress bar, refuses bad files with the reader's message, and the CLI fails clearly without a checkpoint or
without Gradio. The page itself is driven in Chromium by tests/test_app_browser.py."""

import sys
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


def test_app_restores_like_the_cli_keeps_bit_depth_and_counts_tiles(ckpt, inputs, tmp_path):
    model = ModelCache([str(ckpt)], device="cpu").get(str(ckpt))
    restorer = Restorer(model.model, "cpu", "32", None, 7, tile=32, overlap=8)
    ticks = []
    files = [str(inputs / "wide.png"), str(inputs / "broken.png"), str(inputs / "gray.jpg")]
    outcomes = restore_files(files, restorer, tmp_path / "app", None, lambda d, t, n: ticks.append((d, t, n)))
    assert [o.name for o in outcomes] == ["wide.png", "broken.png", "gray.jpg"]  # upload order
    total = restorer.num_tiles(40, 72) + restorer.num_tiles(24, 20)
    assert restorer.num_tiles(40, 72) > 1 and ticks[-1][:2] == (total, total)  # the 40×72 image is tiled
    assert [d for d, _, _ in ticks] == sorted(d for d, _, _ in ticks)

    assert restore_main([*files, "--ckpt", str(ckpt), "--out", str(tmp_path / "cli"), "--device", "cpu",
                         "--seed", "7", "--tile", "32", "--tile-overlap", "8", "--no-progress"]) == 1  # broken.png
    for o, cli_name in ((outcomes[0], "wide.png"), (outcomes[2], "gray.jpg")):
        assert o.output.name == output_name(inputs / cli_name)
        assert o.output.read_bytes() == (tmp_path / "cli" / cli_name).read_bytes()
    wide = read_image(outcomes[0].output)
    assert wide.bit_depth == 16 and (wide.width, wide.height) == (72, 40)
    assert read_image(outcomes[2].output).grayscale and "16-bit" in outcomes[0].size
    assert outcomes[0].before.dtype == np.uint8 and outcomes[0].after.shape == (40, 72, 3)


def test_bad_files_are_refused_with_the_readers_message(ckpt, inputs, tmp_path):
    model = ModelCache([str(ckpt)], device="cpu").get(str(ckpt))
    restorer = Restorer(model.model, "cpu", "32", None, 0, tile=0)
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
        loaded = ModelCache([source], device="cpu").get(source)
        assert "parameters" in loaded.info
        restorer = Restorer(loaded.model, "cpu", "32", None, 1, tile=0)
        (outcome,) = restore_files([str(inputs / "gray.jpg")], restorer, tmp_path / Path(source).name, None)
        outputs.append(outcome.output.read_bytes())
    assert outputs[0] == outputs[1]
