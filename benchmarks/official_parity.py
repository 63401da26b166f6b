"""Learning parity with the official DiffUIR code: ``python -m benchmarks.official_parity --official PATH``.

Trains DiffUIR-T twice in one process on the same CPU, alternating the two in chunks of ``--chunk`` steps (the
order alternates too: O S | S O | O S ...), and writes what each learned:

* **official**: the released training code run as it is: its ``UnetRes``/``ResidualDiffusion`` (``p_losses``) and
  its ``Trainer`` (Adam, betas (0.9, 0.99), gradient clipping 1.0, ``ema_pytorch.EMA`` 0.995 every 10 steps),
  whose own ``Trainer.train()`` loop runs each chunk; its data loaders are replaced by an iterator over the
  batches below (the other four task loaders yield empty batches, so its concatenation is the batch itself).
* **suite**: ``src.diffuir.module.DiffUIRModule`` composed from ``conf/`` (``experiment=diffuir_t``) and trained by
  a Lightning ``Trainer`` built from ``conf/trainer`` (gradient clipping 1.0, no accumulation on either side).

Both start from the same weights (the official network's, converted with :mod:`src.diffuir.official`), see the
same batches (one seeded list of built-in crops and degradations, :mod:`src.data.builtin`), and draw the diffusion
time and noise from the same seeded generator state (each side's global RNG state is swapped in for its chunks),
so step 1's loss is the same computation on both sides. Reported: loss curves (CSV and PNG), samples/s per chunk
(median, spread, suite/official ratio), and PSNR/SSIM on Y (:mod:`src.metrics.fidelity`) of the released 3-step
sampler on the held-out built-in images (each side's own sampler, same start noise), raw and EMA weights.
``--ema-check`` also feeds one sequence of weight updates to ``ema_pytorch.EMA`` and :class:`src.utils.ema.EMA`.

The official code is not part of this repository. Without ``--official`` the script prints how to get it and
exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import importlib.util
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType, SimpleNamespace

import lightning as L
import torch

from benchmarks.diffuir_speed import cpu_model
from src.data.builtin import BuiltinEvalDataset, BuiltinTrainDataset
from src.diffuir.official import convert_state_dict
from src.metrics.fidelity import batch_psnr_ssim
from src.reporting.plots import pyplot_or_none
from src.utils.csv_cells import write_rows

ROOT = Path(__file__).resolve().parents[1]
OFFICIAL_REPO = "https://github.com/iSEE-Laboratory/DiffUIR"
OFFICIAL_DEPS = "-e .[parity]"  # its imports: accelerate einops ema-pytorch Augmentor thop opencv
HOW_TO_GET = (
    f"get the official DiffUIR code outside this repository, e.g.\n"
    f"  git clone {OFFICIAL_REPO} /work/official_diffuir\n"
    f"  .venv/bin/pip install {OFFICIAL_DEPS}\n"
    f"then run: python -m benchmarks.official_parity --official /work/official_diffuir"
)
SIDES = ("official", "suite")


# ------------------------------------------------------------------------------------------- the official code
def load_official(path: Path) -> ModuleType:
    """Import ``src/model.py`` of an official checkout under another name (both codes call their package ``src``)."""
    model_py = path / "src" / "model.py"
    if not model_py.is_file():
        raise FileNotFoundError(f"{model_py} not found: --official must point at a checkout of {OFFICIAL_REPO}")
    if str(path) not in sys.path:
        sys.path.append(str(path))  # its top-level 'metrics' and 'matlab_functions' imports
    spec = importlib.util.spec_from_file_location("diffuir_official_model", model_py)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as err:
        raise SystemExit(f"the official code needs packages missing here ({err}): .venv/bin/pip install "
                         f"{OFFICIAL_DEPS}") from err
    return module


def build_official(off: ModuleType, args, workdir: Path):
    """The official network, diffusion and ``Trainer`` as its train.py builds them (T size, objective pred_res)."""
    unet = off.UnetRes(dim=32, dim_mults=(1, 1, 1, 1), num_unet=1, condition=True, objective="pred_res",
                       test_res_or_noise="res")
    diffusion = off.ResidualDiffusion(unet, image_size=args.crop, timesteps=1000, delta_end=1.8e-3,
                                      sampling_timesteps=3, objective="pred_res", loss_type="l1", condition=True,
                                      sum_scale=0.01, test_res_or_noise="res")
    opts = SimpleNamespace(phase="parity")  # anything but "train": the Trainer then builds no data loaders
    trainer = off.Trainer(diffusion, None, opts, train_batch_size=args.batch, num_samples=1, train_lr=args.lr,
                          train_num_steps=0, gradient_accumulate_every=1, ema_decay=0.995, amp=False,
                          convert_image_to="RGB", results_folder=str(workdir / "official"), condition=True,
                          save_and_sample_every=10**9, num_unet=1)
    return unet, diffusion, trainer


class OfficialRunner:
    """Runs chunks of the official ``Trainer.train()`` on given batches and records its losses."""

    def __init__(self, off: ModuleType, args, workdir: Path, batches: list[dict]):
        self.unet, self.diffusion, self.trainer = build_official(off, args, workdir)
        self.losses: list[float] = []
        self.diffusion.register_forward_hook(lambda _m, _i, out: self.losses.append(float(out[0])))
        feed = iter(batches)

        def task_loader():
            for b in feed:
                yield {"gt": b["gt"], "adap": b["lq"], "A_paths": [f"task{int(t)}" for t in b["task"]]}

        empty = {"gt": torch.empty(0, 3, args.crop, args.crop), "adap": torch.empty(0, 3, args.crop, args.crop),
                 "A_paths": []}
        self.trainer.dl_fog = task_loader()
        for name in ("dl_light", "dl_rain", "dl_snow", "dl_blur"):
            setattr(self.trainer, name, iter(lambda: empty, None))

    def run(self, steps: int) -> None:
        self.trainer.train_num_steps = self.trainer.step + steps
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            self.trainer.train()  # its own loop: forward/p_losses, backward, clip 1.0, Adam, EMA update

    @torch.no_grad()
    def restore(self, lq: torch.Tensor, seed: int, ema: bool) -> torch.Tensor:
        """The released sampler (``ResidualDiffusion.sample``, 3 steps) on images in [0, 1]."""
        model = self.trainer.ema.ema_model if ema else self.diffusion
        model = copy.deepcopy(model)
        model.init()  # as its Trainer.test does before sampling
        model.eval()
        torch.manual_seed(seed)  # its start noise is torch.randn(shape) from the global generator
        with contextlib.redirect_stderr(io.StringIO()):
            return model.sample(lq, batch_size=lq.shape[0], last=True)[-1]


# ------------------------------------------------------------------------------------------- the suite
def compose_suite(args, workdir: Path):
    """DiffUIRModule and the Lightning trainer settings from the suite's own configs."""
    from hydra import compose, initialize_config_dir

    overrides = ["experiment=diffuir_t", "trainer=cpu", f"model.optimizer.lr={args.lr}", f"seed={args.seed}",
                 f"paths.output_dir={workdir / 'suite'}", "trainer.accumulate_grad_batches=1",
                 f"data.tasks=[{','.join(args.tasks)}]"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


class SuiteRunner:
    """The suite's module and a Lightning Trainer; the official chunks run from inside its fit (a callback)."""

    def __init__(self, args, workdir: Path):
        from hydra.utils import instantiate

        self.cfg = compose_suite(args, workdir)
        self.module = instantiate(self.cfg.model)
        self.args = args
        self.losses: list[float] = []

    def fit(self, batches: list[dict], schedule_cb: L.Callback | None) -> None:
        from hydra.utils import instantiate

        callbacks = [_LossRecorder(self.losses)] + ([schedule_cb] if schedule_cb else [])
        trainer = instantiate(self.cfg.trainer, max_steps=len(batches), logger=False, callbacks=callbacks,
                              enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
                              limit_val_batches=0)
        # a private generator: creating the loader's iterator must not draw from the global RNG (the losses' t, ε)
        loader = torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False,
                                             generator=torch.Generator().manual_seed(0))
        trainer.fit(self.module, train_dataloaders=loader)

    @torch.no_grad()
    def restore(self, lq: torch.Tensor, seed: int, ema: bool) -> torch.Tensor:
        net = self.module.eval_net if ema else self.module.net
        was_training = net.training
        net.eval()
        torch.manual_seed(seed)
        noise = torch.randn(lq.shape)  # the same draw as the official sampler's start noise
        out = (self.module.diffusion.sample(net, lq * 2 - 1, noise=noise) + 1) / 2
        net.train(was_training)
        return out


