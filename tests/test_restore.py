"""`python -m src.restore` with a real tiny DiffUIR checkpoint (trained for two steps here) on CPU.

Covers every input kind (odd size, tiny, grayscale, RGBA, 16-bit, EXIF-rotated, larger than the tile size), every
bad-input case, reruns, input protection, atomic outputs, seeds, tiling (tiled vs untiled), the degradation
protocol, device/precision choice and checkpoint errors.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import src.utils.images as images_module
from src.diffuir.module import DiffUIRModule
from src.inference import Restorer, pick_device, pick_precision, plan_jobs, use_engine
from src.restore import main
from src.train import train
from src.utils.atomic import atomic_open
from src.utils.checkpoints import load_model_from_checkpoint
from src.utils.images import encode_png16, read_image
from src.utils.tiling import BlockNoise, axis_weights
from tests.conftest import ROOT, compose_train

RNG = np.random.default_rng(0)
FAST = ["--threads", "1", "--no-progress"]


def _u8(*shape):
    return RNG.integers(0, 256, shape).astype(np.uint8)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("diffuir")
    train(compose_train(["experiment=diffuir_t", "debug=default", "model.net.dim=8", "num_threads=1", "trainer=cpu",
                         "test=false", "logger=csv", "callbacks.progress_bar.refresh_rate=0"], out))
    return out / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def model(ckpt):
    return load_model_from_checkpoint(ckpt)


class DiffUIRWithDetector(DiffUIRModule):
    """The real DiffUIR plus the optional ``detect_degradation`` protocol method (as Diff-Restorer has)."""

    def detect_degradation(self, lq: torch.Tensor) -> list[str]:
        return ["low_light" if float(x.mean()) < 0.3 else "haze" for x in lq]


class PointwiseRestorer(torch.nn.Module):
    """A model of the restore protocol whose output at a pixel depends on that pixel (and its noise) only."""

    pad_multiple = 8

    def restore(self, lq, steps=None, generator=None, noise=None):
        return (0.8 * lq + 0.05 * noise + 0.1).clamp(0, 1)


def _inputs(folder):
    folder.mkdir()
    Image.fromarray(_u8(37, 53, 3)).save(folder / "odd.png")
    Image.fromarray(_u8(5, 7, 3)).save(folder / "tiny.png")
    Image.fromarray(_u8(20, 30)).save(folder / "gray.png")
    rgba = _u8(24, 24, 4)
    Image.fromarray(rgba, "RGBA").save(folder / "rgba.png")
    (folder / "deep.png").write_bytes(encode_png16(RNG.integers(0, 65536, (18, 22, 3)).astype(np.uint16)))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 12 high × 20 wide, shown rotated: 20 high × 12 wide
    Image.fromarray(_u8(12, 20, 3)).save(folder / "rotated.jpg", exif=exif, quality=95)
    Image.fromarray(_u8(70, 90, 3)).save(folder / "large.png")
    return rgba


def test_cli_restores_every_kind_of_image_keeping_name_size_and_layout(ckpt, tmp_path, capsys):
    rgba = _inputs(tmp_path / "in")
    out = tmp_path / "out"
    rc = main([str(tmp_path / "in"), "--ckpt", str(ckpt), "--out", str(out), "--tile", "32", "--tile-overlap", "8",
               *FAST])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "model: DiffUIRModule (src.diffuir.module.DiffUIRModule" in text
    assert "restored 7, skipped 0" in text and "failed 0" in text
    expect = {"odd.png": ((53, 37), "RGB"), "tiny.png": ((7, 5), "RGB"), "gray.png": ((30, 20), "L"),
              "rgba.png": ((24, 24), "RGBA"), "rotated.jpg": ((12, 20), "RGB"), "large.png": ((90, 70), "RGB")}
    for name, (size, mode) in expect.items():
        with Image.open(out / name) as im:
            assert (im.size, im.mode) == (size, mode), name
            assert im.getexif().get(0x0112) is None
    assert np.array_equal(np.asarray(Image.open(out / "rgba.png"))[..., 3], rgba[..., 3])  # alpha kept
    deep = read_image(out / "deep.png")
    assert (deep.bit_depth, deep.width, deep.height) == (16, 22, 18) and (out / "deep.png").read_bytes()[24] == 16
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_bad_inputs_are_reported_skipped_and_make_the_exit_status_nonzero(ckpt, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(_u8(16, 16, 3)).save(src / "good.png")
    (src / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    (src / "empty.jpg").write_bytes(b"")
    (src / "notes.txt").write_text("not an image")
    (tmp_path / "empty_folder").mkdir()
    (tmp_path / "explicit.txt").write_text("named explicitly, so it is tried")
    args = [str(src), str(tmp_path / "explicit.txt"), str(tmp_path / "missing.png"), str(tmp_path / "empty_folder"),
            str(tmp_path / "nomatch*.png")]
    rc = main([*args, "--ckpt", str(ckpt), "--out", str(tmp_path / "out"), *FAST])
    text = capsys.readouterr().out
    assert rc == 1
    assert "restored 1, skipped 0" in text and "failed 6" in text
    for fragment in ("corrupt.png: cannot be read", "empty.jpg: not an image", "explicit.txt: not an image",
                     "missing.png: no such file or folder", "empty_folder: folder has no image files",
                     "nomatch*.png: no image file matches this pattern",
                     "ignored 1 non-image file(s) in folders/patterns"):
        assert fragment in text, fragment
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.png"]


def test_rerun_skips_restored_images_unless_overwrite(ckpt, tmp_path, capsys):
    Image.fromarray(_u8(16, 20, 3)).save(tmp_path / "a.png")
    args = [str(tmp_path / "a.png"), "--ckpt", str(ckpt), "--out", str(tmp_path / "out"), *FAST]
    assert main(args) == 0
    first = (tmp_path / "out" / "a.png").stat()
    capsys.readouterr()
    assert main(args) == 0
    assert "restored 0, skipped 1" in capsys.readouterr().out
    assert (tmp_path / "out" / "a.png").stat().st_ino == first.st_ino  # not rewritten
    assert main([*args, "--overwrite"]) == 0
    assert "restored 1, skipped 0" in capsys.readouterr().out
    assert (tmp_path / "out" / "a.png").stat().st_ino != first.st_ino  # replaced by a rename


def test_inputs_are_never_overwritten(ckpt, tmp_path, capsys):
    Image.fromarray(_u8(16, 16, 3)).save(tmp_path / "a.png")
    before = (tmp_path / "a.png").read_bytes()
    rc = main([str(tmp_path), "--ckpt", str(ckpt), "--out", str(tmp_path), "--overwrite", *FAST])
    assert rc == 1 and "would overwrite an input" in capsys.readouterr().out
    assert (tmp_path / "a.png").read_bytes() == before
    # two inputs with the same name cannot share an output either
    (tmp_path / "b").mkdir()
    Image.fromarray(_u8(16, 16, 3)).save(tmp_path / "b" / "a.png")
    plan = plan_jobs([str(tmp_path / "a.png"), str(tmp_path / "b" / "a.png")], tmp_path / "out")
    assert len(plan.jobs) == 1 and "already used by" in plan.failed[0][1]
    # an output folder inside a scanned input folder is not scanned as input (reruns do not restore outputs)
    (tmp_path / "b" / "restored").mkdir()
    Image.fromarray(_u8(16, 16, 3)).save(tmp_path / "b" / "restored" / "a.png")
    plan = plan_jobs([str(tmp_path / "b")], tmp_path / "b" / "restored", recursive=True)
    assert [j.source.name for j in plan.jobs] == ["a.png"] and plan.jobs[0].source.parent.name == "b"


def test_a_failed_write_leaves_no_partial_output(ckpt, tmp_path, capsys, monkeypatch):
    Image.fromarray(_u8(16, 16, 3)).save(tmp_path / "a.png")

    def dying_write(path, data, overwrite=True):
        with atomic_open(path, overwrite=overwrite) as f:
            f.write(data[: len(data) // 2])
            raise OSError("No space left on device")

    monkeypatch.setattr(images_module, "atomic_write_bytes", dying_write)
    rc = main([str(tmp_path / "a.png"), "--ckpt", str(ckpt), "--out", str(tmp_path / "out"), *FAST])
    assert rc == 1 and "No space left on device" in capsys.readouterr().out
    assert list((tmp_path / "out").iterdir()) == []


def test_leftover_temporaries_in_the_output_folder_are_removed_and_reported(ckpt, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    Image.fromarray(_u8(16, 16, 3)).save(tmp_path / "a.png")
    leftovers = [out / ".a.png.uir-999999999-ab12cd34.tmp", out / ".b.png.uir-999999999-xx_yy_zz.tmp"]
    for p in leftovers:
        p.write_bytes(b"")
        os.utime(p, (0, 0))
    keep = [out / ".mine.tmp", out / ".c.png.ab12cd34.tmp",  # not ours (no uir-<pid> marker)
            out / "sub" / ".c.png.uir-999999999-ab12cd34.tmp"]  # not a folder written to
    for p in keep:
        p.write_bytes(b"")
        os.utime(p, (0, 0))
    assert main([str(tmp_path / "a.png"), "--ckpt", str(ckpt), "--out", str(out), *FAST]) == 0
    text = capsys.readouterr().out
    assert f"{out}: removed 2 leftover temporary file(s) of an interrupted run" in text
    assert not any(p.exists() for p in leftovers) and all(p.exists() for p in keep)
    assert (out / "a.png").is_file()


def test_same_seed_same_output_other_seed_other_output(model):
    img = RNG.random((24, 40, 3)).astype(np.float32)
    a, b = Restorer(model, seed=3).restore(img), Restorer(model, seed=3).restore(img)
    assert np.array_equal(a, b) and not np.array_equal(a, Restorer(model, seed=4).restore(img))


def test_tiles_get_their_noise_crop_through_restore(model):
    """The tiler hands DiffUIR a crop of one noise field; with the field's noise it is exactly module.restore."""
    lq = torch.rand(1, 3, 32, 48)
    gen = torch.Generator().manual_seed(5)
    expected = model.restore(lq, generator=gen)
    noise = torch.randn(lq.shape, generator=torch.Generator().manual_seed(5))

    class Field(BlockNoise):
        def crop(self, y0, x0, h, w):
            return noise[0, :, y0:y0 + h, x0:x0 + w]

    got = Restorer(model, tile=0)._restore_batch(lq, [(0, 0, 32, 48)], Field(0))
    assert torch.equal(got, expected.clamp(0, 1))


