"""Trust under attack (issue 23): crafted model files are bounded in time and memory, never reach the network, and
never load as silent garbage. Every file here is made by the test itself.

Cases: YAML and pickle alias bombs, self-references, deep nesting; pipeline checkpoints naming themselves or a
chain of two; hub ids and URLs in constructor arguments (``CLIPImageEncoder(model_name="hf-hub:...")``, a URL as
``weights``), a device as a weights file; a config asking for a model far larger than its weights; compressed zip
records; an unused huge tensor; I64 / I32 weights; NaN weights; a stale ``init_from_official``; ``_partial_``.
"""

from __future__ import annotations

import io
import os
import socket
import time
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from src.utils.checkpoints import (
    EXPORT_CONFIG,
    EXPORT_WEIGHTS,
    MAX_CONFIG_NODES,
    CheckpointMismatchError,
    CheckpointReferenceError,
    ConfigBombError,
    DamagedWeightsError,
    UnsafeCheckpointError,
    hub_offline,
    load_restoration_model,
    read_checkpoint,
    validate_model_config,
)
from tests.test_checkpoint_safety import tiny_config, tiny_state

PIPELINE = "src.diff_restorer.pipeline.DiffRestorerPipeline.from_checkpoints"


@pytest.fixture(scope="module")
def tiny():
    config = tiny_config()
    return config, tiny_state(config)


