"""Every documented training path runs: each experiment × data combination, every ablation and every sweep job
composes, instantiates, trains one step and tests one batch on tiny settings.

Manifest data (``data=diffuir_tasks``, ``data=eight_degradations``) comes from small fake trees in each dataset's
published layout (tiny PNGs written here), turned into manifests by the suite's own builders
(:func:`src.data.fake_trees.build_fake_data`). Full-size models are
checked by composition and parameter count only.
"""

from __future__ import annotations

import itertools
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from src.data.fake_trees import build_fake_data
from src.train import UsageError, train
from tests.conftest import CONF, compose_train

# one optimiser step, one test batch, nothing else (no validation, logger, checkpoints, progress bar)
FAST = ["debug=default", "trainer=cpu", "num_threads=1", "trainer.max_steps=1", "trainer.limit_val_batches=0",
        "data.train_samples=40",  # at least one batch of the largest swept batch size (20)
        "~logger", "callbacks=none", "+trainer.enable_progress_bar=false", "+trainer.enable_model_summary=false"]
DIFFUIR_TINY = ["model.net.dim=8"]
DR_TINY = ["model.sampling_steps=2"]
DIFFUIR_PARAMS = {"t": 886_435, "s": 3_268_643, "b": 12_406_851, "l": 36_261_187}  # the official code's counts

@pytest.fixture(scope="module")
def manifests(tmp_path_factory) -> tuple[Path, Path]:
    """(data root, manifest folder) with every manifest the two data configs and their default test sets read."""
    return build_fake_data(tmp_path_factory.mktemp("paths"))


def _data_overrides(data: str, manifests) -> list[str]:
    if data == "builtin":
        return ["data=builtin"]
    root, out = manifests
    return [f"data={data}", f"paths.data_dir={root}", f"data.manifest_dir={out}", "data.pin_memory=false"]


def _run(overrides: list[str], out: Path) -> dict:
    result = train(compose_train(overrides, out))
    assert result["global_step"] >= 1 or "train=false" in overrides  # it trained (stage 2 counts G and D steps)
    assert result["rows"] and result["rows"][-1]["task"] == "all", result.get("rows")
    assert all(np.isfinite(r["psnr_out"]) and 0 <= r["ssim_out"] <= 1 for r in result["rows"])
    return result


def _groups(result) -> set[str]:
    return {r["task"] for r in result["rows"]} - {"all"}


DIFFUIR_SOURCES = {"Rain100H", "Rain100L", "Test100", "Test1200", "Test2800", "LOL", "Snow100K-S", "Snow100K-L",
                   "SOTS-outdoor", "GoPro"}


@pytest.fixture(scope="module")
def stage1_ckpt(tmp_path_factory) -> Path:
    """A Diff-Restorer stage-1 (tiny) run on the built-in data, with its checkpoint: what stage 2 needs."""
    out = tmp_path_factory.mktemp("stage1")
    fast = [o for o in FAST if o not in ("callbacks=none", "+trainer.enable_progress_bar=false", "~logger")]
    fast += ["~callbacks.progress_bar", "logger=csv"]  # the default callbacks (checkpoints, LR monitor) otherwise
    result = _run(["experiment=diff_restorer_stage1_tiny", *fast, *DR_TINY], out)
    assert _groups(result) <= set(compose_train(["data=builtin"]).data.tasks)
    ckpt = out / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    return ckpt


# ------------------------------------------------------------------------------------------ experiment × data
@pytest.mark.parametrize("size", ["t", "s", "b", "l"])
@pytest.mark.parametrize("data", ["builtin", "diffuir_tasks"])
def test_diffuir_sizes_train_and_test_on_each_data(size, data, manifests, tmp_path):
    result = _run([f"experiment=diffuir_{size}", *_data_overrides(data, manifests), *FAST, *DIFFUIR_TINY], tmp_path)
    assert _groups(result) <= (DIFFUIR_SOURCES if data == "diffuir_tasks" else set(compose_train([]).data.tasks))