class _LossRecorder(L.Callback):
    def __init__(self, losses: list[float]):
        self.losses = losses

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


class Alternation(L.Callback):
    """Runs the official chunks between the suite's, in the order O S | S O | O S …, and times every chunk."""

    def __init__(self, official: OfficialRunner | None, chunk: int, n_chunks: int, rng_seed: int):
        self.official, self.chunk = official, chunk
        self.schedule = []
        for i in range(n_chunks):
            pair = [("official", i), ("suite", i)] if i % 2 == 0 else [("suite", i), ("official", i)]
            self.schedule += pair if official else [("suite", i)]
        self.pos = 0
        self.rows: list[dict] = []
        torch.manual_seed(rng_seed)
        self.rng = {side: torch.get_rng_state() for side in SIDES}  # the same t/ε stream for both sides
        self._t0 = 0.0

    def _record(self, side: str, index: int, seconds: float, first: bool) -> None:
        self.rows.append({"chunk": index, "side": side, "first_in_pair": first, "seconds": round(seconds, 4),
                          "samples_per_s": round(self.chunk * self._batch / seconds, 3),
                          "load_1m": round(os.getloadavg()[0], 2)})
        r = self.rows[-1]
        print(f"chunk {index} {side}: {r['samples_per_s']} samples/s (load {r['load_1m']})", flush=True)

    def _run_official_until_suite(self) -> None:
        while self.pos < len(self.schedule) and self.schedule[self.pos][0] == "official":
            index = self.schedule[self.pos][1]
            suite_state = torch.get_rng_state()
            torch.set_rng_state(self.rng["official"])
            t0 = time.perf_counter()
            self.official.run(self.chunk)
            seconds = time.perf_counter() - t0
            self.rng["official"] = torch.get_rng_state()
            torch.set_rng_state(suite_state)
            self._record("official", index, seconds, first=self._first(index, "official"))
            self.pos += 1

    def _first(self, index: int, side: str) -> bool:
        return (index % 2 == 0) == (side == "official")

    def on_train_start(self, trainer, pl_module):
        torch.set_rng_state(self.rng["suite"])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._batch = batch["gt"].shape[0]
        if batch_idx % self.chunk == 0:
            if self.official:
                self._run_official_until_suite()
            self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if (batch_idx + 1) % self.chunk == 0:
            seconds = time.perf_counter() - self._t0
            index = self.schedule[self.pos][1]
            self._record("suite", index, seconds, first=self._first(index, "suite"))
            self.pos += 1

    def on_train_end(self, trainer, pl_module):
        if self.official:
            self._run_official_until_suite()