def test_use_engine_goes_through_the_models_hook(model):
    """DiffUIR owns its engine hook (``DiffUIRModule.use_engine``); models without one run in PyTorch."""
    lq, noise = torch.rand(1, 3, 16, 16), torch.randn(1, 3, 16, 16)
    ref = model.restore(lq, noise=noise)
    try:
        assert use_engine(model, "eager") == "eager" and model.inference_net.name == "eager"
        torch.testing.assert_close(model.restore(lq, noise=noise), ref, atol=1e-5, rtol=0)
    finally:
        model.inference_net = None
    assert use_engine(PointwiseRestorer(), "auto") == "pytorch" == use_engine(PointwiseRestorer(), "eager")
    with pytest.raises(ValueError, match="only DiffUIR models have inference engines"):
        use_engine(PointwiseRestorer(), "onnx")


def test_tiled_equals_untiled_for_a_pointwise_model():
    img = RNG.random((75, 101, 3)).astype(np.float32)
    untiled = Restorer(PointwiseRestorer(), tile=0, seed=1).restore(img)
    for tile, overlap, batch in ((32, 8, 1), (48, 16, 3)):
        tiled = Restorer(PointwiseRestorer(), tile=tile, overlap=overlap, tile_batch=batch, seed=1).restore(img)
        assert np.allclose(tiled, untiled, atol=1e-6)