@pytest.mark.parametrize("size", ["t", "s", "b", "l"])
def test_diffuir_full_sizes_compose_with_the_papers_parameter_counts(size):
    cfg = compose_train([f"experiment=diffuir_{size}", "data=diffuir_tasks"])
    model = instantiate(cfg.model)
    assert sum(p.numel() for p in model.net.parameters()) == DIFFUIR_PARAMS[size]
    assert (cfg.data.patch_size, cfg.data.batch_size, cfg.trainer.accumulate_grad_batches) == (256, 10, 2)
    assert model.task_names == list(compose_train([]).data.tasks)  # the label vocabulary, whatever data= holds


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
@pytest.mark.parametrize("data", ["builtin", "eight_degradations"])
def test_diff_restorer_stages_train_and_test_on_each_data(stage, data, manifests, stage1_ckpt, tmp_path):
    if stage == "stage1" and data == "builtin":
        return  # the stage1_ckpt fixture is this run
    extra = [f"model.stage1_ckpt={stage1_ckpt}"] if stage == "stage2" else []
    result = _run([f"experiment=diff_restorer_{stage}_tiny", *_data_overrides(data, manifests), *FAST, *DR_TINY,
                   *extra], tmp_path)
    if data == "eight_degradations":
        assert _groups(result) <= {"DIV2K-noise50", "DIV2K-jpeg10", "LOL", "SOTS-outdoor", "Rain1400", "Raindrop-A",
                                   "Snow100K-L", "GoPro"}


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_diff_restorer_paper_experiments_train_on_512_unless_overridden(stage, tmp_path):
    cfg = compose_train([f"experiment=diff_restorer_{stage}"])
    assert cfg.data._target_.endswith("DiffRestorerDataModule") and cfg.data.patch_size == 512
    assert compose_train([f"experiment=diff_restorer_{stage}", "data.patch_size=256"]).data.patch_size == 256
    assert compose_train([f"experiment=diff_restorer_{stage}", "data=builtin"]).data._target_.endswith("Builtin"
                                                                                                       "DataModule")
    if stage == "stage2":  # stage 1 first: a clear error naming the key, before anything is built
        cfg = compose_train(["experiment=diff_restorer_stage2", "data=builtin"], tmp_path)
        with pytest.raises(UsageError, match=r"model\.stage1_ckpt: Diff-Restorer stage 2 takes P_D from stage 1"):
            train(cfg)


# ------------------------------------------------------------------------------------------ sweeps and ablations
SWEEPS = {  # sweep -> experiment it is documented with (tiny model sizes here)
    "sweep=diffuir_table2": ["experiment=diffuir_t", *DIFFUIR_TINY],
    "sweep=diffuir_table3": ["experiment=diffuir_t", *DIFFUIR_TINY],
    "hparams_search=diffuir_lr_batch": ["experiment=diffuir_t", *DIFFUIR_TINY],
    "sweep=diff_restorer_ablations": ["experiment=diff_restorer_stage1_tiny", *DR_TINY],
    "sweep=diff_restorer_table5": ["experiment=diff_restorer_stage2_tiny", *DR_TINY],
}


def sweep_jobs(sweep: str) -> list[list[str]]:
    """The override list of every job of a sweep config (the basic sweeper's cartesian product)."""
    params = compose_train([sweep], hydra_config=True).hydra.sweeper.params
    keys = list(params)
    return [[f"{k}={v}" for k, v in zip(keys, values)]
            for values in itertools.product(*(str(params[k]).split(",") for k in keys))]


JOBS = [(sweep, job) for sweep in SWEEPS for job in sweep_jobs(sweep)]


def test_sweeps_cover_every_ablation_and_every_sweep_config():
    assert {s.split("=")[1] for s in SWEEPS} == {p.stem for g in ("sweep", "hparams_search")
                                                  for p in (CONF / g).glob("*.yaml")}
    swept = {o.split("=")[1] for _, job in JOBS for o in job if o.startswith("ablation=")}
    assert swept == {p.stem for p in (CONF / "ablation").glob("*.yaml")}
    assert len(JOBS) == 4 + 6 + 9 + 9 + 4


@pytest.mark.parametrize("sweep,job", JOBS, ids=[f"{s.split('=')[1]}:{','.join(j)}" for s, j in JOBS])
def test_every_sweep_job_trains_and_tests(sweep, job, stage1_ckpt, tmp_path):
    extra = [f"model.stage1_ckpt={stage1_ckpt}"] if "stage2" in SWEEPS[sweep][0] else []
    cfg = compose_train([*SWEEPS[sweep], sweep, *job, *FAST, *extra], tmp_path)
    for override in job:  # the job's setting reached the config
        key, value = override.split("=")
        if key != "ablation":
            assert float(OmegaConf.select(cfg, key)) == float(value)
    result = train(cfg)
    assert result["global_step"] >= 1 or not cfg.train  # Table V's SD / Consistency decoder rows only evaluate
    if "ablation=dr_decoder_consistency" in job:
        assert "not_run" in result["paths"]  # no Consistency Decoder weights here: a NOT_RUN.md, not a crash
        return
    assert result["rows"][-1]["task"] == "all"