@pytest.fixture
def no_network(monkeypatch):
    """Hub variables unset and every socket connection recorded and refused: the list of attempted addresses."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "DIFFUSERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    attempts = []

    def guard(self, address, *args):
        attempts.append(address)
        raise OSError(f"test socket guard: connection to {address} refused")

    monkeypatch.setattr(socket.socket, "connect", guard)
    monkeypatch.setattr(socket.socket, "connect_ex", guard)
    monkeypatch.setattr(socket, "create_connection", lambda address, *a, **k: guard(None, address))
    return attempts


def write_export(folder: Path, config_text: str, state: dict) -> Path:
    from safetensors.torch import save_file

    folder.mkdir()
    save_file(state, str(folder / EXPORT_WEIGHTS))
    (folder / EXPORT_CONFIG).write_text(config_text)
    return folder


# ---------------------------------------------------------------------------------------------- bounded configs
def test_yaml_alias_bomb_is_refused_in_seconds(tmp_path, tiny):
    config, state = tiny
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 10)]
    body = yaml.safe_dump({"model_config": config}, sort_keys=False)
    text = "\n".join(lines) + "\n" + body.replace("task_names: null", "task_names: *l9")
    assert "*l9" in text and len(text) < 4000
    folder = write_export(tmp_path / "bomb", text, {k: v.contiguous() for k, v in state.items()})
    start = time.perf_counter()
    with pytest.raises(ConfigBombError, match=f"more than {MAX_CONFIG_NODES:,} nodes"):
        load_restoration_model(folder)
    assert time.perf_counter() - start < 20


def test_yaml_self_reference_is_refused_by_name(tmp_path, tiny):
    config, state = tiny
    body = yaml.safe_dump({"model_config": config}, sort_keys=False)
    text = body.replace("task_names: null", "task_names: &me [1, *me]")
    folder = write_export(tmp_path / "self", text, {k: v.contiguous() for k, v in state.items()})
    with pytest.raises(ConfigBombError, match="contains itself"):
        load_restoration_model(folder)


def test_pickled_shared_reference_bomb_and_deep_nesting_are_refused(tmp_path, tiny):
    config, state = tiny
    laughs: list = ["lol"]
    for _ in range(25):  # 2**25 leaves once expanded; a few hundred bytes pickled (memo references)
        laughs = [laughs, laughs]
    deep: list = []
    for _ in range(200):
        deep = [deep]
    base = tmp_path / "base.ckpt"
    torch.save({"state_dict": state, "uir_model_config": config}, base)
    for name, value, message in (("laughs", laughs, "more than"), ("deep", deep, "deeper than")):
        path = tmp_path / f"{name}.ckpt"
        torch.save({"state_dict": state, "uir_model_config": {**config, "task_names": value}}, path)
        assert path.stat().st_size < base.stat().st_size + 20_000  # the bomb adds a few KB
        start = time.perf_counter()
        with pytest.raises(ConfigBombError, match=message):
            load_restoration_model(path)
        assert time.perf_counter() - start < 20


def test_export_config_over_the_size_limit_is_refused_unread(tmp_path, tiny):
    config, state = tiny
    text = yaml.safe_dump({"model_config": config}) + "# " + "x" * (1 << 20) + "\n"
    folder = write_export(tmp_path / "big", text, {k: v.contiguous() for k, v in state.items()})
    with pytest.raises(UnsafeCheckpointError, match="more than the"):
        load_restoration_model(folder)


def test_root_partial_is_refused(tiny):
    with pytest.raises(UnsafeCheckpointError, match="_partial_.*must be built"):
        validate_model_config({**tiny[0], "_partial_": True})


# ---------------------------------------------------------------------------------------------- references
def test_pipeline_checkpoint_naming_itself_is_refused_without_growing(tmp_path):
    path = tmp_path / "loop.ckpt"
    torch.save({"uir_model_config": {"_target_": PIPELINE, "stage1_ckpt": str(path)}, "state_dict": {}}, path)
    size = path.stat().st_size
    with pytest.raises(CheckpointReferenceError, match="may not refer to itself") as info:
        load_restoration_model(path)
    assert len(str(info.value)) < 400 and path.stat().st_size == size
    link = tmp_path / "link.ckpt"  # the same file under another name is the same file
    link.symlink_to(path)
    torch.save({"uir_model_config": {"_target_": PIPELINE, "stage1_ckpt": str(link)}, "state_dict": {}}, path)
    with pytest.raises(CheckpointReferenceError, match="may not refer to itself"):
        load_restoration_model(path)


def test_checkpoint_references_nest_one_level_only(tmp_path):
    a, b, c = (tmp_path / f"{n}.ckpt" for n in "abc")
    for outer, inner in ((a, b), (b, c), (c, a)):
        torch.save({"uir_model_config": {"_target_": PIPELINE, "stage1_ckpt": str(inner)}, "state_dict": {}}, outer)
    with pytest.raises(CheckpointReferenceError, match="one level deep only"):
        load_restoration_model(a)


def test_stored_init_from_official_is_not_followed(tmp_path, tiny):
    """The state dict replaces what init_from_official would load: a stale path (or the file itself) is not read."""
    config, state = tiny
    for name, ref in (("gone", str(tmp_path / "gone.pt")), ("itself", str(tmp_path / "itself.ckpt"))):
        path = tmp_path / f"{name}.ckpt"
        torch.save({"state_dict": state, "uir_model_config": {**config, "init_from_official": ref}}, path)
        model = load_restoration_model(path)
        assert model.model_config["init_from_official"] == ref
        assert torch.equal(model.state_dict()["net.stem.weight"], state["net.stem.weight"])


# ---------------------------------------------------------------------------------------------- network
def test_hub_ids_and_urls_in_arguments_are_refused_without_a_connection(tmp_path, tiny, no_network):
    config, state = tiny
    weights = tmp_path / "clip.bin"
    weights.write_bytes(b"0")
    clip = {"_target_": "src.diff_restorer.clip_encoder.CLIPImageEncoder", "weights": str(weights)}
    cases = {
        "hf-hub model name": ({**clip, "model_name": "hf-hub:timm/vit_base_patch16_clip_224.openai"},
                              "open_clip architecture"),
        "unknown model name": ({**clip, "model_name": "ViT-Nonexistent"}, "open_clip architecture"),
        "URL weights": ({**clip, "model_name": "ViT-B-32", "weights": "https://example.com/w.bin"},
                        "local files only"),
        "device weights": ({**clip, "model_name": "ViT-B-32", "weights": "/dev/zero"}, "regular file"),
        "folder as weights": ({**clip, "model_name": "ViT-B-32", "weights": str(tmp_path)}, "local file"),
    }
    for name, (node, message) in cases.items():
        path = tmp_path / f"{name}.ckpt"
        torch.save({"state_dict": state, "uir_model_config": {**config, "clip": node}}, path)
        with pytest.raises(UnsafeCheckpointError, match=message):
            load_restoration_model(path)
    assert no_network == []


def test_hub_offline_blocks_hub_requests_before_any_socket(no_network):
    import huggingface_hub
    import huggingface_hub.constants

    assert "HF_HUB_OFFLINE" not in os.environ and not huggingface_hub.constants.HF_HUB_OFFLINE
    with hub_offline():
        assert os.environ["HF_HUB_OFFLINE"] == "1" and huggingface_hub.constants.is_offline_mode()
        with pytest.raises(Exception) as info:  # noqa: B017 (the hub's offline / cache-miss errors vary by version)
            huggingface_hub.hf_hub_download("uir-suite/not-a-repo", "model.bin", cache_dir=None)
        assert "offline" in str(info.value).lower() or "cache" in str(info.value).lower()
    assert no_network == []
    assert "HF_HUB_OFFLINE" not in os.environ and not huggingface_hub.constants.HF_HUB_OFFLINE


# ---------------------------------------------------------------------------------------------- memory
def test_config_far_larger_than_its_weights_is_refused_before_building(tmp_path, tiny):
    import resource

    config, state = tiny
    path = tmp_path / "huge.ckpt"
    torch.save({"state_dict": state, "uir_model_config": {**config, "net": {**config["net"], "dim": 4096}}}, path)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CheckpointMismatchError, match="differ in shape"):
        load_restoration_model(path)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 1500, grown_mb  # built for real it would take tens of GB (4096 channels)


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def test_compressed_records_are_refused_and_unused_tensors_stay_on_disk(tmp_path, tiny):
    config, state = tiny
    plain = io.BytesIO()
    torch.save({"state_dict": state, "uir_model_config": config, "unused": torch.zeros(64 << 20)}, plain)
    bomb = tmp_path / "deflated.ckpt"
    with zipfile.ZipFile(io.BytesIO(plain.getvalue())) as src, \
            zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    assert bomb.stat().st_size < 2_000_000
    with pytest.raises(UnsafeCheckpointError, match="is compressed"):
        load_restoration_model(bomb)

    big = tmp_path / "unused.ckpt"  # 256 MB under a key nobody reads: mapped, never paged in
    big.write_bytes(plain.getvalue())
    before = _rss_mb()
    ckpt = read_checkpoint(big)
    assert ckpt["unused"].shape == (64 << 20,)
    assert _rss_mb() - before < 128


# ---------------------------------------------------------------------------------------------- no silent garbage
def test_integer_and_nan_weights_are_refused_by_name(tmp_path, tiny):
    config, state = tiny
    cases = {
        "i64": ({**state, "net.stem.weight": state["net.stem.weight"].long()}, CheckpointMismatchError,
                "net.stem.weight: file torch.int64 vs model torch.float32"),
        "nan": ({**state, "net.stem.weight": state["net.stem.weight"].clone().fill_(float("nan"))},
                DamagedWeightsError, "NaN or infinity, e.g. net.stem.weight"),
    }
    for name, (weights, error, message) in cases.items():
        path = tmp_path / f"{name}.ckpt"
        torch.save({"state_dict": weights, "uir_model_config": config}, path)
        with pytest.raises(error, match=message):
            load_restoration_model(path)
        export = {k: v.contiguous() for k, v in weights.items()}
        export["net.stem.weight"] = (export["net.stem.weight"].int() if name == "i64"
                                     else export["net.stem.weight"])
        folder = write_export(tmp_path / f"{name}_export", yaml.safe_dump({"model_config": config}), export)
        with pytest.raises(error, match="net.stem.weight"):
            load_restoration_model(folder)


# ---------------------------------------------------------------------------------------------- deleting
def _old(path: Path, data: bytes = b"") -> Path:
    path.write_bytes(data)
    os.utime(path, (time.time() - 3600, time.time() - 3600))
    return path


def test_cleanup_deletes_only_the_suites_temporaries_of_dead_processes(tmp_path):
    from src.utils.atomic import atomic_open, remove_stale_temporaries, temporary_name_for

    out, outside = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    outside.mkdir()
    (out / "linked").symlink_to(outside, target_is_directory=True)
    prefix, suffix = temporary_name_for(out / "a.png")
    assert prefix == f".a.png.uir-{os.getpid()}-" and suffix == ".tmp"
    dead = _old(out / ".a.png.uir-999999999-ab12cd34.tmp")
    others = [_old(out / ".thesis.docx.q7w8e9r0.tmp", b"another program's"),  # no suite marker
              _old(out / f".b.png.uir-{os.getppid()}-ab12cd34.tmp"),  # its writer still runs
              _old(outside / ".c.png.uir-999999999-ab12cd34.tmp")]  # reached only through a symlink
    victim = _old(outside / "target.tmp")
    (out / ".d.png.uir-999999999-zz99yy88.tmp").symlink_to(victim)
    removed, kept = remove_stale_temporaries([out, out / "linked", outside], within=out)
    assert removed == [dead] and not dead.exists()
    assert all(p.exists() for p in others) and victim.exists()
    assert kept == [others[1]]
    with atomic_open(out / "e.png"):  # the suite's own writes carry the marker
        assert [p.name.startswith(f".e.png.uir-{os.getpid()}-") for p in out.glob(".e.png.*")] == [True]


def test_outputs_through_a_symlinked_folder_are_refused(tmp_path):
    from src.utils.atomic import check_inside

    out, outside = tmp_path / "out", tmp_path / "elsewhere"
    (out / "real").mkdir(parents=True)
    outside.mkdir()
    (out / "linked").symlink_to(outside, target_is_directory=True)
    check_inside(out, out / "real" / "a.png")
    for path in (out / "linked" / "a.png", out / ".." / "a.png", tmp_path / "a.png"):
        with pytest.raises(ValueError, match="symbolic link|not inside"):
            check_inside(out, path)


# ---------------------------------------------------------------------------------------------- exports, one line
@pytest.fixture
def tiny_ckpt(tmp_path, tiny):
    path = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": tiny[1], "uir_model_config": tiny[0]}, path)
    return path


def test_export_interrupted_by_a_full_disk_leaves_nothing(tmp_path, tiny_ckpt, monkeypatch, capsys):
    import errno

    import src.export as export_module

    def full_disk(path, text, **_):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(export_module, "atomic_write_text", full_disk)  # config.yaml, written after the weights
    out = tmp_path / "exported"
    assert export_module.main(["--ckpt", str(tiny_ckpt), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "No space left on device" in err and "nothing was exported" in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["tiny.ckpt"]
    monkeypatch.undo()
    assert export_module.main(["--ckpt", str(tiny_ckpt), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [EXPORT_CONFIG, EXPORT_WEIGHTS]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported", "tiny.ckpt"]


def test_export_refuses_out_under_a_file_and_crafted_files_in_one_line(tmp_path, tiny, tiny_ckpt, capsys):
    from src.export import main

    afile = tmp_path / "afile"
    afile.write_text("x")
    bomb = tmp_path / "bomb.ckpt"
    torch.save({"state_dict": tiny[1], "uir_model_config": {**tiny[0], "task_names": (lambda x: [x, x])([1])}}, bomb)
    loop = tmp_path / "loop.ckpt"
    torch.save({"uir_model_config": {"_target_": PIPELINE, "stage1_ckpt": str(loop)}, "state_dict": {}}, loop)
    nan = tmp_path / "nan.ckpt"
    torch.save({"state_dict": {k: v.clone().fill_(float("nan")) if v.is_floating_point() else v
                               for k, v in tiny[1].items()}, "uir_model_config": tiny[0]}, nan)
    cases = [([str(tiny_ckpt), str(afile / "sub")], f"{afile} is a file"),
             ([str(tiny_ckpt), str(afile)], "is a file, not a folder"),
             ([str(loop), str(tmp_path / "o1")], "may not refer to itself"),
             ([str(nan), str(tmp_path / "o2")], "NaN or infinity")]
    for (ckpt, out), message in cases:
        assert main(["--ckpt", ckpt, "--out", out]) == 2, message
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and message in err, err
    assert main(["--ckpt", str(bomb), "--out", str(tmp_path / "o3")]) == 0  # shared, small: fine
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


# ---------------------------------------------------------------------------------------------- memory budget, CSV
def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header says width×height (8-bit RGB) and whose pixel data is a few compressed bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def test_a_13000_square_png_is_refused_at_once_by_the_memory_budget(tmp_path):
    from src.utils.images import (
        DEFAULT_MAX_PIXELS,
        DEFAULT_MEMORY_BUDGET,
        RESTORE_BYTES_PER_PIXEL,
        ImageReadError,
        max_pixels_for_budget,
        read_image,
    )

    assert DEFAULT_MAX_PIXELS == max_pixels_for_budget(DEFAULT_MEMORY_BUDGET)
    assert DEFAULT_MAX_PIXELS * RESTORE_BYTES_PER_PIXEL <= DEFAULT_MEMORY_BUDGET < 13000 * 13000 * 48
    bomb = _png_header_only(tmp_path / "bomb.png", 13000, 13000)
    start = time.perf_counter()
    with pytest.raises(ImageReadError) as info:
        read_image(bomb)
    assert time.perf_counter() - start < 2
    text = str(info.value)
    assert info.value.kind == "too_large" and f"limit of {DEFAULT_MAX_PIXELS:,}" in text
    assert "--max-pixels" in text and "GiB" in text and "\n" not in text


def test_csv_cells_that_look_like_formulas_are_neutralised(tmp_path):
    import csv

    from src.reporting.report import write_per_image_csv

    names = ["=HYPERLINK(\"http://x\")", "-2+3", "+1", "@SUM(A1)", "\tx", "plain.png"]
    records = [{"index": i, "name": n, "task": "noise", "psnr_in": -1.5} for i, n in enumerate(names)]
    path = write_per_image_csv(records, [], tmp_path / "per_image.csv")
    rows = list(csv.DictReader(path.open()))
    assert [r["name"] for r in rows] == ["'" + n for n in names[:-1]] + ["plain.png"]
    assert all(r["psnr_in"] == "-1.5" for r in rows)  # numbers stay numbers


def test_write_rows_is_the_one_csv_writer_columns_in_order_and_cells_neutralised(tmp_path):
    import csv

    from src.utils.csv_cells import write_rows

    rows = [{"b": "=1+1", "a": -2.5}, {"a": 3, "c": "extra"}]
    path = write_rows(tmp_path / "deep" / "t.csv", rows)  # folder made, columns in first-seen order
    assert path.read_text().splitlines()[0] == "b,a,c"
    got = list(csv.DictReader(path.open()))
    assert got[0] == {"b": "'=1+1", "a": "-2.5", "c": ""} and got[1] == {"b": "", "a": "3", "c": "extra"}
    path = write_rows(tmp_path / "t2.csv", rows, ["a", "b"])  # named columns: others left out
    assert path.read_text().splitlines() == ["a,b", "-2.5,'=1+1", "3,"]


def test_train_with_a_bad_init_from_official_exits_2_with_one_line(tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    bad = tmp_path / "model-300.pt"
    bad.write_text("not a checkpoint")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PROJECT_ROOT": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "src.train", "experiment=diffuir_t", "model.net.dim=8",
                           f"model.init_from_official={bad}", f"paths.output_dir={tmp_path / 'run'}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert err[-1].startswith("error: official DiffUIR checkpoint") and "is not a torch checkpoint" in err[-1]
    assert "Traceback" not in proc.stderr


def test_refused_model_file_is_found_behind_hydra_and_resume_errors():
    from hydra.errors import InstantiationException

    from src.utils.checkpoints import CheckpointMismatchError, refused_model_file

    inner = CheckpointMismatchError("checkpoint x does not fit the model: it holds DiffUIR-T; the run asks for L")
    try:
        try:
            raise inner
        except CheckpointMismatchError as e:
            raise InstantiationException("Error in call to target") from e
    except InstantiationException as outer:
        assert refused_model_file(outer) is inner
    assert refused_model_file(RuntimeError("CUDA out of memory")) is None


def test_a_non_finite_result_is_refused_not_written(tmp_path):
    import numpy as np
    from PIL import Image

    from src.utils.images import read_image, write_image

    Image.new("RGB", (8, 6)).save(tmp_path / "a.png")
    like = read_image(tmp_path / "a.png")
    rgb = np.full((6, 8, 3), 0.5, np.float32)
    rgb[2, 3, 1] = np.nan
    rgb[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="2 NaN/infinite value"):
        write_image(tmp_path / "out.png", rgb, like)
    assert not (tmp_path / "out.png").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]
    write_image(tmp_path / "out.png", np.nan_to_num(rgb, nan=0.5, posinf=1.0), like)
    assert (tmp_path / "out.png").is_file()


# ---------------------------------------------------------------------------------------------- entry points
RESTORE_FAST = ["--threads", "1", "--no-progress", "--steps", "1"]


def test_restore_refuses_crafted_models_and_bad_out_in_one_line(tmp_path, tiny, tiny_ckpt, capsys):
    from PIL import Image

    from src.restore import main

    Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
    afile = tmp_path / "afile"
    afile.write_text("x")
    loop = tmp_path / "loop.ckpt"
    torch.save({"uir_model_config": {"_target_": PIPELINE, "stage1_ckpt": str(loop)}, "state_dict": {}}, loop)
    i64 = tmp_path / "i64.ckpt"
    torch.save({"state_dict": {k: v.long() if k == "net.stem.weight" else v for k, v in tiny[1].items()},
                "uir_model_config": tiny[0]}, i64)
    huge = tmp_path / "huge.ckpt"
    torch.save({"state_dict": tiny[1], "uir_model_config": {**tiny[0], "net": {**tiny[0]["net"], "dim": 4096}}}, huge)
    cases = [(tiny_ckpt, afile / "sub", f"{afile} is a file"),
             (tiny_ckpt, afile, "is a file, not a folder"),
             (loop, tmp_path / "o", "may not refer to itself"),
             (i64, tmp_path / "o", "file torch.int64 vs model torch.float32"),
             (huge, tmp_path / "o", "differ in shape")]
    for ckpt, out, message in cases:
        rc = main([str(tmp_path / "a.png"), "--ckpt", str(ckpt), "--out", str(out), *RESTORE_FAST])
        captured = capsys.readouterr()
        errors = [line for line in (captured.err + captured.out).splitlines() if line.startswith("error")]
        assert rc == 2 and len(errors) == 1 and message in errors[0], (message, captured)
    assert not (tmp_path / "o").exists()


def test_restore_never_writes_through_a_symlinked_folder_and_globs_skip_out(tmp_path, tiny_ckpt, capsys):
    from PIL import Image

    from src.restore import main

    src_dir, outside = tmp_path / "in", tmp_path / "elsewhere"
    (src_dir / "sub").mkdir(parents=True)
    outside.mkdir()
    Image.new("RGB", (16, 16), (40, 80, 120)).save(src_dir / "a.png")
    Image.new("RGB", (16, 16), (40, 80, 120)).save(src_dir / "sub" / "b.png")
    out = src_dir / "restored"
    out.mkdir()
    (out / "sub").symlink_to(outside, target_is_directory=True)
    rc = main([str(src_dir), "--recursive", "--ckpt", str(tiny_ckpt), "--out", str(out), *RESTORE_FAST])
    text = capsys.readouterr().out
    assert rc == 1 and "symbolic link" in text
    assert list(outside.iterdir()) == [] and (out / "a.png").is_file()
    (out / "sub").unlink()
    rc = main([f"{src_dir}/**/*.png", "--ckpt", str(tiny_ckpt), "--out", str(out), *RESTORE_FAST])
    text = capsys.readouterr().out
    assert rc == 0, text  # the previous run's outputs under --out are not inputs again
    assert "failed 0" in text or "failed" not in text.split("restored")[-1].split("\n")[0]


@pytest.mark.slow  # two fresh interpreters: ~20-40 s on 2 shared cores
def test_eval_command_line_refuses_crafted_and_foreign_files_in_one_line(tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x07\x12\x07pytorch" + bytes(64))
    loop = tmp_path / "loop.ckpt"
    torch.save({"uir_model_config": {"_target_": PIPELINE, "stage1_ckpt": str(loop)}, "state_dict": {}}, loop)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PROJECT_ROOT": str(tmp_path)}
    for ckpt, message in ((onnx, "is not a torch checkpoint"), (loop, "may not refer to itself")):
        proc = subprocess.run([sys.executable, "-m", "src.eval", "experiment=diffuir_t", f"ckpt_path={ckpt}",
                               f"hydra.run.dir={tmp_path}/run_{ckpt.stem}"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error")]
        assert proc.returncode == 2 and len(errors) == 1 and message in errors[0], proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
