"""Can CLIP tell degradations apart? The paper's preliminary experiment (Fig. 3, Eq. 1).

s_i = exp(cos(E_clip(I_LQ), E_clip(T_i))) / Σ_j exp(cos(E_clip(I_LQ), E_clip(T_j))) for degradation prompts T_i,
printed as a table and drawn as a bar chart::

    python -m src.diff_restorer.clip_probe --images a.png b.png --prompts "blurry photo" "hazy photo"
    python -m src.diff_restorer.clip_probe     # the built-in 'chelsea' photo blurred / darkened / hazed / snowed

Eq. 1 has no temperature (``--scale 1``, the default), which keeps the s_i close to uniform; CLIP's own logit
scale (``--scale 100``, as CLIP-IQA uses) sharpens them without changing their order. Meaningful output needs the
real CLIP weights (``--weights``, default ``$UIR_WEIGHTS/clip/ViT-L-14-openai/open_clip_pytorch_model.bin``);
``--model-cfg tiny.json`` builds a random open_clip model from a config file (pipeline tests only).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from src.diff_restorer.clip_encoder import DEFAULT_CLIP_MODEL, DEFAULT_CLIP_WEIGHTS, CLIPImageEncoder
from src.reporting.plots import pyplot_or_none

DEFAULT_PROMPTS = ("blurry photo", "low-light photo", "hazy photo", "snowy photo")  # Fig. 3
DEFAULT_TASKS = ("blur", "low_light", "haze", "snow")  # the degradations of Fig. 3 (a)-(d)


@torch.no_grad()
def similarities(encoder: CLIPImageEncoder, tokenizer, images: list[torch.Tensor], prompts: list[str],
                 scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(s, cos): Eq. 1's softmax over prompts (len(images)×len(prompts)) and the cosine similarities."""
    img = torch.cat([encoder.visual(encoder.preprocess(x if x.dim() == 4 else x[None])).float() for x in images])
    txt = encoder.encode_text(tokenizer(list(prompts)))
    cos = F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T
    return torch.softmax(scale * cos, dim=1), cos


def format_table(names: list[str], prompts: list[str], probs: torch.Tensor) -> str:
    lines = ["| image | " + " | ".join(prompts) + " |", "|---|" + "---:|" * len(prompts)]
    for name, row in zip(names, probs.tolist()):
        cells = [f"**{p:.3f}**" if p == max(row) else f"{p:.3f}" for p in row]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_bars(path: str | Path, names: list[str], prompts: list[str], probs: torch.Tensor,
              backend: str = "auto") -> Path:
    """One bar group per image (as Fig. 3): matplotlib if installed (``backend='auto'``), else PIL."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    p = probs.cpu().numpy()
    plt = pyplot_or_none(backend)
    if plt is not None:
        fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.2), squeeze=False)
        for ax, name, row in zip(axes[0], names, p):
            ax.bar(range(len(prompts)), row, color=[f"C{i}" for i in range(len(prompts))])
            ax.set_xticks(range(len(prompts)), prompts, rotation=35, ha="right", fontsize=8)
            ax.set_ylim(0, max(1e-6, float(p.max())) * 1.15)
            ax.set_title(name, fontsize=9)
        axes[0][0].set_ylabel("similarity s_i (Eq. 1)")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path
    return _plot_bars_pil(path, names, prompts, p)


def _plot_bars_pil(path: Path, names: list[str], prompts: list[str], p: np.ndarray) -> Path:
    from PIL import Image, ImageDraw

    label_w, bar_w, row_h, pad = 150, 300, 16, 8
    height = pad + len(names) * (row_h * (len(prompts) + 1) + pad)
    img = Image.new("RGB", (label_w + bar_w + 60, height), "white")
    draw = ImageDraw.Draw(img)
    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]
    top, peak = pad, max(1e-6, float(p.max()))
    for name, row in zip(names, p):
        draw.text((4, top), name, fill="black")
        top += row_h
        for i, (prompt, v) in enumerate(zip(prompts, row)):
            draw.text((12, top + 2), prompt[:24], fill="black")
            draw.rectangle([label_w, top + 2, label_w + int(bar_w * v / peak), top + row_h - 2],
                           fill=colours[i % len(colours)])
            draw.text((label_w + int(bar_w * v / peak) + 4, top + 2), f"{v:.3f}", fill="black")
            top += row_h
        top += pad
    img.save(path)
    return path


def load_image(path: str | Path) -> torch.Tensor:
    from PIL import Image

    arr = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())[None]


def builtin_examples(tasks=DEFAULT_TASKS, image: str = "chelsea", seed: int = 0) -> tuple[list[str], list]:
    """A built-in photo degraded by each of ``tasks`` (Fig. 3's four by default)."""
    from src.data.builtin import load_builtin_image, to_tensor
    from src.data.degradations import degrade

    gt = load_builtin_image(image)
    images = [to_tensor(degrade(gt, t, np.random.default_rng([seed, i])))[None] for i, t in enumerate(tasks)]
    return [f"{image}+{t}" for t in tasks], images


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", nargs="*", default=None, help="image files (default: built-in examples)")
    parser.add_argument("--tasks", nargs="*", default=list(DEFAULT_TASKS),
                        help="degradations applied to the built-in photo when no --images are given")
    parser.add_argument("--prompts", nargs="+", default=list(DEFAULT_PROMPTS))
    parser.add_argument("--model", default=DEFAULT_CLIP_MODEL, help="open_clip architecture name")
    parser.add_argument("--weights", default=str(Path(os.environ.get("UIR_WEIGHTS", "weights")) / DEFAULT_CLIP_WEIGHTS))
    parser.add_argument("--model-cfg", default=None, help="JSON open_clip config of a random model (tests only)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplier of the cosines in the softmax "
                        "(1 = Eq. 1; 100 = CLIP's logit scale)")
    parser.add_argument("--out", default="clip_probe.png", help="bar chart PNG")
    parser.add_argument("--backend", default="auto", choices=["auto", "matplotlib", "pil"])
    args = parser.parse_args(argv)

    if args.model_cfg:
        encoder = CLIPImageEncoder(model_cfg=json.loads(Path(args.model_cfg).read_text()), keep_text=True)
    else:
        encoder = CLIPImageEncoder(args.model, weights=args.weights, keep_text=True)
    if args.images:
        names, images = [Path(p).name for p in args.images], [load_image(p) for p in args.images]
    else:
        names, images = builtin_examples(args.tasks)
    probs, cos = similarities(encoder, encoder.tokenizer(), images, args.prompts, args.scale)
    table = format_table(names, args.prompts, probs)
    print(table)
    out = plot_bars(args.out, names, args.prompts, probs, args.backend)
    print(f"bar chart: {out}")
    return {"names": names, "prompts": list(args.prompts), "probs": probs, "cos": cos, "table": table, "png": out}


if __name__ == "__main__":
    main()