# ------------------------------------------------------------------------------------------- data, evaluation
def make_batches(tasks: list[str], crop: int, batch: int, steps: int, seed: int) -> list[dict]:
    """One fixed, seeded list of training batches (built-in crops, flips and degradations), fed to both sides."""
    torch.manual_seed(seed)
    ds = BuiltinTrainDataset(tasks=tasks, patch_size=crop, length=steps * batch)
    out = []
    for s in range(steps):
        items = [ds[s * batch + i] for i in range(batch)]
        out.append({"gt": torch.stack([it["gt"] for it in items]), "lq": torch.stack([it["lq"] for it in items]),
                    "task": torch.tensor([it["task"] for it in items])})
    return out


def evaluate(restore, tasks: list[str], size: int, seed: int, ema: bool) -> dict:
    """Mean PSNR/SSIM-Y over the held-out built-in images (centre crops), per task and overall."""
    ds = BuiltinEvalDataset(tasks=tasks, size=size, seed=0)
    rows = {}
    for i in range(len(ds)):
        item = ds[i]
        lq, gt = item["lq"][None], item["gt"][None]
        out = restore(lq, seed + i, ema)
        p, s = batch_psnr_ssim(out.clamp(0, 1), gt)
        p_in, s_in = batch_psnr_ssim(lq, gt)
        rows[item["name"]] = {"psnr": p[0], "ssim": s[0], "psnr_in": p_in[0], "ssim_in": s_in[0]}
    mean = {k: statistics.fmean(r[k] for r in rows.values()) for k in ("psnr", "ssim", "psnr_in", "ssim_in")}
    return {"mean": mean, "images": rows}