def test_dihedral_transforms_are_the_eight_distinct_ones_and_undo_exactly():
    from src.inference import dihedral

    img = RNG.random((5, 7, 3)).astype(np.float32)
    outs = [dihedral(img, k) for k in range(8)]
    assert [o.shape[:2] for o in outs] == [(5, 7), (7, 5)] * 4 and np.array_equal(outs[0], img)
    assert len({o.tobytes() + bytes(o.shape) for o in outs}) == 8
    assert all(np.array_equal(dihedral(o, k, inverse=True), img) for k, o in enumerate(outs))


def test_self_ensemble_is_the_mean_of_the_undone_restorations_of_each_transform(model):
    """--self-ensemble N: the mean over N flips/quarter turns of DiffUIR's restorations, each transformed back,
    tiled or not; progress counts every pass's tiles and steps."""
    from src.inference import ENSEMBLE_ORDER, dihedral

    assert sorted(ENSEMBLE_ORDER) == list(range(8)) and ENSEMBLE_ORDER[:2] == (0, 4)  # 2: the image and its mirror
    img = RNG.random((40, 56, 3)).astype(np.float32)
    for tile in (0, 32):
        single = Restorer(model, tile=tile, overlap=8, seed=5)
        ref = np.mean([dihedral(single.restore(dihedral(img, k)), k, inverse=True) for k in ENSEMBLE_ORDER[:4]],
                      axis=0)
        ens = Restorer(model, tile=tile, overlap=8, seed=5, ensemble=4)
        tiles, steps = [], []
        out = ens.restore(img, progress=tiles.append, step_progress=lambda d, t, s=steps: s.append((d, t)))
        assert out.shape == img.shape and np.allclose(out, ref, atol=1e-6)
        assert sum(tiles) == ens.num_tiles(40, 56) == sum(single.num_tiles(*dihedral(img, k).shape[:2])
                                                         for k in ENSEMBLE_ORDER[:4])
        done, total = zip(*steps)
        assert list(done) == sorted(done) and len(set(total)) == 1 and done[-1] == total[0] == len(steps)
    assert not np.allclose(Restorer(model, tile=0, seed=5, ensemble=2).restore(img),
                           Restorer(model, tile=0, seed=5).restore(img), atol=1e-4)


