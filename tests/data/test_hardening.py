"""Issue 11, items 4 and 7: every bad manifest or image input is named before work is lost.

Crafted files: a truncated PNG, a zero-byte JPEG, a non-UTF-8 CSV, a duplicate row, an empty and a missing split,
a stale manifest of an earlier build; at training time an unreadable image with ``on_bad_sample`` ``error`` /
``skip``; and one image reader for the datasets and ``src.restore`` (same acceptance, same messages)."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from src.data import image_io
from src.data.datasets import SKIPPED_KEY, DiffRestorerTrainDataset, DiffUIRTrainDataset
from src.data.manifest_datamodule import DiffUIRDataModule, SkipReportingLoader
from src.data.manifests import (
    ManifestError,
    Row,
    build_manifests,
    main,
    read_manifest,
    validate_manifest,
    write_manifest,
)
from src.tasks import TASKS
from src.utils import images

ROOT = Path(__file__).resolve().parents[2]
RNG = np.random.default_rng(0)


def rgb(path: Path, size=(16, 12), fmt=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, format=fmt)
    return path


def truncated_png(path: Path, size=(16, 12)) -> Path:
    buf = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


def lol_tree(root: Path, train=("1", "2", "3"), test=("1",)) -> Path:
    for split, names in (("our485", train), ("eval15", test)):
        for n in names:
            rgb(root / "LOL" / split / "low" / f"{n}.png")
            rgb(root / "LOL" / split / "high" / f"{n}.png")
    return root / "LOL"


# ------------------------------------------------------------------------------------------------ build
def test_build_decodes_every_image_by_default_and_quick_reads_headers(tmp_path, capsys):
    lol = lol_tree(tmp_path / "data")
    truncated_png(lol / "our485" / "low" / "2.png")
    with pytest.raises(ManifestError) as e:
        build_manifests("lol", lol, out_dir=tmp_path / "m")
    assert [p.kind for p in e.value.problems] == ["truncated"]
    assert f"lol train row 2: {lol / 'our485' / 'low' / '2.png'}: lq: cannot be decoded (truncated" in str(e.value)
    assert not (tmp_path / "m").exists()
    assert main(["build", "lol", "--root", str(lol), "--out", str(tmp_path / "m")]) == 1
    assert "truncated" in capsys.readouterr().err
    out = build_manifests("lol", lol, out_dir=tmp_path / "m", check="header")  # the header is intact
    assert len(out.splits["train"]) == 3
    assert main(["build", "lol", "--root", str(lol), "--out", str(tmp_path / "q"), "--quick"]) == 0


def test_zero_byte_jpeg_is_named_at_build_time(tmp_path):
    lol = lol_tree(tmp_path / "data", train=("1",))
    (lol / "our485" / "low" / "9.jpg").write_bytes(b"")
    rgb(lol / "our485" / "high" / "9.png")
    with pytest.raises(ManifestError, match=r"9\.jpg: lq: not an image \(or a format Pillow cannot read\)"):
        build_manifests("lol", lol, out_dir=None, check="header")


def test_empty_or_missing_split_is_an_error_unless_skipped_and_stale_manifests_go(tmp_path, capsys):
    lol = lol_tree(tmp_path / "data")
    out_dir = tmp_path / "m"
    build_manifests("lol", lol, out_dir=out_dir)
    assert sorted(p.name for p in out_dir.iterdir()) == ["lol_test.csv", "lol_train.csv"]
    (out_dir / "rain_merged_train.csv").write_text("lq,gt,task,source\n")  # another dataset's: never touched
    (out_dir / "lol_notes.csv").write_text("not,a,manifest\n")  # not a manifest: never touched
    for f in (lol / "our485" / "low").iterdir():  # an empty LOL/our485/low
        f.unlink()
    with pytest.raises(ManifestError) as e:
        build_manifests("lol", lol, out_dir=out_dir)
    msg = str(e.value)
    assert "lol train" in msg and "split 'train' has no rows" in msg and "--skip-missing" in msg
    assert f"Removed {out_dir / 'lol_train.csv'}" in msg and f"Removed {out_dir / 'lol_test.csv'}" in msg
    assert sorted(p.name for p in out_dir.iterdir()) == ["lol_notes.csv", "rain_merged_train.csv"]
    out = build_manifests("lol", lol, out_dir=out_dir, on_error="skip", skip_missing=True)
    assert set(out.splits) == {"test"} and any("split 'train' has no rows" in n for n in out.notes)
    # a split gone from a tree with --skip-missing: its manifest of an earlier build is removed and named
    lol2 = lol_tree(tmp_path / "data2")
    build_manifests("lol", lol2, out_dir=out_dir)
    for side in ("low", "high"):
        for f in (lol2 / "eval15" / side).iterdir():
            f.unlink()
        (lol2 / "eval15" / side).rmdir()
    (lol2 / "eval15").rmdir()
    with pytest.raises(ManifestError, match="split 'test' not found"):
        build_manifests("lol", lol2, out_dir=tmp_path / "other")
    assert main(["build", "lol", "--root", str(lol2), "--out", str(out_dir), "--skip-missing"]) == 0
    text = capsys.readouterr().out
    assert f"removed {out_dir / 'lol_test.csv'} (a manifest of an earlier build" in text
    assert sorted(p.name for p in out_dir.iterdir()) == ["lol_notes.csv", "lol_train.csv", "rain_merged_train.csv"]


def test_duplicate_rows_are_named_with_file_and_line(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("lq,gt,task,source\na.png,b.png,haze,X\nc.png,d.png,haze,X\na.png,b.png,haze,X\n")
    with pytest.raises(ManifestError) as e:
        read_manifest(m)
    assert [p.kind for p in e.value.problems] == ["duplicate"]
    assert f"{m} line 4: a.png: duplicate row: the same sample as line 2" in str(e.value)
    assert [r.lq for r in read_manifest(m, on_error="skip")] == ["a.png", "c.png"]


def test_duplicates_across_training_manifests_are_an_error(tmp_path):
    data = tmp_path / "data"
    rows = [Row(str(rgb(data / f"{t}{i}.png").relative_to(data)), str(rgb(data / f"{t}{i}_gt.png").relative_to(data)),
                t, "X") for t in ("haze", "low_light", "rain", "snow", "blur") for i in range(2)]
    write_manifest(rows, tmp_path / "a.csv")
    write_manifest(rows[:1], tmp_path / "b.csv")
    dm = DiffUIRDataModule(str(data), train_manifests=[str(tmp_path / "a.csv"), str(tmp_path / "b.csv")],
                           testsets={}, batch_size=10, train_samples=10, num_workers=0)
    with pytest.raises(ManifestError, match=rf"{tmp_path / 'b.csv'} line 2: haze0.png: duplicate row: the same "
                                            rf"sample as {tmp_path / 'a.csv'} line 2"):
        dm.setup("fit")


def test_non_utf8_manifest_is_named_with_file_line_and_byte(tmp_path, capsys):
    m = tmp_path / "latin1.csv"
    m.write_bytes("lq,gt,task,source\na.png,b.png,haze,X\ncaf\u00e9.png,b.png,haze,X\n".encode("latin-1"))
    with pytest.raises(ManifestError, match=rf"{m} line 3: {m}: byte 0xe9 at column 4 is not UTF-8"):
        read_manifest(m, on_error="skip")  # not skippable: the whole file is unreadable
    assert main(["counts", str(m)]) == 2 and "latin1.csv line 3" in capsys.readouterr().err
    assert main(["validate", str(m), "--data-root", str(tmp_path)]) == 1
    bom = tmp_path / "bom.csv"  # a UTF-8 byte-order mark (Excel) is fine
    bom.write_bytes("\ufefflq,gt,task,source\nx.png,,haze,X\n".encode())
    assert read_manifest(bom)[0].lq == "x.png"
    nul = tmp_path / "nul.csv"
    nul.write_bytes(b"lq,gt,task,source\na.png,\x00b.png,haze,X\n")
    with pytest.raises(ManifestError, match=rf"{nul} line 2: .*contains a control character"):
        read_manifest(nul)


def test_counts_say_rows(tmp_path, capsys):
    lol = lol_tree(tmp_path / "data")
    build_manifests("lol", lol, out_dir=tmp_path / "m")
    assert main(["counts", str(tmp_path / "m" / "lol_train.csv")]) == 0
    assert "3 rows  [rows per task: low_light: 3]" in capsys.readouterr().out


def test_rows_remember_their_manifest_line(tmp_path):
    m = tmp_path / "m.csv"
    m.write_text('lq,gt,task,source\n\n"multi\nline.png",,haze,X\nb.png,,haze,X\n')
    rows = read_manifest(m)
    assert [(r.lq, r.line) for r in rows] == [("multi\nline.png", 4), ("b.png", 5)]
    assert rows[1].origin == f"{m} line 5" and rows[1] == Row("b.png", None, "haze", "X")
    with pytest.raises(ManifestError, match=rf"{m} line 5: {tmp_path / 'b.png'}: lq: no such file"):
        validate_manifest(m, tmp_path, level="exists", on_error="raise")


def test_manifest_layers_point_one_way():
    """The format at the bottom, the builders above it, the command line on top: nothing below imports it."""
    import ast

    below = [ROOT / "src/data/manifest_format.py", ROOT / "src/data/datasets.py",
             ROOT / "src/data/manifest_datamodule.py", ROOT / "src/data/synthetic_sets.py",
             *sorted((ROOT / "src/data/builders").glob("*.py"))]
    for f in below:
        names = {n.module for n in ast.walk(ast.parse(f.read_text())) if isinstance(n, ast.ImportFrom)}
        names |= {a.name for n in ast.walk(ast.parse(f.read_text())) if isinstance(n, ast.Import) for a in n.names}
        assert "src.data.manifests" not in names, f
    fmt = ast.parse((ROOT / "src/data/manifest_format.py").read_text())
    assert not any(isinstance(n, ast.ImportFrom) and (n.module or "").startswith("src.data.builders")
                   for n in ast.walk(fmt))
    r = subprocess.run([sys.executable, "-m", "src.data.manifests", "list"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "our485" in r.stdout, r.stderr


# ------------------------------------------------------------------------------------------------ training
def _five_task_data(tmp_path: Path, bad: str | None = None):
    data = tmp_path / "data"
    rows = []
    for t in ("haze", "low_light", "rain", "snow", "blur"):
        for i in range(3):
            lq, gt = rgb(data / t / f"{i}.png", (20, 20)), rgb(data / t / f"{i}_gt.png", (20, 20))
            rows.append(Row(str(lq.relative_to(data)), str(gt.relative_to(data)), t, "X"))
    if bad:
        truncated_png(data / bad, (20, 20))
    return data, write_manifest(rows, tmp_path / "train.csv")


def test_on_bad_sample_error_names_file_and_row(tmp_path):
    data, m = _five_task_data(tmp_path, bad="rain/1.png")
    ds = DiffUIRTrainDataset(read_manifest(m), data, patch_size=8)
    with pytest.raises(images.ImageReadError, match=rf"^{m} line 9: {data / 'rain' / '1.png'}: cannot be decoded"):
        ds[7]


@pytest.mark.parametrize("cls", [DiffUIRTrainDataset, DiffRestorerTrainDataset])
def test_on_bad_sample_skip_substitutes_the_next_row_of_the_same_task(tmp_path, cls, caplog):
    data, m = _five_task_data(tmp_path, bad="rain/1.png")
    kw = {"patch_size": 8} if cls is DiffUIRTrainDataset else {"image_size": 8}
    ds = cls(read_manifest(m), data, on_bad_sample="skip", **kw)
    good = cls(read_manifest(m), data, **kw)
    with caplog.at_level(logging.WARNING, logger="src.data.datasets"):
        a = ds[(7, 123, False)]
        b = ds[(7, 123, False)]  # known bad now: not read again, not logged again, still counted
    assert a[SKIPPED_KEY] == b[SKIPPED_KEY] == 1 and a["task"] == TASKS.index("rain")
    ref = good[(8, 123, False)]  # the next rain row, same seed: the very same sample
    assert torch.equal(a["lq"], ref["lq"]) and torch.equal(a["gt"], ref["gt"])
    assert ds[(6, 1, False)][SKIPPED_KEY] == 0 and SKIPPED_KEY not in good[(6, 1, False)]
    assert ds.skipped == {"truncated": 2}
    logged = [r.message for r in caplog.records if "bad training sample skipped" in r.message]
    assert len(logged) == 1 and f"{m} line 9" in logged[0] and "rain/1.png" in logged[0]


def test_on_bad_sample_skip_gives_up_when_a_task_has_no_readable_row(tmp_path):
    data, m = _five_task_data(tmp_path)
    for i in range(3):
        truncated_png(data / "snow" / f"{i}.png")
    ds = DiffUIRTrainDataset(read_manifest(m), data, patch_size=8, on_bad_sample="skip")
    with pytest.raises(images.ImageReadError, match="no row of task snow can be read"):
        ds[(9, 0, False)]


def test_datamodule_skip_keeps_batches_valid_and_reports_each_epoch(tmp_path, caplog):
    data, m = _five_task_data(tmp_path, bad="haze/0.png")
    kw = dict(train_manifests=[str(m)], testsets={}, batch_size=10, train_samples=20, num_workers=0, patch_size=8)
    with pytest.raises(ValueError, match="on_bad_sample='ignore'"):
        DiffUIRDataModule(str(data), on_bad_sample="ignore", **kw)
    dm = DiffUIRDataModule(str(data), **kw)
    with pytest.raises(images.ImageReadError, match=r"train\.csv line 2: .*haze/0\.png: cannot be decoded"):
        for _ in dm.train_dataloader():
            pass
    dm = DiffUIRDataModule(str(data), on_bad_sample="skip", **kw)
    loader = dm.train_dataloader()
    assert isinstance(loader, SkipReportingLoader)
    with caplog.at_level(logging.INFO, logger="src.data.manifest_datamodule"):
        for epoch in range(2):
            loader.sampler.set_epoch(epoch)
            batches = list(loader)
    assert len(batches) == 2 and all(set(b) == {"lq", "gt", "task"} for b in batches)  # the field is removed
    for b in batches:  # DiffUIR's composition 4 haze / 1 low-light / 2 rain / 2 snow / 1 blur, intact
        assert torch.bincount(b["task"], minlength=len(TASKS)).tolist()[:7] == [0, 1, 4, 2, 0, 2, 1]
    n_haze = 4 * 2  # haze draws per epoch; 1 of its 3 rows is bad: drawn without replacement, 8 draws hit it 2-3x
    counts = [n for _, n in loader.epoch_skipped]
    assert len(counts) == 2 and all(2 <= n <= 3 for n in counts) and n_haze == 8
    reports = [r.message for r in caplog.records if "could not be read and were replaced" in r.message]
    assert [r.split(":")[0] for r in reports] == ["epoch 0", "epoch 1"]


def test_skip_mode_decodes_the_validation_images_at_setup(tmp_path):
    data, m = _five_task_data(tmp_path)
    truncated_png(data / "val.png")
    val = write_manifest([Row("val.png", None, "haze", "V")], tmp_path / "val.csv")
    dm = DiffUIRDataModule(str(data), train_manifests=[str(m)], testsets={"v": str(val)}, batch_size=10,
                           train_samples=10, num_workers=0, patch_size=8, on_bad_sample="skip")
    with pytest.raises(ManifestError, match=rf"{val} line 2: {data / 'val.png'}: lq: cannot be decoded"):
        dm.setup("fit")


# ------------------------------------------------------------------------------------------------ one image gate
def _crafted(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "img"
    d.mkdir()
    files = {"truncated.png": truncated_png(d / "truncated.png"), "zero.jpg": d / "zero.jpg",
             "text.png": d / "text.png", "folder.png": d / "folder.png", "missing.png": d / "missing.png",
             "float.tif": d / "float.tif"}
    files["zero.jpg"].write_bytes(b"")
    files["text.png"].write_text("hello")
    files["folder.png"].mkdir()
    Image.fromarray(np.zeros((4, 4), np.float32)).save(files["float.tif"])
    gray = io.BytesIO()  # truncated and grayscale: the reader's refusal comes first, whatever the policy
    Image.fromarray(RNG.integers(0, 256, (32, 32), dtype=np.uint8)).save(gray, "PNG")
    files["gray_truncated.png"] = d / "gray_truncated.png"
    files["gray_truncated.png"].write_bytes(gray.getvalue()[: len(gray.getvalue()) // 2])
    buf = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, "JPEG")
    files["truncated.jpg"] = d / "truncated.jpg"
    files["truncated.jpg"].write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return files


def test_datasets_and_restore_refuse_the_same_files_with_the_same_message(tmp_path):
    for name, path in _crafted(tmp_path).items():
        with pytest.raises(images.ImageReadError) as restore_err:
            images.read_image(path)
        for convert in (False, True):
            with pytest.raises(image_io.ImageProblem) as data_err:
                image_io.read_image(path, convert=convert)
            assert str(data_err.value) == str(restore_err.value), name
            assert data_err.value.kind == restore_err.value.kind


def test_datasets_and_restore_accept_the_same_files(tmp_path):
    """Every mode the restore path reads, the datasets read with convert=True (same pixels, 8 bits)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    arr = RNG.integers(0, 256, (6, 10, 3), dtype=np.uint8)
    made = {
        "rgb.png": lambda p: Image.fromarray(arr).save(p),
        "gray.png": lambda p: Image.fromarray(arr[..., 0]).save(p),
        "rgba.png": lambda p: Image.fromarray(np.dstack([arr, arr[..., :1]]), "RGBA").save(p),
        "rotated.jpg": lambda p: Image.fromarray(arr).save(p, exif=exif, quality=95),
        "deep.png": lambda p: p.write_bytes(images.encode_png16(RNG.integers(0, 65536, (6, 10, 3)).astype(np.uint16))),
        "cmyk.tif": lambda p: Image.fromarray(arr).convert("CMYK").save(p),
        "anim.gif": lambda p: Image.fromarray(arr).save(p, save_all=True, append_images=[Image.fromarray(arr)]),
    }
    for name, make in made.items():
        path = tmp_path / name
        make(path)
        loaded = images.read_image(path)
        ours = image_io.read_image(path, convert=True)
        top = 65535 if loaded.bit_depth == 16 else 255
        expected = np.rint(loaded.rgb * top).astype(np.int64)
        expected = (expected + 128) // 257 if top == 65535 else expected
        assert ours.shape == loaded.rgb.shape and np.array_equal(ours, expected), name
        info = image_io.probe_image(path, convert=True)
        assert info.size == (loaded.width, loaded.height), name  # the header's size is the upright size
    assert image_io.read_image(tmp_path / "rotated.jpg").shape == (10, 6, 3)  # EXIF 6: upright, as OpenCV does
    with pytest.raises(image_io.ImageProblem, match="16-bit colour image .*or convert=True"):
        image_io.read_image(tmp_path / "deep.png")


