"""Datasets over manifest rows: DiffUIR's and Diff-Restorer's training pipelines and full-resolution evaluation.

Every sample is a dict in the suite's batch contract: ``lq`` and ``gt`` float32 3×H×W tensors in [0, 1] and
``task`` (int, index into :data:`~src.tasks.TASKS`); evaluation samples add ``name`` (str: the LQ path
without extension), ``source`` (str: the manifest's source, e.g. ``Snow100K-L``) and ``has_gt`` (bool). For a
no-reference row ``gt`` is a copy of ``lq`` and ``has_gt`` is False: reference metrics must skip those samples.

Training datasets are indexed by :class:`~src.data.balancing.SampleKey` (row, seed, augment flag) from the samplers
in ``src.data.balancing``: all randomness of a sample (crop, flips, augmentation, synthesised degradation) comes
from ``numpy.random.default_rng(key.seed)``, so results do not depend on the worker count. Given a plain ``int``
index they draw a seed from torch's generator instead (Lightning seeds it per worker).

Rows with an empty ``lq`` are clean images whose LQ is synthesised here by the row's task (:class:`SynthConfig`).

Errors: a file that cannot be read raises :class:`~src.data.image_io.ImageProblem` naming the file and the manifest
row (``<manifest> line <n>``). With ``on_bad_sample="skip"`` a training dataset logs the bad row instead (once per
worker process), replaces it by the next readable row of the same task (deterministic, and a batch keeps its task
composition), and marks the sample with ``skipped`` = 1 (0 otherwise; the field is present in every sample of a
skipping dataset, and the DataModule's loader removes it from the batch and reports the epoch's total). Evaluation
datasets never substitute samples.
"""

from __future__ import annotations

import logging
import random
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from src.data.balancing import SampleKey
from src.data.degradations import degrade
from src.data.image_io import ImageProblem, read_image, to_float
from src.data.manifest_format import RESIZE_GT_SOURCES, Row, task_label
from src.tasks import TASKS

log = logging.getLogger(__name__)
_MAX_RETRIES = 16  # consecutive unreadable rows of one task before on_bad_sample="skip" gives up
ON_BAD_SAMPLE = ("error", "skip")
SKIPPED_KEY = "skipped"  # per-sample field of a skipping training dataset: 1 when the sample was substituted


@dataclass(frozen=True)
class SynthConfig:
    """Degradations synthesised for rows with an empty ``lq`` (Diff-Restorer: Gaussian noise σ = 50 on the 0-255
    scale, JPEG quality 10); other tasks draw their parameters with ``degradations.random_params``."""

    noise_sigma: float = 50.0
    jpeg_quality: int = 10

    def apply(self, gt: np.ndarray, task: str, rng: np.random.Generator) -> np.ndarray:
        if task == "noise":
            return degrade(gt, "noise", rng, sigma=self.noise_sigma)
        if task == "jpeg":
            return degrade(gt, "jpeg", rng, quality=self.jpeg_quality)
        return degrade(gt, task, rng)