def test_real_diffuir_tiles_are_its_tile_outputs_blended(model):
    """Tiled DiffUIR output = Σ (blend weight × DiffUIR on the tile with the tile's noise), exactly."""
    img = RNG.random((48, 80, 3)).astype(np.float32)
    tiled = Restorer(model, tile=32, overlap=8, seed=2).restore(img)
    x = torch.from_numpy(img).permute(2, 0, 1)
    field = BlockNoise(2, 3)
    ys, th, wy = axis_weights(48, 32, 8)
    xs, tw, wx = axis_weights(80, 32, 8)
    ref = torch.zeros(3, 48, 80)
    for iy, y in enumerate(ys):
        for ix, x0 in enumerate(xs):
            out = model.diffusion.sample(model.eval_net, x[None, :, y:y + th, x0:x0 + tw] * 2 - 1,
                                         noise=field.crop(y, x0, th, tw)[None])
            ref[:, y:y + th, x0:x0 + tw] += ((out[0] + 1) / 2).clamp(0, 1) * (wy[iy][:, None] * wx[ix][None])
    assert np.allclose(tiled, ref.permute(1, 2, 0).numpy(), atol=1e-6)
    assert np.array_equal(Restorer(model, tile=128, seed=2).restore(img), Restorer(model, tile=0, seed=2).restore(img))


def test_real_diffuir_tiled_is_close_to_untiled_on_stationary_content(model):
    """A U-Net with GroupNorm and attention sees global statistics, so tiles can only match the whole image where
    the tiles' statistics are the whole image's: on a stationary texture the tiled result stays within 1% (mean)."""
    img = RNG.random((64, 96, 3)).astype(np.float32)
    untiled = Restorer(model, tile=0).restore(img)
    tiled = Restorer(model, tile=64, overlap=32).restore(img)
    change = np.abs(untiled - img).mean()
    diff = np.abs(tiled - untiled)
    assert diff.mean() < 0.01 and diff.mean() < 0.1 * change and diff.max() < 0.15