# ------------------------------------------------------------------------------------------- EMA check
def ema_check(off: ModuleType | None, updates: int = 320, seed: int = 0) -> dict:
    """Apply one sequence of random weight updates to a network; compare ema_pytorch's and the suite's averages."""
    from ema_pytorch import EMA as OfficialEMA

    from src.utils.ema import EMA as SuiteEMA

    torch.manual_seed(seed)
    net = off.Unet(32, dim_mults=(1, 1, 1, 1), condition=True) if off else None
    if net is None:
        raise ValueError("ema_check needs the official module")
    ref = OfficialEMA(net, beta=0.995, update_every=10)  # the official Trainer's arguments
    ours = SuiteEMA(net, decay=0.995, update_every=10, update_after_step=100)
    with torch.no_grad():
        for _ in range(updates):
            for p in net.parameters():
                p.add_(torch.randn_like(p) * 0.01)
            ref.update()
            ours.update(net)
    a, b = ref.ema_model.state_dict(), ours.averaged.state_dict()
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    moved = max((a[k] - net.state_dict()[k]).abs().max().item() for k in a)
    return {"updates": updates, "max_abs_diff": diff, "max_abs_ema_minus_live": moved}


# ------------------------------------------------------------------------------------------- reporting
def summarise_speed(rows: list[dict]) -> dict:
    out = {}
    for side in SIDES:
        sps = [r["samples_per_s"] for r in rows if r["side"] == side]
        if sps:
            out[side] = {"median": statistics.median(sps), "min": min(sps), "max": max(sps), "chunks": len(sps)}
    if len(out) == 2:
        pairs = {}
        for r in rows:
            pairs.setdefault(r["chunk"], {})[r["side"]] = r["samples_per_s"]
        ratios = [p["suite"] / p["official"] for p in pairs.values() if len(p) == 2]
        out["ratio_suite_over_official"] = {"median": statistics.median(ratios), "min": min(ratios),
                                            "max": max(ratios), "of_medians": out["suite"]["median"]
                                            / out["official"]["median"]}
    return out


def write_losses(path: Path, losses: dict[str, list[float]]) -> None:
    n = max(len(v) for v in losses.values())
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", *losses])
        for i in range(n):
            w.writerow([i + 1, *(f"{v[i]:.6f}" if i < len(v) else "" for v in losses.values())])


