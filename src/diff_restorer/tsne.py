"""Fig. 10: t-SNE of CLIP image embeddings P_CLIP vs learned degradation embeddings P_D, coloured by task.

    python -m src.diff_restorer.tsne --ckpt logs/.../checkpoints/last.ckpt --per-task 40 --out tsne.png

Degraded samples are drawn from the built-in photos (each of the eight tasks on random crops); both embeddings
come from the trained stage-1 model. Besides the picture, the leave-one-out k-NN accuracy of the task labels in
each embedding space is printed: the paper's claim (P_D separates tasks better than P_CLIP) as a number. The
t-SNE is scikit-learn's (a dependency of the suite); the k-NN accuracies are computed in the embedding spaces
themselves, so they do not depend on the t-SNE's random layout.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from src.reporting.plots import pyplot_or_none
from src.tasks import TASKS


# ---------------------------------------------------------------------------------------------- t-SNE
def tsne(x: np.ndarray, dim: int = 2, perplexity: float = 30.0, n_iter: int = 1000, seed: int = 0) -> np.ndarray:
    """``dim``-D t-SNE (van der Maaten & Hinton, 2008) of the rows of ``x``: scikit-learn's ``TSNE`` (PCA
    initialisation, learning rate "auto"; at least 250 iterations, scikit-learn's minimum). The perplexity is capped
    at (N − 1) / 3 so that small sets work."""
    from sklearn.manifold import TSNE

    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] < 4:
        raise ValueError(f"t-SNE needs an N×D array with N ≥ 4 points, got shape {x.shape}")
    perp = min(perplexity, (len(x) - 1) / 3)
    return TSNE(dim, perplexity=perp, max_iter=max(n_iter, 250), init="pca", random_state=seed,
                learning_rate="auto").fit_transform(x).astype(np.float32)


def knn_accuracy(x: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    """Leave-one-out k-nearest-neighbour accuracy of ``labels`` (Euclidean, majority vote)."""
    x = np.asarray(x, dtype=np.float64)
    sq = np.square(x).sum(1)
    d = sq[:, None] + sq[None] - 2 * x @ x.T
    np.fill_diagonal(d, np.inf)
    nn = np.argsort(d, axis=1)[:, :k]
    votes = labels[nn]
    pred = np.array([np.bincount(v, minlength=labels.max() + 1).argmax() for v in votes])
    return float((pred == labels).mean())


# ---------------------------------------------------------------------------------------------- embeddings
def degraded_samples(per_task: int, size: int = 128, tasks=TASKS, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """``per_task`` random crops of the built-in photos (training and held-out) degraded by every task."""
    from src.data.builtin import HELDOUT_IMAGES, TRAIN_IMAGES, load_builtin_image, random_crop, to_tensor
    from src.data.degradations import degrade

    images = [load_builtin_image(n) for n in (*TRAIN_IMAGES, *HELDOUT_IMAGES)]
    images = [im for im in images if min(im.shape[:2]) >= size]
    rng = np.random.default_rng(seed)
    xs, labels = [], []
    for task in tasks:
        for _ in range(per_task):
            gt = random_crop(images[rng.integers(len(images))], size, rng)
            xs.append(to_tensor(degrade(np.ascontiguousarray(gt), task, rng)))
            labels.append(TASKS.index(task))
    return torch.stack(xs), np.asarray(labels)


@torch.no_grad()
def embeddings(model, images: torch.Tensor, batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """(P_CLIP, P_D) of ``images`` under a stage-1 model."""
    device = next(model.parameters()).device
    clip, deg = [], []
    for i in range(0, len(images), batch_size):
        out = model.visual_prompts(images[i:i + batch_size].to(device))
        clip.append(out["p_clip"].float().cpu())
        deg.append(out["p_d"].float().cpu())
    return torch.cat(clip).numpy(), torch.cat(deg).numpy()


def plot(path: str | Path, panels: dict[str, np.ndarray], labels: np.ndarray, names=TASKS,
         backend: str = "auto") -> Path:
    """Side-by-side scatter plots (one per entry of ``panels``), coloured by task; matplotlib, else PIL."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    palette = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
               (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
    present = sorted(set(labels.tolist()))
    plt = pyplot_or_none(backend)
    if plt is not None:
        fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.6), squeeze=False)
        for ax, (title, y) in zip(axes[0], panels.items()):
            for c in present:
                m = labels == c
                ax.scatter(y[m, 0], y[m, 1], s=10, color=np.array(palette[c % 10]) / 255, label=names[c])
            ax.set_title(title, fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0][-1].legend(fontsize=7, markerscale=1.5, loc="best")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path
    from PIL import Image, ImageDraw

    side, pad = 320, 20
    img = Image.new("RGB", (len(panels) * (side + pad) + pad + 110, side + 2 * pad + 20), "white")
    draw = ImageDraw.Draw(img)
    for k, (title, y) in enumerate(panels.items()):
        x0 = pad + k * (side + pad)
        draw.text((x0, 4), title, fill="black")
        lo, hi = y.min(0), y.max(0)
        yn = (y - lo) / np.maximum(hi - lo, 1e-12)
        for (u, v), c in zip(yn, labels):
            cx, cy = x0 + 4 + u * (side - 8), pad + 16 + (1 - v) * (side - 8)
            draw.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=palette[c % 10])
    for i, c in enumerate(present):
        x0 = len(panels) * (side + pad) + pad
        draw.rectangle([x0, pad + 16 * i, x0 + 10, pad + 16 * i + 10], fill=palette[c % 10])
        draw.text((x0 + 14, pad + 16 * i), names[c], fill="black")
    img.save(path)
    return path