def test_detected_degradation_is_printed_for_models_that_have_a_classifier(ckpt, tmp_path, capsys, monkeypatch):
    state = torch.load(ckpt, weights_only=True)
    state["uir_model_config"]["_target_"] = "tests.test_restore.DiffUIRWithDetector"
    torch.save(state, tmp_path / "detector.ckpt")
    # a checkpoint may build only suite classes: this test class is refused from a file ...
    Image.fromarray(np.full((16, 16, 3), 20, np.uint8)).save(tmp_path / "dark.png")
    assert main([str(tmp_path / "dark.png"), "--ckpt", str(tmp_path / "detector.ckpt"), "--out",
                 str(tmp_path / "o"), *FAST]) == 2
    assert "is refused" in capsys.readouterr().err

    def load_detector(path, map_location="cpu"):  # ... so the test builds it itself, with the checkpoint's weights
        from hydra.utils import instantiate

        model = instantiate(state["uir_model_config"])
        model.load_state_dict(state["state_dict"])
        model.model_config = state["uir_model_config"]
        return model.eval()

    monkeypatch.setattr("src.inference.load_restoration_model", load_detector)
    Image.fromarray(np.full((16, 16, 3), 20, np.uint8)).save(tmp_path / "dark.png")
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(tmp_path / "bright.png")
    rc = main([str(tmp_path / "dark.png"), str(tmp_path / "bright.png"), "--ckpt", str(tmp_path / "detector.ckpt"),
               "--out", str(tmp_path / "out"), *FAST])
    text = capsys.readouterr().out
    assert rc == 0
    assert "dark.png: detected degradation: low_light" in text and "bright.png: detected degradation: haze" in text
    assert "detected degradations: low_light ×1, haze ×1" in text