# ------------------------------------------------------------------------------------------------ image operations
def to_tensor(img: np.ndarray) -> torch.Tensor:
    """H×W×3 ``uint8`` or float [0, 1] → float32 3×H×W tensor in [0, 1]."""
    arr = to_float(img) if img.dtype == np.uint8 else img.astype(np.float32, copy=False)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bicubic resize of a ``uint8`` H×W×3 image (PIL)."""
    if img.shape[1] == width and img.shape[0] == height:
        return img
    return np.asarray(Image.fromarray(img).resize((int(width), int(height)), Image.BICUBIC))


def hist_equalize(img: np.ndarray) -> np.ndarray:
    """Per-channel histogram equalisation of a ``uint8`` image (as OpenCV's ``equalizeHist`` on each channel):
    ``v → round((cdf(v) − cdf_min) · 255 / (N − cdf_min))``; a constant channel is left unchanged."""
    out = np.empty_like(img)
    n = img.shape[0] * img.shape[1]
    for c in range(img.shape[2]):
        ch = img[..., c]
        cdf = np.cumsum(np.bincount(ch.ravel(), minlength=256))
        cdf_min = cdf[np.flatnonzero(cdf)[0]]
        if n == cdf_min:
            out[..., c] = ch
            continue
        lut = np.clip(np.round((cdf - cdf_min) * 255.0 / (n - cdf_min)), 0, 255).astype(np.uint8)
        out[..., c] = lut[ch]
    return out


def crop_pair(lq: np.ndarray | None, gt: np.ndarray | None, size: int, rng: np.random.Generator):
    """The same random ``size``² crop of both images; images smaller than ``size`` are first resized up (bicubic,
    keeping the aspect ratio) so that their short side is ``size``."""
    ref = lq if lq is not None else gt
    h, w = ref.shape[:2]
    if min(h, w) < size:
        s = size / min(h, w)
        nw, nh = max(size, round(w * s)), max(size, round(h * s))
        lq = resize(lq, nw, nh) if lq is not None else None
        gt = resize(gt, nw, nh) if gt is not None else None
        h, w = nh, nw
    y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return (lq[y:y + size, x:x + size] if lq is not None else None,
            gt[y:y + size, x:x + size] if gt is not None else None)


def center_crop(img: np.ndarray, size: int) -> np.ndarray:
    """The central ``size``×``size`` crop of an H×W(×C) array (the whole side where it is shorter)."""
    h, w = img.shape[:2]
    sh, sw = min(size, h), min(size, w)
    y, x = (h - sh) // 2, (w - sw) // 2
    return img[y:y + sh, x:x + sw]


def affine_pair(lq: torch.Tensor, gt: torch.Tensor, angle: float, scale: float, shear: float,
                translate: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """The same affine warp of two 3×H×W tensors (bilinear, reflected borders: no empty corners).

    ``angle`` and ``shear`` in degrees, ``scale`` > 1 zooms in, ``translate`` as fractions of the width / height.
    """
    a, s = np.deg2rad(angle), np.deg2rad(shear)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    sh = np.array([[1.0, np.tan(s)], [0.0, 1.0]])
    m = (rot @ sh) / scale  # output → input sampling coordinates (normalised [-1, 1])
    theta = torch.tensor([[m[0, 0], m[0, 1], 2 * translate[0]], [m[1, 0], m[1, 1], 2 * translate[1]]],
                         dtype=torch.float32)[None]
    both = torch.cat([lq, gt])[None]
    grid = F.affine_grid(theta, list(both.shape), align_corners=False)
    out = F.grid_sample(both, grid, mode="bilinear", padding_mode="reflection", align_corners=False)[0]
    return out[:3].clamp_(0, 1), out[3:].clamp_(0, 1)


def seed_of(text: str, seed: int = 0) -> list[int]:
    """A stable seed sequence for a string (CRC-32, identical on every machine and Python run)."""
    return [int(seed), zlib.crc32(text.encode("utf-8"))]


def worker_init_fn(worker_id: int) -> None:
    """Seed Python's and NumPy's global generators from the worker's torch seed (distinct per worker, rank and
    epoch; reproducible after ``seed_everything``). The datasets themselves take every random number from the
    per-sample seed, so this only protects code that uses the global generators."""
    s = torch.initial_seed() % 2**32
    random.seed(s)
    np.random.seed(s)


# ------------------------------------------------------------------------------------------------ datasets
class ManifestDataset(Dataset):
    """Rows of one or more manifests read under ``data_root``.

    Args:
        rows: manifest rows (already checked, e.g. by ``src.data.manifests.load_manifest``).
        data_root: the folder the row paths are relative to.
        convert: accept grayscale / RGBA / palette / 16-bit images (converted to 8-bit RGB).
        on_bad_sample: ``"error"`` (default: an unreadable sample stops with an error naming the file and the
            manifest row) or ``"skip"`` (log it and use the next readable row of the same task; see the module
            docstring).
        synth: how LQ images of rows with an empty ``lq`` are synthesised.
        unknown_task: the label of rows whose task is ``unknown`` (TOLED / POLED).
        resize_gt_sources: sources whose GT may differ in size from the LQ (resized to it); elsewhere an error.
    """

    def __init__(self, rows: Sequence[Row], data_root: str | Path, convert: bool = False,
                 on_bad_sample: str = "error", synth: SynthConfig | None = None, unknown_task: str = "blur",
                 resize_gt_sources: Sequence[str] = RESIZE_GT_SOURCES):
        if on_bad_sample not in ON_BAD_SAMPLE:
            raise ValueError(f"on_bad_sample={on_bad_sample!r}: expected 'error' or 'skip'")
        self.rows = list(rows)
        if not self.rows:
            raise ValueError("no rows: the manifests are empty")
        self.data_root = Path(data_root)
        self.convert, self.on_bad_sample = convert, on_bad_sample
        self.synth = synth or SynthConfig()
        self.labels = np.array([task_label(r.task, unknown_task) for r in self.rows], dtype=np.int64)
        self._same_task = {int(t): np.flatnonzero(self.labels == t) for t in np.unique(self.labels)}
        self.resize_gt_sources = tuple(resize_gt_sources)
        self.skipped: Counter = Counter()  # substituted samples by problem kind (this process)
        self.bad_rows: dict[int, str] = {}  # row index -> problem kind (this process)
        self.images = None  # pre-decoded shards (src.data.shards.ShardImages) read instead of the files, if set

    def __len__(self) -> int:
        return len(self.rows)

    def where(self, index: int) -> str:
        """The row's manifest and line (or its position when it was not read from a file)."""
        return self.rows[index].origin or f"dataset row {index + 1}"

    def read_row(self, index: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """LQ and GT of a row as ``uint8`` arrays (None where the manifest field is empty); an
        :class:`ImageProblem` names the file and the manifest row."""
        row = self.rows[index]
        if self.images is not None:
            return self.images.read(row)
        try:
            lq = read_image(self.data_root / row.lq, self.convert) if row.lq is not None else None
            gt = read_image(self.data_root / row.gt, self.convert) if row.gt is not None else None
            if lq is not None and gt is not None and lq.shape != gt.shape:
                if row.source not in self.resize_gt_sources:
                    raise ImageProblem(self.data_root / row.lq, f"LQ is {lq.shape[1]}×{lq.shape[0]} but its GT "
                                       f"{row.gt} is {gt.shape[1]}×{gt.shape[0]}", "LQ and GT of the same size",
                                       "size_mismatch")
                gt = resize(gt, lq.shape[1], lq.shape[0])
        except ImageProblem as e:
            raise e.at(self.where(index)) from None
        return lq, gt

    def read_or_skip(self, index: int) -> tuple[int, np.ndarray | None, np.ndarray | None, int]:
        """:meth:`read_row` → (row index, LQ, GT, 0); with ``on_bad_sample="skip"`` an unreadable row is replaced by
        the next readable row of the same task (in row order, wrapping around): (that row, LQ, GT, 1)."""
        same = self._same_task[int(self.labels[index])]
        start = int(np.searchsorted(same, index))
        fresh_failures = 0
        for step in range(len(same)):
            i = int(same[(start + step) % len(same)])
            if i in self.bad_rows:  # known bad in this process: not read again
                if step == 0:
                    self.skipped[self.bad_rows[i]] += 1
                continue
            try:
                return (i, *self.read_row(i), int(step > 0))
            except ImageProblem as e:
                if self.on_bad_sample != "skip":
                    raise
                self.bad_rows[i] = e.kind
                if step == 0:
                    self.skipped[e.kind] += 1
                log.warning("bad training sample skipped (on_bad_sample=skip; replaced by the next readable %s "
                            "row): %s", TASKS[int(self.labels[index])], e)
                fresh_failures += 1
                if fresh_failures >= _MAX_RETRIES:
                    raise ImageProblem(e.path, f"{e.problem}; and {_MAX_RETRIES - 1} more rows of task "
                                       f"{TASKS[int(self.labels[index])]} in a row cannot be read either: "
                                       "on_bad_sample=skip gives up", e.expected, e.kind, e.where) from None
        raise ImageProblem(self.data_root, f"no row of task {TASKS[int(self.labels[index])]} can be read "
                           f"({len(same)} rows, all bad; on_bad_sample=skip)", "readable training images",
                           "unreadable", self.where(index))

    def _sample(self, out: dict, substituted: int) -> dict:
        if self.on_bad_sample == "skip":
            out[SKIPPED_KEY] = substituted
        return out

    def _no_reference(self, index: int) -> ImageProblem:
        row = self.rows[index]
        return ImageProblem(self.data_root / row.lq, "no-reference row in a training manifest",
                            "training rows with a GT image", "format", self.where(index))

    @staticmethod
    def _rng(key) -> tuple[int, np.random.Generator, bool]:
        if isinstance(key, SampleKey | tuple):
            key = SampleKey(*key)
            return key.row, np.random.default_rng(key.seed), key.augment
        return int(key), np.random.default_rng(int(torch.randint(0, 2**62, ()).item())), False


class DiffUIRTrainDataset(ManifestDataset):
    """DiffUIR's training pipeline (paper §4.2 and the official code).

    1. the same random ``patch_size``² crop of LQ and GT (an image smaller than that is first resized up, bicubic);
    2. for tasks in ``hist_eq_tasks`` (low-light), per-channel histogram equalisation of the LQ crop (the official
       code equalises after cropping);
    3. horizontal and vertical flips, each with probability 0.5 (the paper; the official code flips horizontally
       only: ``vflip=False``).

    Rows with an empty ``lq`` are synthesised from the GT crop.
    """

    def __init__(self, rows: Sequence[Row], data_root: str | Path, patch_size: int = 256, hflip: bool = True,
                 vflip: bool = True, hist_eq_tasks: Sequence[str] = ("low_light",), **kw):
        super().__init__(rows, data_root, **kw)
        self.patch_size, self.hflip, self.vflip = int(patch_size), hflip, vflip
        self.hist_eq = {task_label(t) for t in hist_eq_tasks}

    def __getitem__(self, key) -> dict:
        index, rng, _ = self._rng(key)
        index, lq, gt, substituted = self.read_or_skip(index)
        row, label = self.rows[index], int(self.labels[index])
        if gt is None:
            raise self._no_reference(index)
        lq, gt = crop_pair(lq, gt, self.patch_size, rng)
        if lq is not None and label in self.hist_eq:
            lq = hist_equalize(lq)
        if self.hflip and rng.random() < 0.5:
            gt = gt[:, ::-1]
            lq = lq[:, ::-1] if lq is not None else None
        if self.vflip and rng.random() < 0.5:
            gt = gt[::-1]
            lq = lq[::-1] if lq is not None else None
        gt_f = to_float(np.ascontiguousarray(gt))
        lq_f = to_float(np.ascontiguousarray(lq)) if lq is not None else self.synth.apply(gt_f, row.task, rng)
        return self._sample({"lq": to_tensor(lq_f), "gt": to_tensor(gt_f), "task": label}, substituted)


@dataclass(frozen=True)
class OversampleAugment:
    """Augmentation of Diff-Restorer's oversampled copies (paper: "rotation, affine transformation, noise addition,
    and random cropping"; the parameters are this suite's choice):

    * random crop: a window of ``crop_scale`` × the image side (same aspect ratio), before resizing;
    * rotation: a random multiple of 90° and a random horizontal flip;
    * affine: with probability ``affine_p``, rotation ±``max_angle``°, shear ±``max_shear``°, zoom
      [1, ``max_zoom``], shift ±``max_shift`` of the size (reflected borders);
    * noise: with probability ``noise_p``, Gaussian noise of σ ∈ ``noise_sigma`` (0-255 scale) added to the LQ only,
      and not to synthesised noise / JPEG inputs (their copies already differ: they are synthesised afresh).
    """

    crop_scale: tuple[float, float] = (0.6, 1.0)
    affine_p: float = 0.5
    max_angle: float = 15.0
    max_shear: float = 8.0
    max_zoom: float = 1.15
    max_shift: float = 0.05
    noise_p: float = 0.5
    noise_sigma: tuple[float, float] = (1.0, 5.0)


class DiffRestorerTrainDataset(ManifestDataset):
    """Diff-Restorer's training pipeline (paper §IV-A): every image resized to ``image_size``² (bicubic; "all images
    are resized to 512x512"), LQ synthesised for empty-``lq`` rows after resizing (so σ = 50 and the JPEG blocks are
    at the training resolution), and oversampled copies (``SampleKey.augment``) augmented as
    :class:`OversampleAugment` describes: crop → resize → rot90 / flip → affine → (synthesis) → noise.

    ``resize_mode="random_crop"`` takes a random ``image_size``² crop instead of resizing (images smaller than that
    are resized up first).
    """

    def __init__(self, rows: Sequence[Row], data_root: str | Path, image_size: int = 512, resize_mode: str = "resize",
                 augment: OversampleAugment | None = None, **kw):
        super().__init__(rows, data_root, **kw)
        if resize_mode not in ("resize", "random_crop"):
            raise ValueError(f"resize_mode={resize_mode!r}: expected 'resize' or 'random_crop'")
        self.image_size, self.resize_mode = int(image_size), resize_mode
        self.augment = augment or OversampleAugment()

    def _fit(self, lq, gt, rng):
        s = self.image_size
        if self.resize_mode == "random_crop":
            return crop_pair(lq, gt, s, rng)
        return (resize(lq, s, s) if lq is not None else None), (resize(gt, s, s) if gt is not None else None)

    def __getitem__(self, key) -> dict:
        index, rng, augment = self._rng(key)
        index, lq, gt, substituted = self.read_or_skip(index)
        row, label = self.rows[index], int(self.labels[index])
        if gt is None:
            raise self._no_reference(index)
        a = self.augment
        if augment:
            h, w = gt.shape[:2]
            f = rng.uniform(*a.crop_scale)
            ch, cw = max(1, round(h * f)), max(1, round(w * f))
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            gt = gt[y:y + ch, x:x + cw]
            lq = lq[y:y + ch, x:x + cw] if lq is not None else None
        lq, gt = self._fit(lq, gt, rng)
        gt_t = to_tensor(gt)
        lq_t = to_tensor(lq) if lq is not None else None
        if augment:
            k, flip = int(rng.integers(4)), bool(rng.random() < 0.5)
            ops = [lambda t: torch.rot90(t, k, dims=(1, 2)), lambda t: t.flip(2) if flip else t]
            for op in ops:
                gt_t = op(gt_t)
                lq_t = op(lq_t) if lq_t is not None else None
            if rng.random() < a.affine_p:
                params = (rng.uniform(-a.max_angle, a.max_angle), rng.uniform(1.0, a.max_zoom),
                          rng.uniform(-a.max_shear, a.max_shear),
                          (rng.uniform(-a.max_shift, a.max_shift), rng.uniform(-a.max_shift, a.max_shift)))
                lq_in = lq_t if lq_t is not None else gt_t
                lq_w, gt_t = affine_pair(lq_in, gt_t, *params)
                lq_t = lq_w if lq_t is not None else None
        if lq_t is None:
            lq_np = self.synth.apply(gt_t.permute(1, 2, 0).numpy(), row.task, rng)
            lq_t = to_tensor(lq_np)
        elif augment and rng.random() < a.noise_p:
            sigma = rng.uniform(*a.noise_sigma) / 255.0
            noise = torch.from_numpy(rng.standard_normal(lq_t.shape, dtype=np.float32))
            lq_t = (lq_t + sigma * noise).clamp_(0, 1)
        return self._sample({"lq": lq_t.contiguous(), "gt": gt_t.contiguous(), "task": label}, substituted)


def first_per_source(rows: Sequence[Row], limit: int | None) -> list[Row]:
    """The first ``limit`` rows of each source, in order (all rows when ``limit`` is None or 0)."""
    if not limit:
        return list(rows)
    seen: Counter = Counter()
    kept = []
    for r in rows:
        if seen[r.source] < limit:
            kept.append(r)
            seen[r.source] += 1
    return kept


class EvalDataset(ManifestDataset):
    """Full-resolution evaluation (batch 1), or centre crops of ``crop``² when batching.

    LQ of rows with an empty ``lq`` is synthesised with a seed fixed per row (``seed`` and the CRC-32 of its GT path
    and task); the fixed files of ``src.data.synthetic_sets`` are the reference test sets, this is for quick checks.
    LQ images of ``hist_eq_tasks`` are histogram-equalised (DiffUIR evaluates LOL that way). ``limit_per_source``
    keeps the first N rows of each source (quick validation).
    """

    def __init__(self, rows: Sequence[Row], data_root: str | Path, hist_eq_tasks: Sequence[str] = (),
                 crop: int | None = None, seed: int = 0, limit_per_source: int | None = None, **kw):
        if kw.get("on_bad_sample", "error") != "error":
            raise ValueError("evaluation datasets do not substitute samples (on_bad_sample must be 'error'): a "
                             "result must cover every test image")
        super().__init__(first_per_source(rows, limit_per_source), data_root, **kw)
        self.hist_eq = {task_label(t) for t in hist_eq_tasks}
        self.crop, self.seed = crop, int(seed)

    def __getitem__(self, index: int) -> dict:
        index, lq, gt, _ = self.read_or_skip(int(index))
        row, label = self.rows[index], int(self.labels[index])
        if self.crop:
            lq = center_crop(lq, self.crop) if lq is not None else None
            gt = center_crop(gt, self.crop) if gt is not None else None
        if lq is not None and label in self.hist_eq:
            lq = hist_equalize(lq)
        if lq is None:
            rng = np.random.default_rng(seed_of(f"{row.gt}|{row.task}", self.seed))
            lq_t = to_tensor(self.synth.apply(to_float(gt), row.task, rng))
            name = f"{Path(row.gt).with_suffix('').as_posix()}@{row.task}"
        else:
            lq_t = to_tensor(lq)
            name = Path(row.lq).with_suffix("").as_posix()
        has_gt = gt is not None
        gt_t = to_tensor(gt) if has_gt else lq_t.clone()
        return {"lq": lq_t, "gt": gt_t, "task": label, "name": name, "source": row.source,
                "has_gt": torch.tensor(has_gt)}