def test_oversized_images_are_refused_before_decoding_with_one_message(tmp_path, monkeypatch):
    path = rgb(tmp_path / "big.png", (40, 30))
    monkeypatch.setattr(image_io, "decode_image", lambda p: images.decode_image(p, 1000))
    monkeypatch.setattr(image_io, "_probe", lambda p: images.probe_image(p, 1000))
    with pytest.raises(images.ImageReadError, match="1,200 pixels is more than the limit of 1,000") as a:
        images.read_image(path, max_pixels=1000)
    with pytest.raises(images.ImageReadError) as b:
        image_io.read_image(path)
    with pytest.raises(images.ImageReadError) as c:
        image_io.probe_image(path)
    assert str(a.value) == str(b.value) == str(c.value) and a.value.kind == "too_large"


def test_worker_errors_keep_their_type_through_the_dataloader(tmp_path):
    data, m = _five_task_data(tmp_path, bad="blur/0.png")
    ds = DiffUIRTrainDataset(read_manifest(m), data, patch_size=8)
    loader = torch.utils.data.DataLoader(ds, batch_size=1, sampler=[12], num_workers=1)
    with pytest.raises(images.ImageReadError, match=r"train\.csv line 14: .*blur/0\.png: cannot be decoded"):
        next(iter(loader))


