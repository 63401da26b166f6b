"""Fake copies of every training / test source of both papers, each in its published folder layout, turned into
manifests by the suite's own builders: what the training-path tests (tiny images) and the paper-scale rehearsal
(:mod:`benchmarks.rehearse`, images at each dataset's real size) train on when the datasets are not at hand.

Image content is photo-like (smooth colour fields plus fine texture: it compresses like a photograph, not like
noise) or, for the tiny test trees, uniform noise. Nothing here is a restoration benchmark: the pixels are random.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

# Typical image size (width, height) of each source, as published: DiffUIR's sets are 0.3-1 MP, Diff-Restorer's
# clean sources (DIV2K, Flickr2K) 2-3 MP; `scale` of write_published_trees multiplies them.
REAL_SIZES = {
    "rain_merged": (512, 384), "lol": (600, 400), "snow100k": (640, 480), "reside": (550, 413),
    "gopro": (1280, 720), "div2k": (2040, 1356), "flickr2k": (2040, 1152), "rain1400": (512, 384),
    "raindrop": (720, 480),
}


def photo_like(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """An H×W×3 uint8 image of ``size`` = (width, height): bicubic-upsampled random colours plus texture."""
    low = rng.random((6, 8, 3))
    arr = np.asarray(Image.fromarray((low * 255).astype(np.uint8)).resize(size, Image.BICUBIC), dtype=np.float32)
    arr += rng.normal(0, 6, arr.shape).astype(np.float32)
    return np.clip(arr, 0, 255).astype(np.uint8)


def noise_image(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    return rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


def write_published_trees(data: Path, sizes: dict[str, tuple[int, int]] | None = None, seed: int = 0,
                          content: Callable[[np.random.Generator, tuple[int, int]], np.ndarray] = noise_image,
                          train_images: int = 2, test_images: int = 1) -> dict[str, Path]:
    """Write every source under ``data`` in its published layout; returns ``{builder name: dataset root}``.

    ``sizes``: (width, height) per builder name (default 48×40 everywhere); ``train_images`` / ``test_images``:
    pairs per training source / per test set (a validation set needs at least one image per DDP rank).
    """
    rng = np.random.default_rng(seed)

    def size_of(name: str) -> tuple[int, int]:
        return (sizes or {}).get(name, (48, 40))

    def img(path: Path, name: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        kw = {"quality": 95} if path.suffix == ".jpg" else {"compress_level": 1}
        Image.fromarray(content(rng, size_of(name))).save(path, **kw)

    def pairs(name, lq_dir: Path, gt_dir: Path, lq_names, gt_names=None) -> None:
        for n in lq_names:
            img(lq_dir / n, name)
        for n in gt_names or lq_names:
            img(gt_dir / n, name)

    k, t = range(1, train_images + 1), range(1, test_images + 1)
    roots = {}
    r = roots["rain_merged"] = data / "syn_rain"  # DiffUIR's merged deraining sets
    pairs("rain_merged", r / "train" / "input", r / "train" / "target", [f"{i}.png" for i in k])
    for s in ("Rain100H", "Rain100L", "Test100", "Test1200", "Test2800"):
        pairs("rain_merged", r / "test" / s / "input", r / "test" / s / "target", [f"{i}.png" for i in t])
    r = roots["lol"] = data / "LOL"
    pairs("lol", r / "our485" / "low", r / "our485" / "high", [f"{2 + 3 * i}.png" for i in k])
    pairs("lol", r / "eval15" / "low", r / "eval15" / "high", [f"{i}.png" for i in t])
    r = roots["snow100k"] = data / "Snow100K"
    pairs("snow100k", r / "Snow100K-training" / "all" / "synthetic", r / "Snow100K-training" / "all" / "gt",
          [f"city_{i}.jpg" for i in k])
    test = r / "Snow100K-testset" / "media" / "jdway" / "GameSSD" / "overlapping" / "test"
    for s in ("S", "L"):
        pairs("snow100k", test / f"Snow100K-{s}" / "synthetic", test / f"Snow100K-{s}" / "gt",
              [f"x{i}.jpg" for i in t])
    r = roots["reside"] = data / "RESIDE"
    pairs("reside", r / "OTS_ALPHA" / "haze" / "OTS", r / "OTS_ALPHA" / "clear" / "clear_images",
          [f"{i:04d}_0.8_0.2.jpg" for i in k], [f"{i:04d}.jpg" for i in k])
    pairs("reside", r / "SOTS" / "outdoor" / "hazy", r / "SOTS" / "outdoor" / "gt",
          [f"{i:04d}_0.8_0.2.jpg" for i in t], [f"{i:04d}.png" for i in t])
    r = roots["gopro"] = data / "GoPro"
    pairs("gopro", r / "train" / "GOPR0372_07_00" / "blur", r / "train" / "GOPR0372_07_00" / "sharp",
          [f"{46 + i:06d}.png" for i in k])
    pairs("gopro", r / "test" / "GOPR0384_11_00" / "blur", r / "test" / "GOPR0384_11_00" / "sharp",
          [f"{46 + i:06d}.png" for i in t])
    r = roots["div2k"] = data / "DIV2K"
    for i in k:
        img(r / "DIV2K_train_HR" / f"{i:04d}.png", "div2k")
    for i in t:
        img(r / "DIV2K_valid_HR" / f"{800 + i:04d}.png", "div2k")
    r = roots["flickr2k"] = data / "Flickr2K"
    for i in k:
        img(r / "Flickr2K_HR" / f"{i:06d}.png", "flickr2k")
    r = roots["rain1400"] = data / "Rain1400"
    pairs("rain1400", r / "training" / "rainy_image", r / "training" / "ground_truth",
          [f"{i}_{j}.jpg" for i in k for j in (1, 2)], [f"{i}.jpg" for i in k])
    pairs("rain1400", r / "testing" / "rainy_image", r / "testing" / "ground_truth",
          [f"{900 + i}_3.jpg" for i in t], [f"{900 + i}.jpg" for i in t])
    r = roots["raindrop"] = data / "Raindrop"
    pairs("raindrop", r / "train" / "data", r / "train" / "gt", [f"{i}_rain.png" for i in k],
          [f"{i}_clean.png" for i in k])
    pairs("raindrop", r / "test_a" / "data", r / "test_a" / "gt", [f"{4 + i}_rain.png" for i in t],
          [f"{4 + i}_clean.png" for i in t])
    return roots


def build_fake_data(base: Path, sizes: dict[str, tuple[int, int]] | None = None, seed: int = 0,
                    content: Callable = noise_image, train_images: int = 2, test_images: int = 1,
                    jobs: int = 1) -> tuple[Path, Path]:
    """The fake trees under ``base/data`` and every manifest both papers' data configs and default test sets read
    under ``base/manifests`` (the builders, and the synthetic noise50 / jpeg10 sets); returns (data, manifests)."""
    from src.data.manifests import build_manifests
    from src.data.synthetic_sets import generate_sets

    data, out = base / "data", base / "manifests"
    for name, root in write_published_trees(data, sizes, seed, content, train_images, test_images).items():
        build_manifests(name, root, data_root=data, out_dir=out, jobs=jobs)
    generate_sets(data / "DIV2K" / "DIV2K_valid_HR", data, sets=("noise50", "jpeg10"), manifest_dir=out)
    return data, out
