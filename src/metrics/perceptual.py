"""Learned and model-based image-quality metrics through pyiqa, with weights read only from a local folder.

LPIPS, DISTS, FID, NIQE, IL-NIQE, MUSIQ and CLIPIQA are computed by pyiqa (IQA-PyTorch, the toolbox the
Diff-Restorer paper used), each with pyiqa's default options. None of them is usable without a file: network
weights, or, for NIQE / IL-NIQE, the pristine-image model fitted by the metric's authors. pyiqa would download
those on first use; here nothing is ever downloaded:

1. Before pyiqa is even imported, the files a metric needs (:data:`PYIQA_METRICS`) are looked up in the
   configured folder. If one is absent the metric raises :class:`MetricUnavailable` naming the file, where
   to put it and where it is published; the evaluation shows the metric as *not computed* and goes on.
2. While pyiqa builds a metric, torch hub's directory points at that folder and every download function
   pyiqa, torchvision and CLIP use is replaced by one that raises — so a file missing from the table above
   (a newer pyiqa needing something else) also ends as :class:`MetricUnavailable`, never as a download.

Folder layout (the same as torch hub's cache, so ``~/.cache/torch/hub`` of a machine where pyiqa ran once can
be copied as is, or the folder pointed at it)::

    <metric_weights_dir>/pyiqa/        pyiqa's own files          (LPIPS_v0.1_alex-df73285e.pth, niqe_...mat, ...)
    <metric_weights_dir>/checkpoints/  torchvision backbones       (alexnet-owt-7be5be79.pth, vgg16-397923af.pth)
    <metric_weights_dir>/clip/         OpenAI CLIP, for CLIPIQA     (RN50.pt)

The file names are those of pyiqa 0.1.16 (``tests/metrics/test_perceptual.py`` checks them against the
installed pyiqa's source).
"""

from __future__ import annotations

import contextlib
import os
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = [
    "PYIQA_METRICS",
    "MetricUnavailable",
    "PyiqaScorer",
    "WeightFile",
    "check_weights",
    "create_pyiqa_metric",
    "fid_between_folders",
    "local_weights_only",
    "missing_weights",
]

_HF = "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/"
_TORCHVISION = "https://download.pytorch.org/models/"
_CLIP_RN50 = ("https://openaipublic.azureedge.net/clip/models/"
              "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt")


@dataclass(frozen=True)
class WeightFile:
    """A file a metric needs: its path inside the metric weights folder and where it is published."""

    path: str
    url: str

    @property
    def name(self) -> str:
        return Path(self.path).name


def _pyiqa(name: str) -> WeightFile:
    return WeightFile(f"pyiqa/{name}", _HF + name)


def _torchvision(name: str) -> WeightFile:
    return WeightFile(f"checkpoints/{name}", _TORCHVISION + name)


@dataclass(frozen=True)
class PyiqaSpec:
    pyiqa_name: str                 # the name pyiqa.create_metric takes
    files: tuple[WeightFile, ...]   # everything it loads


#: suite metric name -> pyiqa metric and the files it loads (pyiqa 0.1.16 defaults)
PYIQA_METRICS: dict[str, PyiqaSpec] = {
    "lpips": PyiqaSpec("lpips", (_pyiqa("LPIPS_v0.1_alex-df73285e.pth"), _torchvision("alexnet-owt-7be5be79.pth"))),
    "lpips_vgg": PyiqaSpec("lpips-vgg", (_pyiqa("LPIPS_v0.1_vgg-a78928a0.pth"), _torchvision("vgg16-397923af.pth"))),
    "dists": PyiqaSpec("dists", (_pyiqa("DISTS_weights-f5e65c96.pth"), _torchvision("vgg16-397923af.pth"))),
    "fid": PyiqaSpec("fid", (_pyiqa("pt_inception-2015-12-05-6726825d.pth"),)),
    "niqe": PyiqaSpec("niqe", (_pyiqa("niqe_modelparameters.mat"),)),
    "ilniqe": PyiqaSpec("ilniqe", (_pyiqa("ILNIQE_templateModel.mat"),)),
    "musiq": PyiqaSpec("musiq", (_pyiqa("musiq_koniq_ckpt-e95806b9.pth"),)),
    "clipiqa": PyiqaSpec("clipiqa", (WeightFile("clip/RN50.pt", _CLIP_RN50),)),
}


class MetricUnavailable(RuntimeError):
    """A metric that cannot be computed here: which files it needs and where they go, or why it failed."""

    def __init__(self, name: str, missing: list[tuple[WeightFile, Path]] | None = None, reason: str | None = None):
        self.name, self.missing, self.reason = name, list(missing or []), reason
        super().__init__(self.explain())

    def __reduce__(self):  # picklable (gathered across DDP ranks)
        return (MetricUnavailable, (self.name, self.missing, self.reason))

    @property
    def needed_file(self) -> str:
        return ", ".join(f.name for f, _ in self.missing)

    @property
    def put_it_here(self) -> str:
        return ", ".join(sorted({str(dest.parent) for _, dest in self.missing}))

    def cell(self) -> str:
        """What the result table shows in place of the number."""
        if self.missing:
            return "not computed (needs " + ", ".join(str(dest) for _, dest in self.missing) + ")"
        return f"not computed ({self.reason})"

    def explain(self) -> str:
        """Several lines: each missing file, where to put it and where it is published."""
        if not self.missing:
            return f"{self.name}: not computed ({self.reason})"
        lines = [f"{self.name}: not computed; it needs"]
        lines += [f"  {dest}   (published at {f.url})" for f, dest in self.missing]
        if self.reason:
            lines.append(f"  ({self.reason})")
        return "\n".join(lines)


