"""Paper-scale dress rehearsal (issue 19): every paper experiment at full size on CPU, on fake data and weights.

    make rehearse                                          # -> experiments/rehearsal.md (+ rehearsal.json)
    python -m benchmarks.rehearse --experiments diffuir_l,diff_restorer_stage1 --threads 2
    python -m benchmarks.rehearse --tiny --work /tmp/r     # the same driver on tiny sizes (what the tests run)

For each of ``diffuir_{t,s,b,l}``, ``diff_restorer_stage1`` and ``diff_restorer_stage2`` it runs ``python -m
src.train experiment=<name>`` with the paper's config, changed only where a CPU rehearsal must (listed in
:func:`overrides` and in the report): the data root (fake trees in each dataset's published layout at its real image
size, :mod:`src.data.fake_trees`, manifests built by the suite's builders), the weights folder (randomly initialised
full-size SD-1.5 U-Net / VAE written as a diffusers folder *and* as one original-layout
``v1-5-pruned-emaonly.safetensors``-style file, an open_clip ViT-L/14 file, a torchvision VGG-19 file), the trainer
(CPU), and the length: 2 optimiser steps with gradient accumulation 2, one validation batch, a checkpoint, then a
second process that resumes from it, trains one more step and restores one test image through the whole pipeline.
The DiffUIR sizes run once more under ``trainer=ddp_cpu`` (2 processes).

Each process records (``RehearsalProbe``, a Lightning callback added on the command line) its peak resident memory,
its seconds per optimiser step and its trainable / frozen parameter counts; the driver adds checkpoint sizes and
writes the table. Timings are those of the machine named in the report (2 shared cores here: a GPU is 100× faster).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import lightning as L

ROOT = Path(__file__).resolve().parents[1]
OUT_MD = ROOT / "experiments" / "rehearsal.md"
DIFFUIR = ["diffuir_t", "diffuir_s", "diffuir_b", "diffuir_l"]
DR = ["diff_restorer_stage1", "diff_restorer_stage2"]
EXPERIMENTS = DIFFUIR + DR
PAPER_TRAINABLE = {"diff_restorer_stage1": 373_000_000}  # Diff-Restorer §IV-A / Table I: 373M trainable


# ----------------------------------------------------------------------------------------- per-process probe
def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class RehearsalProbe(L.Callback):
    """Writes ``probe_<stage>_rank<r>.json`` into ``out_dir``: peak RSS, optimiser-step times, parameter counts."""

    def __init__(self, out_dir: str):
        self.out_dir = Path(out_dir)
        self.marks: list[tuple[int, float]] = []
        self.start, self.rss_after_train = None, None

    def on_train_start(self, trainer, pl_module):
        self.start, self.marks, self.last = time.perf_counter(), [], trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step != self.last:
            self.last = trainer.global_step
            self.marks.append((trainer.global_step, time.perf_counter()))

    def on_train_end(self, trainer, pl_module):
        self.rss_after_train = peak_rss_bytes()

    def teardown(self, trainer, pl_module, stage):
        stage = getattr(stage, "value", stage)  # "fit" / "validate" / "test"
        trainable = sum(p.numel() for p in pl_module.parameters() if p.requires_grad)
        total = sum(p.numel() for p in pl_module.parameters())
        times, prev = [], self.start
        for step, t in self.marks:
            times.append({"global_step": step, "seconds": round(t - prev, 3)})
            prev = t
        record = {"stage": stage, "rank": trainer.global_rank, "world_size": trainer.world_size, "pid": os.getpid(),
                  "peak_rss_bytes": peak_rss_bytes(), "peak_rss_after_train_bytes": self.rss_after_train,
                  "step_times": times, "global_step": trainer.global_step,
                  "params_trainable": trainable, "params_frozen": total - trainable}
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"probe_{stage}_rank{trainer.global_rank}.json").write_text(json.dumps(record, indent=1))


def activation_bytes_per_sample(exp: str, threads: int) -> dict:
    """What one training sample of a DiffUIR size keeps for its backward pass at the paper's crop: the bytes of
    the distinct tensors autograd saves during one loss forward of batch 1 (``saved_tensors_hooks``), measured,
    not estimated. A process at per-process batch ``b`` then needs about (its peak at batch 1) + (b − 1) × this."""
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    torch.set_num_threads(threads)
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={exp}", "data=diffuir_tasks"])
    GlobalHydra.instance().clear()
    model = instantiate(cfg.model)
    side, batch = int(cfg.data.patch_size), int(cfg.data.batch_size)
    seen: dict[tuple, int] = {}

    def pack(t):
        if isinstance(t, torch.Tensor) and t.device.type == "cpu":
            st = t.untyped_storage()
            seen[(st.data_ptr(), st.nbytes())] = st.nbytes()
        return t

    x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model.diffusion.loss(model.net, x, x.flip(-1))
    del loss
    return {"crop": side, "paper_batch_per_process": batch, "saved_bytes": sum(seen.values())}


# ------------------------------------------------------------------------------------------ fake data, weights
def hydra_value(obj) -> str:
    """``obj`` in Hydra's override grammar (dicts with identifier keys, lists, strings, numbers, null)."""
    if isinstance(obj, dict):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, (list, tuple)):
        return "[" + ",".join(hydra_value(v) for v in obj) + "]"
    if obj is None:
        return "null"
    if isinstance(obj, bool):
        return "true" if obj else "false"
    if isinstance(obj, str):
        return "'" + obj.replace("'", "\\'") + "'"
    return str(obj)