def plot_losses(path: Path, losses: dict[str, list[float]], title: str, window: int = 20) -> bool:
    """Loss curves (per step and running mean; the official one dashed on top) and, below, suite − official."""
    plt = pyplot_or_none("auto")
    if plt is None:
        return False
    fig, (ax, ax_diff) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True, height_ratios=(3, 1.3))
    styles = {"suite": ("tab:blue", "-", 2.5), "official": ("tab:orange", "--", 1.5)}
    for side in ("suite", "official"):
        if side not in losses:
            continue
        values, (color, ls, lw) = losses[side], styles[side]
        ax.plot(range(1, len(values) + 1), values, color=color, alpha=0.25, lw=0.8, label=f"{side} (per step)")
        if len(values) >= window:
            smooth = [statistics.fmean(values[i - window:i]) for i in range(window, len(values) + 1)]
            ax.plot(range(window, len(values) + 1), smooth, color=color, ls=ls, lw=lw,
                    label=f"{side} ({window}-step mean)")
    ax.set_ylabel("L1 residual loss")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    if len(losses) == 2:
        diff = [s - o for s, o in zip(losses["suite"], losses["official"])]
        ax_diff.plot(range(1, len(diff) + 1), diff, color="tab:gray", lw=0.8)
        ax_diff.axhline(0, color="black", lw=0.5)
        ax_diff.set_ylabel("suite − official", fontsize=8)
    ax_diff.set_xlabel("optimiser step")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def read_losses(path: Path) -> dict[str, list[float]]:
    """The per-step losses of a ``*_loss.csv`` written by :func:`write_losses`."""
    with path.open() as f:
        rows = list(csv.DictReader(f))
    sides = [k for k in rows[0] if k != "step"]
    return {s: [float(r[s]) for r in rows if r[s]] for s in sides}


def markdown(summary: dict) -> str:
    a, ev, sp = summary["settings"], summary["eval"], summary["speed"]
    lines = [f"## {a['tag']}: tasks {', '.join(a['tasks'])}; batch {a['batch']}, crop {a['crop']}², lr {a['lr']}, "
             f"{a['steps']} steps, chunks of {a['chunk']}, seed {a['seed']}",
             "", f"Machine: {summary['machine']['cpu']}, {summary['machine']['cores']} cores, torch "
             f"{summary['machine']['torch']}, {a['threads']} thread(s) per side (alternating), load (1 min) "
             f"{summary['machine']['load_start']} at start, {summary['machine']['load_end']} at end; "
             f"wall {summary['wall_s']:.0f} s.", "",
             ]
    sides = [s for s in SIDES if s in ev]
    pad = " |" * (4 - len(sides))  # closes the row; a suite-only run leaves the other columns empty
    header = "| | official | suite | suite − official |" if len(sides) == 2 else "| | suite | | |"
    lines += [header, "|---|---:|---:|---:|"]
    for weights in ("raw", "ema"):
        for metric, fmt in (("psnr", "{:.2f}"), ("ssim", "{:.4f}")):
            vals = [ev[s][weights]["mean"][metric] for s in sides]
            diff = fmt.format(vals[1] - vals[0]) if len(vals) == 2 else ""
            lines.append(f"| {metric.upper()}-Y, {weights} weights | " + " | ".join(fmt.format(v) for v in vals)
                         + (f" | {diff} |" if diff else pad))
    first = ev[sides[0]]["raw"]["mean"]
    lines.append(f"| (input: PSNR-Y {first['psnr_in']:.2f}, SSIM-Y {first['ssim_in']:.4f}) | | | |")
    losses = summary["loss"]
    lines.append("| loss at step 1 | " + " | ".join(f"{losses[s]['first']:.6f}" for s in sides) + pad)
    lines.append(f"| mean loss, last {losses['window']} steps | "
                 + " | ".join(f"{losses[s]['last_mean']:.5f}" for s in sides) + pad)
    lines.append("| samples/s, median (min–max) over chunks | " + " | ".join(
        f"{sp[s]['median']:.2f} ({sp[s]['min']:.2f}–{sp[s]['max']:.2f})" for s in sides) + pad)
    if "ratio_suite_over_official" in sp:
        r = sp["ratio_suite_over_official"]
        lines.append(f"| samples/s ratio suite/official, per chunk pair: median (min–max) | | "
                     f"{r['median']:.3f} ({r['min']:.3f}–{r['max']:.3f}) | |")
    if summary.get("ema_check"):
        e = summary["ema_check"]
        lines.append(f"\nEMA check: ema_pytorch vs src.utils.ema after {e['updates']} identical updates: max abs "
                     f"difference {e['max_abs_diff']:.2e} (EMA vs live weights: {e['max_abs_ema_minus_live']:.2e}).")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=HOW_TO_GET)
    p.add_argument("--official", type=Path, help="a checkout of " + OFFICIAL_REPO)
    p.add_argument("--suite-only", action="store_true",
                   help="train the suite side alone (with --official: from the official initial weights, as a control)")
    p.add_argument("--perturb", type=float, default=0.0,
                   help="scale the suite's initial weights by (1 + PERTURB·N(0, 1)): a rounding-sized control run")
    p.add_argument("--tasks", nargs="+", default=["noise"])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--chunk", type=int, default=50)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--seed", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval-size", type=int, default=128)
    p.add_argument("--ema-check", action="store_true")
    p.add_argument("--out", type=Path, default=ROOT / "experiments" / "parity")
    p.add_argument("--tag", default=None, help="file prefix (default: the task names)")
    args = p.parse_args(argv)
    if args.steps < 1 or args.chunk < 1 or args.steps % args.chunk:
        p.error(f"--steps ({args.steps}) must be a positive multiple of --chunk ({args.chunk})")
    args.tag = args.tag or "_".join(args.tasks)
    return args


