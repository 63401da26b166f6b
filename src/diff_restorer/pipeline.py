"""The whole Diff-Restorer: LQ → CLIP → visual prompts → stage-1 UniPC sampling → Degradation-aware Decoder → image.

::

    pipe = DiffRestorerPipeline.from_checkpoints("stage1/last.ckpt", "stage2/last.ckpt")
    restored = pipe.restore(lq, steps=20, generator=torch.Generator().manual_seed(0))   # B×3×H×W in [0, 1]
    pipe.detect_degradation(lq)                                                          # ['haze', ...]

Any size: the LQ image is padded (reflect, replicate when tiny) to stage 1's multiple (the VAE's ×8 times the
U-Net's down-sampling), sampled and decoded at that size, and cropped back. The stage-2 decoder gets the padded LQ
image's encoder features and its own P_D (B_d of the stage-2 checkpoint on the shared CLIP embedding: see
``stage2.py``). Without a stage-2 checkpoint the SD VAE decoder is used: "Ours_S", the same as stage 1's
``restore``.

``src.restore`` / ``src.eval`` rebuild models from one checkpoint file; ``save`` writes a small *pipeline
checkpoint* that names the two checkpoints (absolute paths) and holds no weights (the stage checkpoints are read
weights-only through :mod:`src.utils.checkpoints`, their configs checked against the suite's allowlist)::

    python -m src.diff_restorer.pipeline --stage1 s1/last.ckpt --stage2 s2/last.ckpt --out pipeline.ckpt
    python -m src.restore photos/ --ckpt pipeline.ckpt --out restored/
    python -m src.eval experiment=diff_restorer_stage2 ckpt_path=pipeline.ckpt

``python -m src.export --ckpt pipeline.ckpt --format safetensors --out DIR`` writes one self-contained folder
instead: both stages' trained weights (``stage1.*``, ``stage2.*``) and a config that builds this class from the two
stage configs (:meth:`DiffRestorerPipeline.export_config`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from src.diff_restorer.stage1 import DiffRestorerStage1
from src.diff_restorer.stage2 import DiffRestorerStage2, check_stages_fit, restore_with_stages
from src.utils.atomic import atomic_open
from src.utils.checkpoints import MODEL_CONFIG_KEY

PIPELINE_TARGET = "src.diff_restorer.pipeline.DiffRestorerPipeline.from_checkpoints"


class DiffRestorerPipeline(nn.Module):
    """A trained stage-1 model and (optionally) a stage-2 decoder, behind the suite's ``restore`` protocol.

    Args:
        stage1: a :class:`~src.diff_restorer.stage1.DiffRestorerStage1`.
        stage2: a :class:`~src.diff_restorer.stage2.DiffRestorerStage2` (its decoder and B_d are used), or None
            for the SD VAE decoder.
        sampling_steps: default UniPC steps (None: stage 1's, 20 in the paper).
        share_clip: give stage 2 stage 1's CLIP encoder (the same frozen model: one copy, one forward pass).

    Built by :meth:`from_checkpoints`, the weights live in the two stage checkpoints (``weights_from_files``: its
    state dict is empty); built directly (e.g. from an export's config), its state dict is the stages' trained parts
    under ``stage1.`` / ``stage2.``.
    """

    def __init__(self, stage1: DiffRestorerStage1, stage2: DiffRestorerStage2 | None = None,
                 sampling_steps: int | None = None, share_clip: bool = False):
        super().__init__()
        if share_clip and stage2 is not None:
            stage2.clip = stage1.clip
        self.stage1, self.stage2 = stage1, stage2
        self.weights_from_files = False
        self.sampling_steps = int(sampling_steps or stage1.hparams.sampling_steps)
        self.pad_multiple = stage1.pad_multiple
        self.task_names = stage1.task_names
        check_stages_fit(stage1, stage2)
        self.shared_clip = stage2 is not None and stage2.clip is stage1.clip
        self.model_config: dict | None = None

    @classmethod
    def from_checkpoints(cls, stage1_ckpt: str | Path, stage2_ckpt: str | Path | None = None,
                         sd_dir: str | Path | None = None, clip_weights: str | Path | None = None,
                         sampling_steps: int | None = None, map_location: str | torch.device = "cpu"):
        """Rebuild both stages from their checkpoints (frozen SD / CLIP from their files, optionally replaced)."""
        stage1 = DiffRestorerStage1.from_checkpoint(stage1_ckpt, sd_dir=sd_dir, clip_weights=clip_weights,
                                                    map_location=map_location)
        stage2 = None
        if stage2_ckpt is not None:
            stage2 = DiffRestorerStage2.from_checkpoint(stage2_ckpt, sd_dir=sd_dir, clip_weights=clip_weights,
                                                        eval_mode="reconstruction", map_location=map_location)
        share = stage2 is not None and same_clip(stage1.model_config, stage2.model_config)
        pipe = cls(stage1, stage2, sampling_steps, share_clip=share).requires_grad_(False)
        pipe.weights_from_files = True
        pipe.model_config = {"_target_": PIPELINE_TARGET, "stage1_ckpt": str(Path(stage1_ckpt).resolve()),
                             "stage2_ckpt": None if stage2_ckpt is None else str(Path(stage2_ckpt).resolve()),
                             "sd_dir": None if sd_dir is None else str(sd_dir),
                             "clip_weights": None if clip_weights is None else str(clip_weights),
                             "sampling_steps": sampling_steps}
        return pipe.eval()

    # ------------------------------------------------------------------ pipeline checkpoints
    def save(self, path: str | Path) -> Path:
        """A pipeline checkpoint: the config naming both checkpoints, no weights (``load_model_from_checkpoint``
        and so ``src.restore`` / ``src.eval`` rebuild the pipeline from it)."""
        if self.model_config is None:
            raise RuntimeError("only a pipeline built with from_checkpoints can be saved (it names their files)")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, "wb") as f:
            torch.save({MODEL_CONFIG_KEY: dict(self.model_config), "state_dict": {}}, f)
        return path

    def stage_state_dict(self) -> dict[str, torch.Tensor]:
        """The stages' trained parts (their checkpoints' state dicts) under ``stage1.`` / ``stage2.``."""
        out = {f"stage1.{k}": v for k, v in self.stage1.state_dict().items()}
        if self.stage2 is not None:
            out.update({f"stage2.{k}": v for k, v in self.stage2.state_dict().items()})
        return out

    def export_config(self) -> dict:
        """A config that rebuilds this pipeline from the two stage configs (weights: :meth:`stage_state_dict`)."""
        if self.stage1.model_config is None or (self.stage2 is not None and self.stage2.model_config is None):
            raise RuntimeError("only a pipeline whose stages carry their model configs (from checkpoints) can be "
                               "exported")
        stage2 = None
        if self.stage2 is not None:
            stage2 = dict(self.stage2.stored_config())
            stage2.update(eval_mode="reconstruction", stage1_ckpt=None)  # as from_checkpoints builds it
        return {"_target_": f"{__name__}.DiffRestorerPipeline", "stage1": dict(self.stage1.model_config),
                "stage2": stage2, "sampling_steps": self.sampling_steps, "share_clip": self.shared_clip}

    def state_dict(self, *args, destination=None, prefix: str = "", keep_vars: bool = False):
        """Empty when the weights live in the two stage checkpoints, else :meth:`stage_state_dict`."""
        if self.weights_from_files:
            return {} if destination is None else destination
        state = {prefix + k: v for k, v in self.stage_state_dict().items()}
        if destination is None:
            return state
        destination.update(state)
        return destination

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        if self.weights_from_files:
            if state_dict:
                raise RuntimeError("a DiffRestorerPipeline built from checkpoints loads its weights from the stage "
                                   f"checkpoints it names; got a state dict with {len(state_dict)} entries")
            return torch.nn.modules.module._IncompatibleKeys([], [])
        missing, unexpected = [], [k for k in state_dict if not k.startswith(("stage1.", "stage2."))]
        for name, stage in (("stage1", self.stage1), ("stage2", self.stage2)):
            part = {k[len(name) + 1:]: v for k, v in state_dict.items() if k.startswith(name + ".")}
            if stage is None:
                unexpected += [f"{name}.{k}" for k in part]
                continue
            result = stage.load_state_dict(part, strict=strict, assign=assign)
            missing += [f"{name}.{k}" for k in result.missing_keys]
            unexpected += [f"{name}.{k}" for k in result.unexpected_keys]
        if strict and unexpected:
            raise RuntimeError(f"unexpected keys in a DiffRestorerPipeline state dict: {unexpected[:5]}")
        return torch.nn.modules.module._IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ restoration
    @torch.no_grad()
    def restore(self, lq: torch.Tensor, steps: int | None = None,
                generator: torch.Generator | None = None, callback=None) -> torch.Tensor:
        """Restore B×3×H×W images in [0, 1] of any size (one image: a batch of one): :func:`restore_with_stages`;
        ``callback(done, total)`` after each sampling step."""
        if lq.dim() == 3:
            return self.restore(lq[None], steps, generator, callback)[0]
        return restore_with_stages(self.stage1, self.stage2, lq, steps or self.sampling_steps, generator, callback)

    @torch.no_grad()
    def detect_degradation(self, lq: torch.Tensor) -> list[str]:
        """Stage 1's degradation classifier C on P_D: one task name per image."""
        return self.stage1.detect_degradation(lq if lq.dim() == 4 else lq[None])

    def parameter_counts(self) -> dict[str, int]:
        counts = {f"stage1.{k}": v for k, v in self.stage1.parameter_counts().items()}
        if self.stage2 is not None:
            counts.update({f"stage2.{k}": v for k, v in self.stage2.parameter_counts().items()})
        return counts


def same_clip(config1: dict | None, config2: dict | None) -> bool:
    """Whether two stage configs name the same frozen CLIP encoder."""
    clip1 = (config1 or {}).get("clip")
    return clip1 is not None and clip1 == (config2 or {}).get("clip")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m src.diff_restorer.pipeline",
                                description="Write a Diff-Restorer pipeline checkpoint (stage 1 + stage-2 decoder) "
                                            "for src.restore / src.eval.")
    p.add_argument("--stage1", required=True, help="stage-1 checkpoint (.ckpt of src.train)")
    p.add_argument("--stage2", default=None, help="stage-2 checkpoint; omit for the SD VAE decoder (Ours_S)")
    p.add_argument("--out", required=True, help="the pipeline checkpoint to write")
    p.add_argument("--sd-dir", default=None, help="replace the SD-1.5 folder stored in the checkpoints")
    p.add_argument("--clip-weights", default=None, help="replace the CLIP weights file stored in the checkpoints")
    p.add_argument("--steps", type=int, default=None, help="default UniPC steps (stage 1's: 20)")
    args = p.parse_args(argv)
    pipe = DiffRestorerPipeline.from_checkpoints(args.stage1, args.stage2, args.sd_dir, args.clip_weights,
                                                 args.steps)  # checks that both load before writing
    print(f"wrote {pipe.save(args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