def build_data(work: Path, tiny: bool) -> tuple[Path, Path]:
    """Fake published-layout trees (real image sizes unless tiny) and their manifests, built once per work dir."""
    from src.data.fake_trees import REAL_SIZES, build_fake_data, noise_image, photo_like

    base = work / ("data_tiny" if tiny else "data")
    done = base / "DONE"
    if not done.is_file():
        shutil.rmtree(base, ignore_errors=True)
        started = time.perf_counter()
        build_fake_data(base, sizes=None if tiny else REAL_SIZES, content=noise_image if tiny else photo_like,
                        train_images=2, test_images=2, jobs=2)
        done.write_text(f"{time.perf_counter() - started:.1f} s\n")
    return base / "data", base / "manifests"


def write_weights(work: Path, tiny: bool) -> dict:
    """Random SD-1.5-shaped U-Net / VAE as a diffusers folder and as one original-layout file, an open_clip
    ViT-L/14 file and a VGG-19 file (as users download them); checks that both SD layouts load to the same
    tensors. Tiny: the same files for tiny models (their configs beside them)."""
    import open_clip
    import torch
    import torchvision

    from src.diff_restorer import sd_loading as sd
    from src.diff_restorer.clip_encoder import TINY_CLIP_CONFIG

    wd = work / ("weights_tiny" if tiny else "weights")
    info_file = wd / "weights.json"
    if info_file.is_file():
        return json.loads(info_file.read_text())
    shutil.rmtree(wd, ignore_errors=True)
    started = time.perf_counter()
    folder, single = wd / "stable-diffusion-v1-5", wd / "v1-5-pruned-emaonly.safetensors"
    unet = sd.tiny_unet(seed=1) if tiny else sd.sd15_shaped_unet(seed=1)
    vae = sd.tiny_vae(seed=2) if tiny else sd.sd15_shaped_vae(seed=2)
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    (folder / "scheduler").mkdir(parents=True, exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(
        {"_class_name": "PNDMScheduler", **sd.SD15_NOISE_SCHEDULE}))
    sd.save_single_file(single, unet, vae)
    del unet, vae
    # the two layouts must give the same networks
    same = {}
    from safetensors import safe_open

    for name, load in (("unet", sd.load_unet), ("vae", sd.load_vae)):
        load(folder)  # the folder loads (diffusers' from_pretrained); its file is compared tensor by tensor below
        b = load(single, config=folder / name / "config.json").state_dict()  # one network in memory at a time
        with safe_open(str(folder / name / "diffusion_pytorch_model.safetensors"), framework="pt") as f:
            keys = set(f.keys())
            identical = keys == set(b) and all(torch.equal(f.get_tensor(k), b[k]) for k in keys)
        same[name] = {"tensors": len(b), "params": sum(v.numel() for v in b.values()), "identical": identical}
        del b
    clip_file = wd / "clip" / "ViT-L-14-openai" / "open_clip_pytorch_model.bin"
    clip_file.parent.mkdir(parents=True, exist_ok=True)
    clip = (sd.seeded(3, lambda: open_clip.CLIP(**{k: v for k, v in TINY_CLIP_CONFIG.items()})) if tiny
            else sd.seeded(3, lambda: open_clip.create_model("ViT-L-14-quickgelu")))
    torch.save(clip.state_dict(), clip_file)
    clip_params = sum(p.numel() for p in clip.visual.parameters())
    del clip
    vgg_file = None
    if not tiny:
        vgg_file = wd / "vgg" / "vgg19-dcbaabe7.pth"
        vgg_file.parent.mkdir(parents=True, exist_ok=True)
        torch.save(sd.seeded(4, torchvision.models.vgg19).state_dict(), vgg_file)
    info = {"dir": str(wd), "sd_folder": str(folder), "sd_single_file": str(single), "clip": str(clip_file),
            "vgg": str(vgg_file) if vgg_file else None, "layouts_identical": same, "clip_image_params": clip_params,
            "sizes_bytes": {p.name: p.stat().st_size for p in (single, clip_file)},
            "seconds": round(time.perf_counter() - started, 1)}
    info_file.write_text(json.dumps(info, indent=1))
    return info


