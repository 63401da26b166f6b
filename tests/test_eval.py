"""`python -m src.eval` on tiny settings: the built-in set and a manifest set with a tiny checkpoint write the
expected tables, grids and report; missing checkpoints, manifests and images give clear errors."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from src.evaluation.evaluator import evaluate
from src.utils.checkpoints import CheckpointMismatchError
from tests.conftest import CONF, ROOT, compose_train

TINY_MODEL = ["experiment=diffuir_t", "data=builtin", "model.net.dim=8"]
FAST = [*TINY_MODEL, "trainer=cpu", "num_threads=1", "data.eval_size=32", "data.eval_batch_size=4",
        "data.tasks=[noise,low_light]", "data.num_workers=0", "num_workers=0", "grid_images=2",
        "logger=tensorboard"]


def compose_eval(overrides, output_dir):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="eval", overrides=[*overrides, f"paths.output_dir={output_dir}"])


def save_tiny_checkpoint(path):
    """A suite checkpoint of a DiffUIR-T-shaped network of width 8, with its model config inside."""
    cfg = compose_train(TINY_MODEL)
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    torch.save({"state_dict": model.state_dict(), "uir_model_config": OmegaConf.to_container(cfg.model, resolve=True)},
               path)
    return path


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_builtin_set_writes_tables_with_paper_columns_grids_and_report(tiny_ckpt, tmp_path):
    weights = tmp_path / "no_weights"
    cfg = compose_eval([*FAST, f"ckpt_path={tiny_ckpt}", f"metric_weights_dir={weights}",
                        "paper_method='DiffUIR-T(ours)'", "metrics=[psnr,ssim,psnr_rgb,ssim_rgb,loe,lpips,fid]"],
                       tmp_path / "out")
    result = evaluate(cfg)
    out = tmp_path / "out"
    rows = _read_csv(out / "builtin" / "metrics.csv")
    assert [r["task"] for r in rows] == ["noise", "low_light", "all"]
    assert [int(r["n"]) for r in rows] == [3, 3, 6]
    for r in rows:
        assert 0 < float(r["psnr"]) < 60 and 0 < float(r["ssim"]) <= 1 and float(r["loe"]) >= 0
        assert float(r["psnr_rgb"]) > 0 and float(r["psnr_in"]) > 0
    assert "lpips" not in rows[0] and "fid" not in rows[0]  # not computed: listed once, not a column of blanks
    assert rows[1]["paper_psnr"] == "23.01" and rows[1]["paper_ssim"] == "0.880"  # Table 1, DiffUIR-T, Enhancement
    assert rows[0]["paper_psnr"] == "" and rows[2]["paper_psnr"] == ""  # no denoising column; no paper 'all'
    assert rows[1]["paper_source"] == "DiffUIR T1 'Enhancement' DiffUIR-T(ours)"
    per_image = _read_csv(out / "builtin" / "per_image.csv")
    assert len(per_image) == 6 and len({r["index"] for r in per_image}) == 6 and "lpips" not in per_image[0]
    assert abs(np.mean([float(r["psnr"]) for r in per_image]) - float(rows[2]["psnr"])) < 1e-9

    md = (out / "builtin" / "metrics.md").read_text()
    assert "| low_light | 3 |" in md and "23.01" in md and "LPIPS" not in md.splitlines()[2]  # header row
    needs = (f"not computed (needs {weights / 'pyiqa' / 'LPIPS_v0.1_alex-df73285e.pth'}, "
             f"{weights / 'checkpoints' / 'alexnet-owt-7be5be79.pth'})")
    assert md.count(needs) == 1 and md.count("pt_inception-2015-12-05-6726825d.pth") == 1
    for task in ("noise", "low_light"):
        grid = Image.open(out / "builtin" / f"grid_{task}.png")
        assert grid.size[0] > 3 * 32 and grid.size[1] > 2 * 32  # 3 columns (LQ | restored | GT), 2 rows
    assert len(list((out / "builtin" / "restored").rglob("*.png"))) == 6
    report = (out / "report.md").read_text()
    assert "![noise](builtin/grid_noise.png)" in report and "## Metrics not computed" in report
    assert report.index("## Summary") < report.index("### builtin")  # the report opens with the summary
    assert "| builtin | low_light | 3 |" in report and "![per-task gain beside the paper](summary.png)" in report
    assert "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth" in report
    page = (out / "report.html").read_text()
    assert "<img src='builtin/grid_low_light.png'" in page and "<table class='summary'>" in page
    assert page.index("<table class='summary'>") < page.index("<img class='chart' src='summary.png'") \
        < page.index("<h2>builtin")
    assert Image.open(out / "summary.png").size[0] > 500
    assert any((out / "tensorboard").rglob("events.out.tfevents.*"))
    assert set(result["unavailable"]) == {"lpips", "fid"}


def test_metrics_csv_is_numeric_for_pandas(tiny_ckpt, tmp_path):
    pd = pytest.importorskip("pandas")
    weights = tmp_path / "no_weights"
    cfg = compose_eval([*FAST, f"ckpt_path={tiny_ckpt}", f"metric_weights_dir={weights}",
                        "paper_method='DiffUIR-T(ours)'", "metrics=[psnr,ssim,loe,lpips,niqe]"], tmp_path / "out")
    evaluate(cfg)
    table = pd.read_csv(tmp_path / "out" / "builtin" / "metrics.csv")
    numeric = ["n", "psnr_in", "ssim_in", "psnr", "paper_psnr", "ssim", "paper_ssim", "loe"]
    assert table.columns[0] == "task" and table.columns[-1] == "notes"
    assert set(numeric) <= set(table.columns) and not {"lpips", "niqe"} & set(table.columns)
    for column in numeric:
        assert pd.api.types.is_numeric_dtype(table[column]), (column, table[column].dtype)
    assert table.loc[table.task == "low_light", "paper_psnr"].item() == pytest.approx(23.01)
    per_image = pd.read_csv(tmp_path / "out" / "builtin" / "per_image.csv")
    assert all(pd.api.types.is_float_dtype(per_image[c]) for c in ("psnr_in", "psnr", "ssim", "loe"))


def test_manifest_sets_are_found_and_run_with_their_paper_rows(tiny_ckpt, tmp_path):
    data, manifests = tmp_path / "data", tmp_path / "manifests"
    rng = np.random.default_rng(0)
    lines = ["lq,gt,task,source"]
    for i in range(2):
        for kind, scale in (("low", 0.2), ("high", 1.0)):
            (data / "LOL" / kind).mkdir(parents=True, exist_ok=True)
            img = (rng.random((24, 28, 3)) * 255 * scale).astype(np.uint8)
            Image.fromarray(img).save(data / "LOL" / kind / f"{i}.png")
        lines.append(f"LOL/low/{i}.png,LOL/high/{i}.png,low_light,LOL")
    manifests.mkdir()
    (manifests / "lol_test.csv").write_text("\n".join(lines) + "\n")
    cfg = compose_eval([*FAST, f"ckpt_path={tiny_ckpt}", f"manifest_dir={manifests}", f"paths.data_dir={data}",
                        "metrics=[psnr,ssim]", "logger=csv", "save_images=false"], tmp_path / "out")
    result = evaluate(cfg)  # testsets=auto: only LOL's manifest exists
    assert [r.name for r in result["results"]] == ["LOL"]
    rows = _read_csv(tmp_path / "out" / "LOL" / "metrics.csv")
    assert [(r["task"], r["n"]) for r in rows] == [("low_light", "2"), ("all", "2")]
    assert "paper_psnr" not in rows[0]  # width-8 network: no Table 1 row (auto), Diff-Restorer reports no PSNR
    assert not (tmp_path / "out" / "LOL" / "restored").exists()
    assert "histogram equalisation of ['low_light'] inputs" in (tmp_path / "out" / "report.md").read_text()


def test_histogram_equalisation_follows_the_model():
    from src.evaluation.evaluator import hist_eq_tasks

    assert hist_eq_tasks(compose_eval(["experiment=diffuir_t"], "unused")) == ["low_light"]
    assert hist_eq_tasks(compose_eval(["experiment=diff_restorer_stage1_tiny"], "unused")) == []
    assert hist_eq_tasks(compose_eval(["experiment=diffuir_t", "hist_eq_tasks=[]"], "unused")) == []


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    cfg = compose_eval(FAST, tmp_path / "out")  # ckpt_path: ???
    with pytest.raises(ValueError, match=r"ckpt_path is required: pass ckpt_path=<file>.*last\.ckpt"):
        evaluate(cfg)
    missing = tmp_path / "nope" / "last.ckpt"
    with pytest.raises(FileNotFoundError, match=rf"ckpt_path={missing} does not exist"):
        evaluate(compose_eval([*FAST, f"ckpt_path={missing}"], tmp_path / "out"))


def test_checkpoint_without_config_is_rebuilt_from_the_experiment_or_says_which_to_pass(tiny_ckpt, tmp_path):
    from src.evaluation.evaluator import load_model

    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": torch.load(tiny_ckpt, weights_only=True)["state_dict"]}, plain)
    model = load_model(compose_eval([*FAST, f"ckpt_path={plain}"], tmp_path), plain)
    assert model.model_config["net"]["dim"] == 8
    with pytest.raises(CheckpointMismatchError, match="pass the experiment the checkpoint was trained with"):
        load_model(compose_eval(["experiment=diffuir_t", f"ckpt_path={plain}"], tmp_path), plain)


def test_missing_dataset_files_are_a_clear_error(tiny_ckpt, tmp_path):
    manifests = tmp_path / "manifests"
    with pytest.raises(FileNotFoundError, match=r"test set LOL: manifest .*lol_test.csv not found: build it"):
        evaluate(compose_eval([*FAST, f"ckpt_path={tiny_ckpt}", f"manifest_dir={manifests}", "testsets=[LOL]"],
                              tmp_path / "out"))
    manifests.mkdir()
    (manifests / "lol_test.csv").write_text("lq,gt,task,source\nLOL/low/1.png,LOL/high/1.png,low_light,LOL\n")
    (tmp_path / "data").mkdir()  # the data root exists, the manifest's files do not
    with pytest.raises(FileNotFoundError, match=r"(?s)missing under the data root .*UIR_DATA.*LOL/low/1.png"):
        evaluate(compose_eval([*FAST, f"ckpt_path={tiny_ckpt}", f"manifest_dir={manifests}", "testsets=[LOL]",
                               f"paths.data_dir={tmp_path / 'data'}"], tmp_path / "out"))
    with pytest.raises(ValueError, match="unknown test set"):
        evaluate(compose_eval([*FAST, f"ckpt_path={tiny_ckpt}", "testsets=[Rain100X]"], tmp_path / "out"))


@pytest.mark.slow  # a fresh interpreter: ~10-20 s on 2 shared cores
def test_command_line_without_checkpoint_fails_with_the_hint(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PROJECT_ROOT": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "src.eval", *FAST, f"hydra.run.dir={tmp_path}/run"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "ckpt_path is required" in proc.stderr + proc.stdout