def test_device_and_precision_are_chosen_automatically_or_by_flag(ckpt, tmp_path, capsys):
    assert pick_device("cpu").type == "cpu" and pick_precision("auto", torch.device("cpu")) == "32"
    assert pick_precision("bf16", torch.device("cpu")) == "bf16"
    prefers_fp16 = type("M", (), {"preferred_precision": "16"})()
    assert pick_precision("auto", torch.device("cuda"), prefers_fp16) == "16"  # a model's wish, on CUDA only
    assert pick_precision("auto", torch.device("cpu"), prefers_fp16) == "32"
    assert pick_precision("auto", torch.device("cuda"), object()) == "32"
    if not torch.cuda.is_available():
        assert pick_device("auto").type in ("cpu", "mps")
        assert main(["x.png", "--ckpt", str(ckpt), "--out", str(tmp_path), "--device", "cuda"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err
    Image.fromarray(_u8(16, 24, 3)).save(tmp_path / "a.png")
    for precision in ("32", "bf16"):
        assert main([str(tmp_path / "a.png"), "--ckpt", str(ckpt), "--out", str(tmp_path / precision), "--device",
                     "cpu", "--precision", precision, *FAST]) == 0
    full, half = (np.asarray(Image.open(tmp_path / p / "a.png"), np.float32) for p in ("32", "bf16"))
    assert np.abs(full - half).mean() < 8  # bf16 autocast: close to float32 (8-bit levels)


def test_checkpoint_problems_are_usage_errors(tmp_path, capsys):
    Image.fromarray(_u8(16, 16, 3)).save(tmp_path / "a.png")
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    (tmp_path / "text.ckpt").write_text("not a checkpoint")
    for name, message in (("missing.ckpt", "checkpoint not found"), ("foreign.ckpt", "has no 'uir_model_config'"),
                          ("text.ckpt", "is not a torch checkpoint")):
        rc = main([str(tmp_path / "a.png"), "--ckpt", str(tmp_path / name), "--out", str(tmp_path / "out"), *FAST])
        assert rc == 2 and message in capsys.readouterr().err, name
    assert not (tmp_path / "out").exists()


def test_nonsense_flags_are_usage_errors_before_the_model_loads(tmp_path, capsys):
    Image.fromarray(_u8(16, 16, 3)).save(tmp_path / "a.png")
    missing = tmp_path / "no.ckpt"  # never reached: the flags are checked first
    for flags, message in ((["--tile", "-5"], "--tile -5: must be a tile side"),
                           (["--steps", "0"], "--steps 0: the number of sampling steps must be at least 1"),
                           (["--steps", "-3"], "--steps -3"),
                           (["--tile-overlap", "-1"], "--tile-overlap -1: must be 0 or more"),
                           (["--tile", "64", "--tile-overlap", "64"], "must be smaller than --tile 64"),
                           (["--tile-batch", "0"], "--tile-batch 0"),
                           (["--jpeg-quality", "0"], "--jpeg-quality 0"),
                           (["--max-pixels", "-1"], "--max-pixels -1"),
                           (["--threads", "0"], "--threads 0"),
                           (["--seed", "-1"], "--seed -1"),
                           (["--self-ensemble", "3"], "--self-ensemble 3: must be one of 1, 2, 4, 8")):
        rc = main([str(tmp_path / "a.png"), "--ckpt", str(missing), "--out", str(tmp_path / "out"), *flags,
                   "--no-progress"])
        err = capsys.readouterr().err
        assert rc == 2 and message in err and "checkpoint" not in err, (flags, err)
    with pytest.raises(ValueError, match="--steps 0"):
        Restorer(PointwiseRestorer(), steps=0)
    with pytest.raises(ValueError, match="--tile -5"):
        Restorer(PointwiseRestorer(), tile=-5)
    assert not (tmp_path / "out").exists()


def test_missing_checkpoint_and_bad_inputs_are_named_before_loading(tmp_path, capsys):
    Image.fromarray(_u8(16, 16, 3)).save(tmp_path / "a.png")
    rc = main([str(tmp_path / "a.png"), "--ckpt", str(tmp_path / "no.ckpt"), "--out", str(tmp_path / "out"),
               "--no-progress"])
    assert rc == 2 and "--ckpt" in capsys.readouterr().err
    # nothing to restore: the failures are listed without loading the (here unreadable) checkpoint
    (tmp_path / "junk.ckpt").write_text("junk")
    rc = main([str(tmp_path / "missing.png"), "--ckpt", str(tmp_path / "junk.ckpt"), "--out", str(tmp_path / "out"),
               "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 1 and "missing.png: no such file or folder" in captured.out and "junk" not in captured.err


def test_symlink_loops_and_broken_links_in_a_scanned_folder_are_reported(ckpt, tmp_path, capsys):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(_u8(16, 16, 3)).save(src / "good.png")
    os.symlink("loop.png", src / "loop.png")              # points to itself
    os.symlink("nowhere.png", src / "sub" / "dangling.png")
    os.symlink(src / "sub" / "b.png", src / "sub" / "a.png")  # a two-link loop
    os.symlink(src / "sub" / "a.png", src / "sub" / "b.png")
    rc = main([str(src), "--recursive", "--ckpt", str(ckpt), "--out", str(tmp_path / "out"), *FAST])
    text = capsys.readouterr().out
    assert rc == 1 and "restored 1" in text and "failed 4" in text
    assert f"{src / 'loop.png'}: symbolic link loop" in text and f"{src / 'sub' / 'a.png'}: symbolic link loop" in text
    assert f"{src / 'sub' / 'dangling.png'}: broken symbolic link (its target nowhere.png does not exist)" in text


def test_parameter_count_is_the_restoring_network_once(ckpt, model, tmp_path, capsys):
    Image.fromarray(_u8(16, 16, 3)).save(tmp_path / "a.png")
    assert main([str(tmp_path / "a.png"), "--ckpt", str(ckpt), "--out", str(tmp_path / "out"), *FAST]) == 0
    network = sum(p.numel() for p in model.eval_net.parameters())
    assert network == sum(p.numel() for p in model.net.parameters())
    assert sum(p.numel() for p in model.parameters()) == 2 * network  # the trained copy and its EMA
    assert f"({model.model_config['_target_']}, {network:,} parameters)" in capsys.readouterr().out


def test_python_dash_m_entry_point(ckpt, tmp_path):
    Image.fromarray(_u8(16, 16, 3)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_text("broken")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "src.restore", str(tmp_path / "a.png"), str(tmp_path / "b.png"),
                           "--ckpt", str(ckpt), "--out", str(tmp_path / "out"), "--threads", "1"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "restored 1, skipped 0 (output exists; --overwrite to redo), failed 1" in proc.stdout
    assert "restoring" in proc.stderr  # the progress bar
    assert (tmp_path / "out" / "a.png").is_file() and not (tmp_path / "out" / "b.png").exists()


def test_without_ckpt_the_shipped_weights_are_used_and_their_absence_is_a_usage_error(tmp_path, capsys,
                                                                                       monkeypatch):
    import src.restore

    img = tmp_path / "in.png"
    Image.fromarray(_u8(24, 24, 3)).save(img)
    monkeypatch.setattr(src.restore, "DEFAULT_WEIGHTS", tmp_path / "missing_weights")
    assert main([str(img), "--out", str(tmp_path / "out"), *FAST]) == 2
    err = capsys.readouterr().err
    assert "shipped weights are missing" in err and "experiment=diffuir_t_photos" in err
    assert not (tmp_path / "out").exists()