# ------------------------------------------------------------------------------------------------ the runs
def overrides(exp: str, data: Path, manifests: Path, weights: dict | None, tiny: bool, ddp: bool,
              threads: int, batch: int | None = 1) -> list[str]:
    """What the rehearsal changes in the paper's config (everything else is the experiment file's)."""
    o = [f"experiment={exp}", f"paths.data_dir={data}", f"data.manifest_dir={manifests}", "data.pin_memory=false",
         "trainer=ddp_cpu" if ddp else "trainer=cpu", "trainer.max_steps=2", "trainer.accumulate_grad_batches=2",
         "trainer.val_check_interval=4", "++trainer.limit_val_batches=1", "++trainer.limit_test_batches=1",
         "++trainer.num_sanity_val_steps=0", "trainer.log_every_n_steps=1", "logger=csv",
         "~callbacks.progress_bar", "++trainer.enable_progress_bar=false", "++trainer.enable_model_summary=false",
         "callbacks.model_checkpoint.every_n_train_steps=2", "data.num_workers=2", f"num_threads={threads}"]
    if exp in DIFFUIR:  # the experiment files default to the built-in photos; the paper's data is diffuir_tasks
        o.insert(1, "data=diffuir_tasks")
        o += ["data.val_sets=[lol]", "~data.testsets", "+data.testsets={lol:lol_test.csv}"]
        if batch:  # per process: the paper's 10 at 256² is 10× the CPU time (its memory: activation_bytes_per_sample)
            o += [f"data.batch_size={batch}"]
        if tiny:
            o += ["model.net.dim=8", "data.patch_size=32"]
    else:
        sd = weights["sd_single_file"] if exp == DR[0] else weights["sd_folder"]
        o += [f"paths.weights_dir={weights['dir']}", "data.val_sets=[lol]", "~data.testsets",
              "+data.testsets={lol:lol_test.csv}", "data.eval_size=512", "data.batch_size=1"]
        if exp == DR[0]:  # no accumulation (the DiffUIR runs check it): each 512² sample is minutes on 2 cores
            o += [f"model.unet.sd_dir={sd}", f"model.vae.sd_dir={sd}", "trainer.accumulate_grad_batches=1",
                  "trainer.val_check_interval=2"]
        else:
            o += [f"model.vae.sd_dir={sd}", "trainer.max_steps=4", "trainer.val_check_interval=2",
                  "trainer.accumulate_grad_batches=1", "callbacks.model_checkpoint.every_n_train_steps=4"]
        if tiny:
            from src.diff_restorer.clip_encoder import TINY_CLIP_CONFIG

            o += [f"+model.clip.model_cfg={hydra_value(TINY_CLIP_CONFIG)}", "data.patch_size=32", "data.eval_size=32",
                  "model.sampling_steps=2"]
            if exp == DR[0]:
                o += ["model.prompt_processor.degradation_dim=16",
                      f"+model.unet.config={Path(weights['sd_folder']) / 'unet' / 'config.json'}",
                      f"+model.vae.config={Path(weights['sd_folder']) / 'vae' / 'config.json'}"]
            else:
                o += ["model.perceptual.weights=null", "model.degradation_dim=16"]
    return o