# ------------------------------------------------------------------------------------------ task subsets
@pytest.mark.parametrize("tasks", [["jpeg", "noise", "low_light"], ["snow"], ["blur", "haze", "rain", "raindrop"]])
def test_builtin_task_subsets_in_any_order_train_and_test(tasks, tmp_path):
    result = _run(["experiment=diffuir_t", f"data.tasks=[{','.join(tasks)}]", *FAST, *DIFFUIR_TINY,
                   "trainer.limit_test_batches=1.0"], tmp_path)
    assert _groups(result) == set(tasks)  # every held-out image of each trained task, under its own name
    assert result["rows"][-1]["n"] == 3 * len(tasks)


def test_eight_degradations_task_subset_trains_stage1(manifests, tmp_path):
    result = _run(["experiment=diff_restorer_stage1_tiny", *_data_overrides("eight_degradations", manifests),
                   "data.tasks=[snow,noise]", *FAST, *DR_TINY], tmp_path)
    assert result["rows"]


def test_diffuir_tasks_weight_subset_trains(manifests, tmp_path):
    _run(["experiment=diffuir_t", *_data_overrides("diffuir_tasks", manifests), "data.task_weights={blur: 0.5, "
          "rain: 0.5}", *FAST, *DIFFUIR_TINY], tmp_path)


# ------------------------------------------------------------------------------------------ start-up checks
def test_missing_test_manifest_fails_before_training(manifests, tmp_path):
    root, out = manifests
    partial = tmp_path / "manifests"
    shutil.copytree(out, partial)
    (partial / "gopro_test.csv").unlink()
    (partial / "lol_test.csv").unlink()
    cfg = compose_train(["experiment=diffuir_t", *_data_overrides("diffuir_tasks", (root, partial)), *FAST,
                         *DIFFUIR_TINY], tmp_path / "run")
    started = time.perf_counter()
    with pytest.raises(UsageError) as err:
        train(cfg)
    assert time.perf_counter() - started < 30
    text = str(err.value)
    assert f"data.testsets.GoPro: {partial / 'gopro_test.csv'}" in text and "data.testsets.LOL" in text
    assert "python -m src.data.manifests build" in text
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written


def test_paper_data_task_subset_tests_only_its_sets_and_writes_per_task_columns(manifests, tmp_path):
    """data.tasks=[rain,low_light] on data=diffuir_tasks: only rain and low-light rows are drawn, only their test sets
    are evaluated, and test_tasks.csv groups the five deraining sets into the paper's `rain` column."""
    import csv

    result = _run(["experiment=diffuir_t", *_data_overrides("diffuir_tasks", manifests), "data.tasks=[rain,low_light]",
                   *FAST, *DIFFUIR_TINY, "trainer.limit_test_batches=1.0"], tmp_path)
    assert _groups(result) == {"Rain100H", "Rain100L", "Test100", "Test1200", "Test2800", "LOL"}
    with (tmp_path / "test_tasks.csv").open(newline="") as f:
        tasks = {r["task"]: r for r in csv.DictReader(f)}
    assert list(tasks) == ["rain", "low_light", "all"] and tasks["rain"]["n"] == "5"
    rain_sets = [r["psnr_out"] for r in result["rows"] if r["task"] in DIFFUIR_SOURCES - {"LOL", "Snow100K-S",
                                                                                         "Snow100K-L", "SOTS-outdoor",
                                                                                         "GoPro"}]
    assert float(tasks["rain"]["psnr_out"]) == pytest.approx(sum(rain_sets) / 5, rel=1e-6)


def test_stage2_checkpoint_names_its_stage1_checkpoint_from_any_folder(stage1_ckpt, tmp_path, monkeypatch):
    """model.stage1_ckpt given relative to the working folder is stored absolute in the stage-2 checkpoint, so the
    stage-2 model loads from another folder (src.restore --ckpt stage2.ckpt run anywhere)."""
    import os

    from src.diff_restorer.stage2 import DiffRestorerStage2
    from src.utils.checkpoints import read_checkpoint, stored_config

    relative = os.path.relpath(stage1_ckpt)
    assert not Path(relative).is_absolute()
    fast = [o for o in FAST if o not in ("callbacks=none", "+trainer.enable_progress_bar=false", "~logger")]
    fast += ["~callbacks.progress_bar", "logger=csv"]  # the checkpoint callback writes last.ckpt
    _run(["experiment=diff_restorer_stage2_tiny", *fast, *DR_TINY, f"model.stage1_ckpt={relative}"], tmp_path)
    stage2 = tmp_path / "checkpoints" / "last.ckpt"
    config = stored_config(read_checkpoint(stage2), stage2)
    assert config["stage1_ckpt"] == str(stage1_ckpt.resolve())
    monkeypatch.chdir(tmp_path)  # elsewhere: the relative path would not resolve here
    assert not Path(relative).exists()
    model = DiffRestorerStage2.from_checkpoint(stage2)
    assert model.stage1 is not None