def main(argv=None) -> dict | None:
    args = parse_args(argv)
    if not args.suite_only and (args.official is None or not (args.official / "src" / "model.py").is_file()):
        where = f"no official checkout at {args.official}" if args.official else "--official not given"
        print(f"official_parity: skipped ({where}).\n{HOW_TO_GET}")
        return None
    torch.set_num_threads(args.threads)
    started, load_start = time.perf_counter(), os.getloadavg()[0]
    has_checkout = args.official is not None and (args.official / "src" / "model.py").is_file()
    off = load_official(args.official.resolve()) if has_checkout else None
    batches = make_batches(args.tasks, args.crop, args.batch, args.steps, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        suite = SuiteRunner(args, workdir)
        official = None
        if off is not None:
            torch.manual_seed(args.seed)
            official = OfficialRunner(off, args, workdir, batches)
            # identical initial weights: the official network's, renamed for the suite's
            suite.module.net.load_state_dict(convert_state_dict(official.unet.unet0.state_dict()), strict=True)
        if args.perturb:
            gen = torch.Generator().manual_seed(args.seed)
            with torch.no_grad():
                for p in suite.module.net.parameters():
                    p.mul_(1 + args.perturb * torch.randn(p.shape, generator=gen))
        suite.module.ema.averaged.load_state_dict(suite.module.net.state_dict())
        if args.suite_only:
            official = None  # built for its initial weights only
        alternation = Alternation(official, args.chunk, args.steps // args.chunk, args.seed)
        suite.fit(batches, alternation)
        runners = {"suite": suite} | ({"official": official} if official else {})
        ev = {side: {w: evaluate(r.restore, args.tasks, args.eval_size, seed=1234, ema=(w == "ema"))
                     for w in ("raw", "ema")} for side, r in runners.items()}
        losses = {side: r.losses for side, r in (("official", official), ("suite", suite)) if r}
    window = min(50, args.steps)
    summary = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
                    "load_start": round(load_start, 2), "load_end": round(os.getloadavg()[0], 2)},
        "wall_s": time.perf_counter() - started,
        "speed": summarise_speed(alternation.rows),
        "eval": ev,
        "loss": {"window": window, **{s: {"first": v[0], "last_mean": statistics.fmean(v[-window:]),
                                          "steps": len(v)} for s, v in losses.items()}},
        "ema_check": ema_check(off) if (args.ema_check and off) else None,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_losses(args.out / f"{args.tag}_loss.csv", losses)
    plot_losses(args.out / f"{args.tag}_loss.png", losses, f"DiffUIR-T, {args.tag}: batch {args.batch}, "
                f"crop {args.crop}², lr {args.lr}, same data, weights, t and ε")
    write_rows(args.out / f"{args.tag}_chunks.csv", alternation.rows)
    (args.out / f"{args.tag}_summary.json").write_text(json.dumps(summary, indent=1))
    (args.out / f"{args.tag}.md").write_text(markdown(summary))
    print(markdown(summary))
    return summary


if __name__ == "__main__":
    main()