def run_phase(name: str, args: list[str], out: Path, threads: int, timeout: float) -> dict:
    """One ``python -m src.train`` process (and its DDP children); its probes, exit status and wall time."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "src.train", *args, f"paths.output_dir={out}", f"hydra.run.dir={out}",
           "+callbacks.rehearsal_probe._target_=benchmarks.rehearse.RehearsalProbe",
           f"+callbacks.rehearsal_probe.out_dir={out / 'probes'}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1",
           "PYTHONUNBUFFERED": "1"}
    print(f"[rehearse] {name}: {' '.join(cmd[3:])}", flush=True)
    started = time.perf_counter()
    with open(out / "stdout.log", "w") as log:
        try:
            rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    wall = time.perf_counter() - started
    probes = [json.loads(p.read_text()) for p in sorted((out / "probes").glob("probe_*.json"))]
    tail = (out / "stdout.log").read_text(errors="replace").strip().splitlines()[-15:]
    result = {"name": name, "rc": rc, "wall_s": round(wall, 1), "probes": probes, "cmd": cmd[3:]}
    if rc != 0:
        result["log_tail"] = tail
    print(f"[rehearse] {name}: exit {rc} in {wall:.0f} s", flush=True)
    return result


def rehearse(exp: str, data: Path, manifests: Path, weights: dict | None, work: Path, tiny: bool, ddp: bool,
             threads: int, timeout: float, stage1_ckpt: Path | None = None, batch: int | None = 1) -> dict:
    """Train 2 steps (+ validation, checkpoint), then resume in a new process: 1 step more, one test image."""
    tag = f"{exp}{'_ddp' if ddp else ''}"
    base = work / "runs" / tag
    shutil.rmtree(base, ignore_errors=True)
    o = overrides(exp, data, manifests, weights, tiny, ddp, max(1, threads // 2) if ddp else threads, batch)
    if exp == DR[1]:
        o.append(f"model.stage1_ckpt={stage1_ckpt}")
    first = run_phase(f"{tag} train", [*o, "test=false"], base / "train", threads, timeout)
    ckpt = base / "train" / "checkpoints" / "last.ckpt"
    res = {"experiment": exp, "ddp": ddp, "train": first, "overrides": o}
    if ckpt.is_file():
        res["ckpt_bytes"] = ckpt.stat().st_size
        res["ckpt"] = str(ckpt)
        more = "trainer.max_steps=6" if exp == DR[1] else "trainer.max_steps=3"
        res["resume"] = run_phase(f"{tag} resume+test", [*o, f"ckpt_path={ckpt}", more,
                                                          "++trainer.limit_val_batches=0"],
                                  base / "resume", threads, timeout)
        tables = sorted((base / "resume").glob("**/test_metrics.csv"))
        res["test_table"] = str(tables[0]) if tables else None
    return res


# ------------------------------------------------------------------------------------------------- report
def _gb(b) -> str:
    return f"{b / 2**30:.2f}" if b else "–"


def summarise(r: dict) -> dict:
    """One row of the table from a rehearsal's probes."""
    fit = [p for p in r["train"]["probes"] if p["stage"] == "fit"]
    res = r.get("resume") or {}
    later = res.get("probes", [])
    steps = [t["seconds"] for p in fit if p["rank"] == 0 for t in p["step_times"]]
    resumed_steps = [p["global_step"] for p in later if p["stage"] == "fit" and p["rank"] == 0]
    p0 = fit[0] if fit else {}
    return {
        "experiment": r["experiment"] + (" (ddp_cpu ×2)" if r["ddp"] else ""),
        "ok": r["train"]["rc"] == 0 and res.get("rc") == 0 and bool(r.get("test_table")),
        "train_rc": r["train"]["rc"], "resume_rc": res.get("rc"),
        "trainable": p0.get("params_trainable"), "frozen": p0.get("params_frozen"),
        "rss_train": [p["peak_rss_after_train_bytes"] or p["peak_rss_bytes"] for p in fit],
        "rss_all": [max([p["peak_rss_bytes"] for p in r["train"]["probes"] + later if p["rank"] == k] or [0])
                    for k in sorted({p["rank"] for p in fit})],
        "step_s": steps, "ckpt_bytes": r.get("ckpt_bytes"), "resumed_to": resumed_steps[0] if resumed_steps else None,
        "wall_s": r["train"]["wall_s"] + res.get("wall_s", 0),
    }