def run(model, out: str | Path, per_task: int = 40, size: int = 128, perplexity: float = 30.0,
        n_iter: int = 1000, seed: int = 0, backend: str = "auto") -> dict:
    """Fig. 10 for a stage-1 model: embeddings, both t-SNEs, k-NN accuracies, and the PNG (``backend``: the plot's,
    auto / matplotlib / pil)."""
    images, labels = degraded_samples(per_task, size, seed=seed)
    p_clip, p_d = embeddings(model, images)
    y_clip = tsne(p_clip, perplexity=perplexity, n_iter=n_iter, seed=seed)
    y_deg = tsne(p_d, perplexity=perplexity, n_iter=n_iter, seed=seed)
    acc = {"p_clip": knn_accuracy(p_clip, labels), "p_d": knn_accuracy(p_d, labels)}
    png = plot(out, {f"(a) CLIP image embedding P_CLIP (5-NN acc. {acc['p_clip']:.2f})": y_clip,
                     f"(b) degradation embedding P_D (5-NN acc. {acc['p_d']:.2f})": y_deg}, labels,
               backend=backend)
    return {"png": png, "knn_accuracy": acc, "labels": labels, "tsne_clip": y_clip, "tsne_deg": y_deg}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="stage-1 checkpoint written by src.train")
    parser.add_argument("--sd-dir", default=None, help="SD-1.5 folder, if not where the checkpoint's config says")
    parser.add_argument("--clip-weights", default=None, help="CLIP weights file, if not where the config says")
    parser.add_argument("--per-task", type=int, default=40)
    parser.add_argument("--size", type=int, default=128, help="crop size of the degraded samples")
    parser.add_argument("--perplexity", type=float, default=30.0)
    parser.add_argument("--iters", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="auto", choices=["auto", "matplotlib", "pil"],
                        help="how the plot is drawn (auto: matplotlib if installed, else PIL)")
    parser.add_argument("--out", default="tsne.png")
    args = parser.parse_args(argv)

    from src.diff_restorer.stage1 import DiffRestorerStage1

    model = DiffRestorerStage1.from_checkpoint(args.ckpt, sd_dir=args.sd_dir, clip_weights=args.clip_weights)
    result = run(model, args.out, args.per_task, args.size, args.perplexity, args.iters, args.seed, args.backend)
    acc = result["knn_accuracy"]
    print(f"5-NN task accuracy: P_CLIP {acc['p_clip']:.3f}, P_D {acc['p_d']:.3f}\nt-SNE plot: {result['png']}")
    return result


if __name__ == "__main__":
    main()