def test_more_malformed_inputs_are_named(tmp_path, capsys):
    import tifffile

    deep = tmp_path / "deep.tif"
    tifffile.imwrite(deep, RNG.integers(0, 65536, (32, 32, 3)).astype(np.uint16), photometric="rgb",
                     compression="zlib")
    deep.write_bytes(deep.read_bytes()[: deep.stat().st_size * 2 // 3])
    for read in (images.read_image, lambda p: image_io.read_image(p, convert=True)):
        with pytest.raises(images.ImageReadError, match="deep.tif: cannot be decoded"):
            read(deep)
    m = tmp_path / "m.csv"
    m.write_text("lq,gt,task,source\nsets/../../etc/passwd,,haze,X\n")
    with pytest.raises(ManifestError, match="line 2: .*is not inside the data root"):
        read_manifest(m)
    write_manifest([Row("a.png", None, "haze", "X")], m)
    with pytest.raises(FileNotFoundError, match="data root .*nowhere is not a folder"):
        validate_manifest(m, tmp_path / "nowhere")
    assert main(["validate", str(m), "--data-root", str(tmp_path / "nowhere")]) == 2
    lol = lol_tree(tmp_path / "data")
    (tmp_path / "file").write_text("x")
    assert main(["build", "lol", "--root", str(lol), "--out", str(tmp_path / "file")]) == 2
    with pytest.raises(SystemExit) as e:
        main(["build", "lol", "--root", str(lol), "--jobs", "0"])
    assert e.value.code == 2 and "expected a whole number >= 1" in capsys.readouterr().err


def test_lightning_fit_with_skip_sees_clean_batches_and_reports_every_epoch(tmp_path, caplog):
    import lightning as L

    data, m = _five_task_data(tmp_path, bad="snow/2.png")
    seen = []

    class Probe(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def training_step(self, batch, _):
            seen.append((sorted(batch), torch.bincount(batch["task"], minlength=len(TASKS)).tolist()))
            return (batch["lq"].mean() - self.w) ** 2

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = DiffUIRDataModule(str(data), train_manifests=[str(m)], testsets={}, batch_size=10, train_samples=30,
                           num_workers=0, patch_size=8, on_bad_sample="skip")
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    with caplog.at_level(logging.INFO, logger="src.data.manifest_datamodule"):
        trainer.fit(Probe(), datamodule=dm)
    assert len(seen) == 6 and all(keys == ["gt", "lq", "task"] for keys, _ in seen)
    assert all(c[:7] == [0, 1, 4, 2, 0, 2, 1] for _, c in seen)  # 4/1/2/2/1 per batch, substitutes included
    reports = [r.message for r in caplog.records if "were replaced by another sample" in r.message]
    assert [r.split(":")[0] for r in reports] == ["epoch 0", "epoch 1"]
    assert all(1 <= int(r.split(": ")[1].split()[0]) <= 2 for r in reports)  # 6 snow draws of 3 rows, 1 bad


def test_probe_reads_no_pixels_and_agrees_with_decode_on_orientation(tmp_path, monkeypatch):
    from PIL import ImageFile, ImageOps

    for o in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = o
        arr = RNG.integers(0, 256, (6, 10, 3), dtype=np.uint8)
        for name in ("r.png", "r.jpg"):
            Image.fromarray(arr).save(tmp_path / name, exif=exif)
            with Image.open(tmp_path / name) as im:
                upright = ImageOps.exif_transpose(im).size
            assert images.probe_image(tmp_path / name).size == upright == images.read_image(tmp_path / name).rgb.shape[
                1::-1], (name, o)

    def no_decoding(self):
        raise AssertionError("the header probe decoded pixels")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    for name in ("r.png", "r.jpg"):
        assert images.probe_image(tmp_path / name).orientation == 8
        assert image_io.probe_image(tmp_path / name).size == (6, 10)


def test_odd_manifest_files_are_named(tmp_path):
    folder = tmp_path / "dir.csv"
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match="dir.csv is not a file"):
        read_manifest(folder)
    long = tmp_path / "long.csv"
    long.write_text("lq,gt,task,source\n" + "a" * 200_000 + ",b.png,haze,X\n")
    with pytest.raises(ManifestError, match=r"long.csv line \d: .*not CSV: field larger than field limit"):
        read_manifest(long)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files without read permission")
def test_manifest_without_read_permission_is_named(tmp_path, capsys):
    locked = write_manifest([Row("a.png", None, "haze", "X")], tmp_path / "locked.csv")
    locked.chmod(0)
    try:
        assert main(["counts", str(locked)]) == 2
        assert f"manifest {locked} cannot be read: Permission denied" in capsys.readouterr().err
    finally:
        locked.chmod(0o644)