def write_report(results: list[dict], weights: dict | None, args, path: Path, machine: str, wall: float) -> None:
    rows = [summarise(r) for r in results]
    lines = [
        "# Paper-scale rehearsal (issue 19)", "",
        f"`{' '.join(['python -m benchmarks.rehearse', *args.argv])}` "
        f"on {dt.date.today().isoformat()}, {machine}; {wall / 60:.1f} min in all. "
        + ("**Tiny sizes** (driver check, not the paper's sizes)." if args.tiny else
           "Full-size models, paper configs, fake data at real image sizes, random weights."), "",
        "Each experiment: the paper's config with the changes listed below; process 1 trains 2 optimiser steps "
        "(gradient accumulation 2), validates one batch and saves a checkpoint; process 2 resumes from it, trains "
        "one step more and restores one test image through the whole pipeline.", "",
        "| experiment | ok | trainable / frozen params | peak RSS per process, training (GB) | peak RSS incl. "
        "test (GB) | s per optimiser step (1st, 2nd) | checkpoint (GB) | resumed at step | wall (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r, res in zip(rows, results):
        if res.get("from_run"):
            r["experiment"] += " ¹"
        tr = f"{r['trainable'] / 1e6:.2f}M / {r['frozen'] / 1e6:.2f}M" if r["trainable"] is not None else "–"
        ok = "yes" if r["ok"] else f"NO (exit {r['train_rc']}/{r['resume_rc']})"
        rss_train, rss_all = " / ".join(_gb(b) for b in r["rss_train"]), " / ".join(_gb(b) for b in r["rss_all"])
        lines.append(
            f"| {r['experiment']} | {ok} | {tr} | {rss_train or '–'} | {rss_all or '–'} "
            f"| {', '.join(f'{s:.1f}' for s in r['step_s']) or '–'} | {_gb(r['ckpt_bytes'])} | {r['resumed_to']} "
            f"| {r['wall_s']:.0f} |")
    merged = sorted({r["from_run"] for r in results if r.get("from_run")})
    if merged:
        lines += ["", "¹ from the earlier invocation " + "; ".join(merged) + " (`--merge`: experiments not rerun keep "
                  "their rows)."]
    acts = [(r, summarise(r)) for r in results if r.get("activations")]
    if acts:
        lines += ["", "### Memory at the paper's batch", "",
                  "Saved activations: the distinct tensors autograd keeps for the backward pass of one sample at the "
                  "paper's crop (measured with `saved_tensors_hooks`, `activation_bytes_per_sample`). Predicted peak: "
                  "the measured peak of the one-process run at batch b plus (paper batch − b) × saved activations: "
                  "what one process (one GPU in fp32) holds at the paper's per-process batch.", "",
                  "| experiment | crop | paper batch per process | saved activations per sample (GB) | measured peak "
                  f"at batch {args.batch or 'paper'} (GB) | predicted peak at the paper's batch (GB) |",
                  "|---|---:|---:|---:|---:|---:|"]
        for r, row in acts:
            a, b = r["activations"], args.batch or r["activations"]["paper_batch_per_process"]
            peak = max(row["rss_all"] or [0])
            pred = peak + (a["paper_batch_per_process"] - b) * a["saved_bytes"]
            lines.append(f"| {r['experiment']} | {a['crop']}² | {a['paper_batch_per_process']} | "
                         f"{_gb(a['saved_bytes'])} | {_gb(peak)} | {_gb(pred)} |")
    s1 = next((r for r in rows if r["experiment"] == DR[0]), None)
    if s1 and s1["trainable"]:
        paper = PAPER_TRAINABLE[DR[0]]
        lines += ["", f"Diff-Restorer stage 1 trains {s1['trainable'] / 1e6:.1f}M parameters; the paper reports "
                  f"{paper / 1e6:.0f}M ({100 * (s1['trainable'] / paper - 1):+.1f}%)."]
    if weights:
        same = weights["layouts_identical"]
        lines += ["", "SD-1.5 weights as users download them: the diffusers folder and the single original-layout "
                  f"file ({_gb(weights['sizes_bytes'].get('v1-5-pruned-emaonly.safetensors'))} GB) load to identical "
                  "networks: " + ", ".join(f"{k} {v['tensors']} tensors / {v['params'] / 1e6:.1f}M parameters "
                                            + ("identical" if v["identical"] else "DIFFERENT") for k, v in same.items())
                  + ". Stage 1 reads the single file, stage 2 the folder (the log says which)."]
    failed = [r for r in results for ph in ("train", "resume") if r.get(ph) and r[ph]["rc"] != 0]
    if failed:
        lines += ["", "## Failures", ""]
        for r in failed:
            for ph in ("train", "resume"):
                if r.get(ph) and r[ph]["rc"] != 0:
                    lines += [f"`{r['experiment']}{' ddp' if r['ddp'] else ''}` {ph}: exit {r[ph]['rc']}", "```",
                              *r[ph].get("log_tail", []), "```"]
    lines += ["", "## What the rehearsal changes in the paper configs", "",
              "Every run: `paths.data_dir`/`data.manifest_dir` (fake trees), `trainer=cpu` (or `ddp_cpu`, one "
              "thread per process), `trainer.max_steps` 2 (+1 on resume), `trainer.accumulate_grad_batches=2`, one "
              "validation batch on `lol`, one test set (`lol`, one image), `data.num_workers=2`, `logger=csv`, no "
              "progress bar.",
              f"DiffUIR: `data.batch_size={args.batch}` per process (`--batch`; the paper's 10 at 256² is 10× the CPU "
              "time: its memory is the predicted column above)." if args.batch else
              "DiffUIR: the paper's batch (`--batch 0`).",
              "Diff-Restorer: `paths.weights_dir` (fake weights), `data.batch_size=1` per process (8 in the paper's "
              "two-GPU config: 8 × 512² with the full SD-1.5 graph does not fit 24 GB of CPU RAM), "
              "`data.eval_size=512` (the test image is centre-cropped to 512²); stage 1: no accumulation (the DiffUIR "
              "runs check it; each 512² sample is about a minute here); stage 2: 2 batches (= 4 optimiser steps: "
              "decoder + discriminator), no accumulation (manual optimisation: the paper uses none).", "",
              "Exact overrides per run: `rehearsal.json` beside this file."]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    invocation = f"`{' '.join(['python -m benchmarks.rehearse', *args.argv])}` on {dt.date.today().isoformat()}"
    path.with_suffix(".json").write_text(json.dumps({"rows": rows, "results": results, "weights": weights,
                                                     "invocation": invocation}, indent=1, default=str))


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--experiments", default=",".join(EXPERIMENTS))
    p.add_argument("--no-ddp", action="store_true", help="skip the trainer=ddp_cpu runs of the DiffUIR sizes")
    p.add_argument("--tiny", action="store_true", help="tiny models and images (a check of the driver)")
    p.add_argument("--work", default=str(ROOT / "logs" / "rehearsal"), help="fake data, weights and runs")
    p.add_argument("--out", default=str(OUT_MD))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--timeout", type=float, default=1800, help="seconds per process")
    p.add_argument("--merge", action="store_true", help="keep the rows of experiments not run now from the earlier "
                   "report's rehearsal.json (each marked with the invocation it came from)")
    p.add_argument("--batch", type=int, default=1, help="DiffUIR per-process batch (0: the paper's 10; its memory "
                   "is predicted from the measured activations per sample either way)")
    args = p.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    from benchmarks.data_loading import machine

    started = time.perf_counter()
    work = Path(args.work).resolve()
    exps = [e for e in args.experiments.split(",") if e]
    unknown = sorted(set(exps) - set(EXPERIMENTS))
    if unknown:
        p.error(f"unknown experiments {unknown}; choose from {EXPERIMENTS}")
    data, manifests = build_data(work, args.tiny)
    weights = write_weights(work, args.tiny) if set(exps) & set(DR) else None
    results, stage1_ckpt = [], None
    earlier = Path(args.out).with_suffix(".json")
    if args.merge and earlier.is_file():
        before = json.loads(earlier.read_text())
        results = [{**r, "from_run": r.get("from_run") or before.get("invocation")} for r in before["results"]
                   if r["experiment"] not in exps]
    for exp in exps:
        if exp == DR[1] and stage1_ckpt is None:
            prior = work / "runs" / DR[0] / "train" / "checkpoints" / "last.ckpt"
            stage1_ckpt = prior if prior.is_file() else None
            if stage1_ckpt is None:
                print(f"[rehearse] {exp}: needs a stage-1 checkpoint: add {DR[0]} to --experiments", flush=True)
                continue
        r = rehearse(exp, data, manifests, weights, work, args.tiny, False, args.threads, args.timeout, stage1_ckpt,
                     args.batch or None)
        if exp in DIFFUIR and not args.tiny:  # in a child process: its memory goes back before the next run
            r["activations"] = json.loads(subprocess.run(
                [sys.executable, "-c", "import json, sys; from benchmarks.rehearse import activation_bytes_per_sample "
                 f"as a; print(json.dumps(a({exp!r}, {args.threads})))"], cwd=ROOT, check=True, capture_output=True,
                text=True).stdout.strip().splitlines()[-1])
        results.append(r)
        if exp == DR[0] and r.get("ckpt"):
            stage1_ckpt = Path(r["ckpt"])
        if exp in DIFFUIR and not args.no_ddp:
            results.append(rehearse(exp, data, manifests, weights, work, args.tiny, True, args.threads, args.timeout,
                                    batch=args.batch or None))
        write_report(results, weights, args, Path(args.out), machine(), time.perf_counter() - started)
    print(Path(args.out).read_text())
    return results


if __name__ == "__main__":
    main()
