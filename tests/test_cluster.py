"""cluster=slurm: the SLURM job that hydra-submitit-launcher generates (nodes, tasks per node, GPUs, time) follows the
trainer preset, checked on its real submission script without a cluster (a stand-in `sbatch` keeps the script and
refuses the job, and an `srun` that is only looked for); a requeued job resumes from its run folder's last
checkpoint (simulated on CPU)."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from src.train import resume_path, train
from tests.conftest import compose_train

TINY = ["experiment=diffuir_t", "debug=default", "model.net.dim=8", "num_threads=1", "trainer=cpu", "test=false",
        "logger=csv"]


def _sbatch_script(overrides: list[str], tmp_path: Path) -> tuple[str, object]:
    """The sbatch file submitit writes for this config's SLURM launcher (the real plugin's launch())."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra.core.utils import setup_globals

    setup_globals()  # Hydra's resolvers (now:, hydra:) as in a real run
    cfg = compose_train(["experiment=diffuir_l", "cluster=slurm", *overrides,
                         f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path / "run", hydra_config=True)
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=lambda c: None, config=cfg)
    kept = tmp_path / "submitted.sh"
    sbatch = tmp_path / "bin" / "sbatch"
    sbatch.parent.mkdir()
    sbatch.write_text(f"#!/bin/sh\ncp \"$1\" {kept}\necho 'sbatch: error: no cluster here' >&2\nexit 1\n")
    srun = sbatch.parent / "srun"  # submitit looks for it before submitting; never run here
    srun.write_text("#!/bin/sh\nexit 1\n")
    for tool in (sbatch, srun):
        tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    path = os.environ["PATH"]
    os.environ["PATH"] = f"{sbatch.parent}{os.pathsep}{path}"
    try:
        with pytest.raises(Exception, match="no cluster here"):
            launcher.launch([["model.net.dim=8"]], initial_job_idx=0)
    finally:
        os.environ["PATH"] = path
    return kept.read_text(), cfg


def _sbatch(script: str, option: str) -> str:
    (value,) = re.findall(rf"^#SBATCH --{option}=(\S+)$", script, flags=re.M)
    return value


@pytest.mark.parametrize("overrides,nodes,gpus", [([], 1, 1), (["trainer=a100x2"], 1, 2),
                                                  (["trainer=a100x2", "trainer.num_nodes=2"], 2, 2)])
def test_generated_slurm_job_follows_the_trainer(overrides, nodes, gpus, tmp_path):
    script, cfg = _sbatch_script(overrides, tmp_path)
    assert _sbatch(script, "nodes") == str(nodes) and _sbatch(script, "ntasks-per-node") == str(gpus)
    assert _sbatch(script, "gpus-per-node") == str(gpus) and _sbatch(script, "time") == "4320"
    assert _sbatch(script, "constraint") == "a100" and _sbatch(script, "signal") == "USR2@120"
    assert (cfg.trainer.num_nodes, cfg.trainer.devices) == (nodes, gpus) and cfg.auto_resume
    assert re.search(r"^srun .*submitit\.core\._submit", script, flags=re.M)  # one task per GPU runs the job
    assert cfg.hydra.launcher.max_num_timeout > 0
    trainer = instantiate(cfg.trainer, accelerator="cpu", devices=1, num_nodes=1, logger=False,
                          enable_checkpointing=False, strategy="auto")
    assert not trainer._accelerator_connector.cluster_environment.auto_requeue  # submitit requeues, not Lightning


def test_requeued_job_resumes_from_its_last_checkpoint(compose_cfg, tmp_path):
    """What submitit does on a timeout: the job's callable runs again with the same config (so the same run folder).
    The first attempt stops at step 2 with last.ckpt (as a preempted job that has checkpointed); the rerun, same
    config and folder, goes on from step 2 to 4 instead of starting again."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

    run = [*TINY, "auto_resume=true", "callbacks.model_checkpoint.every_n_train_steps=1"]
    assert resume_path(compose_cfg([*run, "trainer.max_steps=4"], tmp_path)) is None  # nothing yet: from step 0
    train(compose_cfg([*run, "trainer.max_steps=2"], tmp_path))  # the attempt that was preempted
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 2
    requeued = compose_cfg([*run, "trainer.max_steps=4"], tmp_path)
    assert resume_path(requeued) == str(last)
    result = train(requeued)
    assert result["global_step"] == 4
    ckpt = torch.load(last, weights_only=False)
    assert ckpt["global_step"] == 4 and int(ckpt["state_dict"]["ema.step"]) == 4
    # the requeue itself: submitit's checkpoint() hook resubmits the same callable with the same arguments
    launcher = SlurmLauncher(submitit_folder=str(tmp_path / "s"), max_num_timeout=3)
    args = (["ablation=full"], "hydra.sweep.dir", 0, "job_id_for_0", {})
    delayed = launcher.checkpoint(*args)
    assert delayed.function is launcher and delayed.args == args
    # without auto_resume the same folder would start again from step 0
    assert resume_path(compose_cfg([*TINY, "trainer.max_steps=4"], tmp_path)) is None


def test_cluster_preset_composes_with_the_paper_recipe(tmp_path):
    cfg = compose_train(["experiment=diffuir_l", "trainer=a100x2", "trainer.num_nodes=2", "cluster=slurm"],
                        tmp_path, hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert (launcher["nodes"], launcher["tasks_per_node"], launcher["gpus_per_node"]) == (2, 2, 2)
    assert cfg.trainer.strategy == "ddp" and cfg.data.batch_size == 10 and cfg.trainer.accumulate_grad_batches == 2
