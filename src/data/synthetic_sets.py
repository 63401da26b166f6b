"""Fixed synthetic test sets made from DIV2K's validation images (``DIV2K_valid_HR``, 100 images).

* ``noise50`` (task ``noise``): Gaussian noise σ = 50 (0-255 scale);
* ``jpeg10`` (``jpeg``): JPEG quality 10;
* ``noise_blur`` (``noise+blur``): blur → noise σ = 50;
* ``snow_noise`` (``snow+noise``): snow → noise σ = 50;
* ``raindrop_noise_blur`` (``raindrop+noise+blur``): raindrop → blur → noise σ = 50;
* ``jpeg_noise_blur`` (``jpeg+noise+blur``): blur → noise σ = 50 → JPEG quality 10

(operations in the order listed: the arrows).

The first two are Diff-Restorer's single-degradation noise / JPEG settings (§IV-A: "noise level 50", "JPEG quality
factor of 10"). The four mixed sets are its mixed-degradation test sets; the paper gives neither their parameters nor
their order, so this suite fixes them: degradations are applied in the order an image is formed (what is in front of
the lens, snow or raindrops; then the optics, blur; then the sensor, noise; then the codec, JPEG), noise and JPEG at
the same fixed levels as the single sets, and the blur / snow / raindrop parameters drawn per image from
:func:`src.data.degradations.random_params` (the ranges the suite trains with).

Determinism: image ``<stem>`` of set ``<set>`` uses ``numpy.random.default_rng([seed, crc32(set), crc32(stem)])``:
parameters and noise are drawn from it in the order of the operations, so every image is reproducible on its own,
whatever the order or subset of images processed. The drawn parameters are saved beside the images
(``params.json``).

Output, under the data root: ``<out_subdir>/<set>/<stem>.png`` (8-bit RGB PNG, lossless); the GT column refers to
the DIV2K image itself (or, with ``crop``, to a centre crop written once to ``<out_subdir>/gt_crop<crop>/``).
Manifests: ``<manifest_dir>/synthetic_<set>.csv``.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from src.data.builders.common import list_images
from src.data.degradations import degrade, random_params
from src.data.image_io import read_image, save_png, to_float
from src.data.manifest_format import DEFAULT_MANIFEST_DIR, Row, write_manifest

NOISE_SIGMA = 50.0
JPEG_QUALITY = 10

# set name -> (manifest task, source label, operations in order; None = parameters drawn with random_params)
SYNTHETIC_SETS: dict[str, tuple[str, str, list[tuple[str, dict[str, Any] | None]]]] = {
    "noise50": ("noise", "DIV2K-noise50", [("noise", {"sigma": NOISE_SIGMA})]),
    "jpeg10": ("jpeg", "DIV2K-jpeg10", [("jpeg", {"quality": JPEG_QUALITY})]),
    "noise_blur": ("noise+blur", "Noise+Blur", [("blur", None), ("noise", {"sigma": NOISE_SIGMA})]),
    "snow_noise": ("snow+noise", "Snow+Noise", [("snow", None), ("noise", {"sigma": NOISE_SIGMA})]),
    "raindrop_noise_blur": ("raindrop+noise+blur", "Raindrop+Noise+Blur",
                            [("raindrop", None), ("blur", None), ("noise", {"sigma": NOISE_SIGMA})]),
    "jpeg_noise_blur": ("jpeg+noise+blur", "JPEG+Noise+Blur",
                        [("blur", None), ("noise", {"sigma": NOISE_SIGMA}), ("jpeg", {"quality": JPEG_QUALITY})]),
}


def image_rng(seed: int, set_name: str, stem: str) -> np.random.Generator:
    """The generator of one image of one set (see the module docstring)."""
    return np.random.default_rng([int(seed), zlib.crc32(set_name.encode()), zlib.crc32(stem.encode())])


def synthesize(img: np.ndarray, set_name: str, stem: str, seed: int = 0) -> tuple[np.ndarray, list]:
    """Degrade one float [0, 1] H×W×3 image for ``set_name``; returns the LQ image and the operations applied
    (``[task, params]`` in order)."""
    if set_name not in SYNTHETIC_SETS:
        raise ValueError(f"unknown synthetic set {set_name!r}; expected one of {', '.join(SYNTHETIC_SETS)}")
    rng = image_rng(seed, set_name, stem)
    out, applied = img, []
    for task, params in SYNTHETIC_SETS[set_name][2]:
        p = dict(params) if params is not None else random_params(task, rng)
        out = degrade(out, task, rng, **p)
        applied.append([task, p])
    return out, applied


def generate_sets(div2k_valid: str | os.PathLike, data_root: str | os.PathLike,
                  out_subdir: str = "synthetic/DIV2K_valid", sets: Sequence[str] = tuple(SYNTHETIC_SETS),
                  seed: int = 0, manifest_dir: str | os.PathLike | None = None, limit: int | None = None,
                  crop: int | None = None) -> dict[str, Path]:
    """Write the synthetic sets (images, ``params.json``) and their manifests; returns ``{set: manifest path}``.

    ``div2k_valid`` is the folder of clean images (every image file in it, sorted by name; ``limit`` keeps the
    first N). ``crop`` centre-crops each image to ``crop``² first. Existing files are overwritten (the result is
    identical for the same inputs and seed).
    """
    src_dir, data_root = Path(os.path.abspath(div2k_valid)), Path(os.path.abspath(data_root))
    files = list_images(src_dir)[:limit] if limit else list_images(src_dir)
    if not files:
        raise FileNotFoundError(f"no images in {src_dir} (expected DIV2K_valid_HR/0801.png ...)")
    for s in sets:
        if s not in SYNTHETIC_SETS:
            raise ValueError(f"unknown synthetic set {s!r}; expected some of {', '.join(SYNTHETIC_SETS)}")
    out_root = data_root / out_subdir
    manifest_dir = Path(manifest_dir) if manifest_dir is not None else DEFAULT_MANIFEST_DIR
    rows: dict[str, list[Row]] = {s: [] for s in sets}
    params: dict[str, dict[str, list]] = {s: {} for s in sets}
    for f in files:
        img = read_image(f)
        if crop:
            from src.data.datasets import center_crop

            img = np.ascontiguousarray(center_crop(img, crop))
            gt_path = out_root / f"gt_crop{crop}" / f"{f.stem}.png"
            save_png(img, gt_path)
        else:
            gt_path = f
        gt_rel = _rel(gt_path, data_root)
        clean = to_float(img)
        for s in sets:
            lq, applied = synthesize(clean, s, f.stem, seed)
            lq_path = out_root / s / f"{f.stem}.png"
            save_png(lq, lq_path)
            task, source, _ = SYNTHETIC_SETS[s]
            rows[s].append(Row(_rel(lq_path, data_root), gt_rel, task, source))
            params[s][f.stem] = applied
    written = {}
    for s in sets:
        (out_root / s / "params.json").write_text(json.dumps(
            {"set": s, "seed": seed, "operations_in_order": [t for t, _ in SYNTHETIC_SETS[s][2]],
             "images": params[s]}, indent=1, default=float))
        written[s] = write_manifest(rows[s], manifest_dir / f"synthetic_{s}.csv")
    return written


def _rel(path: Path, data_root: Path) -> str:
    try:
        return Path(os.path.abspath(path)).relative_to(data_root).as_posix()
    except ValueError:
        raise ValueError(f"{path} is not inside the data root {data_root}") from None