def missing_weights(name: str, weights_dir: str | Path) -> list[tuple[WeightFile, Path]]:
    """The files of metric ``name`` absent from ``weights_dir`` (and their destination paths)."""
    if name not in PYIQA_METRICS:
        raise KeyError(f"unknown pyiqa-backed metric {name!r}; known: {sorted(PYIQA_METRICS)}")
    weights_dir = Path(weights_dir).expanduser()
    files = [(f, weights_dir / f.path) for f in PYIQA_METRICS[name].files]
    return [(f, dest) for f, dest in files if not dest.is_file()]


def check_weights(name: str, weights_dir: str | Path) -> None:
    """Raise :class:`MetricUnavailable` if a file metric ``name`` needs is not in ``weights_dir``."""
    missing = missing_weights(name, weights_dir)
    if missing:
        raise MetricUnavailable(name, missing)


class DownloadRefused(RuntimeError):
    def __init__(self, url: str):
        self.url = str(getattr(url, "full_url", url))
        super().__init__(f"download refused (offline weights only): {self.url}")


@contextlib.contextmanager
def local_weights_only(weights_dir: str | Path) -> Iterator[None]:
    """While active: torch hub's directory (torchvision, CLIP) and pyiqa's cache are ``weights_dir`` (and
    ``weights_dir/pyiqa``); any attempt to download raises :class:`DownloadRefused`. Restores all on exit."""
    import torch.hub

    weights_dir = Path(weights_dir).expanduser()

    def refuse(url, *args, **kwargs):
        raise DownloadRefused(url)

    patches: list[tuple[object, str, object]] = [(torch.hub, "download_url_to_file", refuse),
                                                 (urllib.request, "urlopen", refuse)]
    try:
        import pyiqa.utils.download_util as pyiqa_download
    except ImportError:  # pyiqa is a core dependency; a broken install is named
        pyiqa_download = None
    if pyiqa_download is not None:
        patches += [(pyiqa_download, "download_url_to_file", refuse),
                    (pyiqa_download, "DEFAULT_CACHE_DIR", str(weights_dir / "pyiqa"))]
    saved = [(obj, attr, getattr(obj, attr)) for obj, attr, _ in patches]
    hub_dir, offline = torch.hub.get_dir(), os.environ.get("HF_HUB_OFFLINE")
    try:
        for obj, attr, value in patches:
            setattr(obj, attr, value)
        torch.hub.set_dir(str(weights_dir))
        os.environ["HF_HUB_OFFLINE"] = "1"
        yield
    finally:
        for obj, attr, value in saved:
            setattr(obj, attr, value)
        torch.hub.set_dir(hub_dir)
        if offline is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = offline


def _hub_subdir(url: str) -> str:
    """Where under torch hub's directory a download from ``url`` would have been cached."""
    if url.startswith(_TORCHVISION):
        return "checkpoints"
    if "openaipublic" in url:
        return "clip"
    return "pyiqa"


def create_pyiqa_metric(name: str, weights_dir: str | Path, device: str | torch.device = "cpu"):
    """``pyiqa.create_metric`` for suite metric ``name``, from local files only (else :class:`MetricUnavailable`)."""
    check_weights(name, weights_dir)  # before pyiqa is imported: the common case costs nothing
    spec = PYIQA_METRICS[name]
    with local_weights_only(weights_dir):
        try:
            import pyiqa
        except ImportError as e:  # pyiqa is a core dependency; a broken install is named, not fatal
            raise MetricUnavailable(name, reason="needs pyiqa: pip install 'pyiqa>=0.1.13,<0.2'") from e
        try:
            return pyiqa.create_metric(spec.pyiqa_name, device=torch.device(device), as_loss=False)
        except DownloadRefused as e:
            file = WeightFile(_hub_subdir(e.url) + "/" + Path(e.url.split("?")[0]).name, e.url)
            raise MetricUnavailable(name, [(file, Path(weights_dir).expanduser() / file.path)],
                                    reason="pyiqa asked for a file this suite does not list; put it where it says "
                                           "and report it") from e
        except Exception as e:  # a corrupt or wrong file: say so, the evaluation goes on without this metric
            raise MetricUnavailable(name, reason=f"could not be built from {weights_dir}: "
                                                 f"{type(e).__name__}: {e}") from e


class PyiqaScorer:
    """One per-image pyiqa metric: ``scorer(output, reference=None)`` → one float per image of the batch."""

    def __init__(self, name: str, weights_dir: str | Path, device: str | torch.device = "cpu"):
        self.name = name
        self.metric = create_pyiqa_metric(name, weights_dir, device)
        self.full_reference = self.metric.metric_mode == "FR"

    @torch.no_grad()
    def __call__(self, output: torch.Tensor, reference: torch.Tensor | None = None) -> list[float]:
        if self.full_reference:
            if reference is None:
                raise ValueError(f"{self.name} needs a reference image")
            scores = self.metric(output.float(), reference.float())
        else:
            scores = self.metric(output.float())
        return [float(s) for s in torch.as_tensor(scores).detach().flatten().cpu()]


def fid_between_folders(restored_dir: str | Path, reference_dir: str | Path, weights_dir: str | Path,
                        device: str | torch.device = "cpu", num_workers: int = 0, batch_size: int = 8,
                        verbose: bool = True) -> float:
    """FID between two folders of images (pyiqa's default, clean-fid preprocessing)."""
    metric = create_pyiqa_metric("fid", weights_dir, device)
    with local_weights_only(weights_dir):
        return float(metric(str(restored_dir), str(reference_dir), mode="clean", num_workers=num_workers,
                            batch_size=batch_size, verbose=verbose))
