"""Pre-decoded training shards for large-scale runs, in litdata's chunked format (the streaming format Lightning
made for multi-node training): the training images of some manifests stored decoded (``uint8`` arrays), optionally
resized once to the training resolution (Diff-Restorer resizes every image to 512², paper §IV-A: doing it once
removes the decoding of 2–12 MP files for every sample; ``benchmarks/data_loading.py`` measures before and after).

    python -m src.data.manifests shards data_manifests/lol_train.csv ... --out /data/shards/dr512 --resize 512
    python -m src.train experiment=diff_restorer_stage1 +data.shards=/data/shards/dr512

The manifests stay the list of samples (tasks, sources, balancing): a DataModule given ``shards`` reads each
training row's LQ / GT pixels from the shard instead of decoding the files; every training row must be in it
(checked at set-up). Crops, flips, augmentation and LQ synthesis happen after reading, as before, so samples are
identical, with one difference in resized shards: the random crop of Diff-Restorer's oversampled copies
(``OversampleAugment.crop_scale``) is cut from the 512² image instead of the original, i.e. the same part of the
scene at less detail.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from src.data.manifest_format import Row

META = "uir_shards.json"


def row_key(row: Row) -> str:
    return f"{row.lq or ''}|{row.gt or ''}"


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    from src.data.datasets import resize  # the training pipeline's own resize: identical pixels

    return resize(img, size, size)


class _Encode:
    """Reads row i as training does (:meth:`ManifestDataset.read_row`) and returns ``{"key", "lq", "gt"}``, resized
    to ``resize_to``² if set (an empty array for a synthesised LQ)."""

    def __init__(self, rows: Sequence[Row], data_root: Path, resize_to: int | None, convert: bool):
        from src.data.datasets import ManifestDataset

        self.reader, self.resize_to = ManifestDataset(rows, data_root, convert=convert), resize_to

    def __call__(self, index: int):
        out = {"key": row_key(self.reader.rows[index])}
        for side, img in zip(("lq", "gt"), self.reader.read_row(index)):
            if img is not None and self.resize_to:
                img = _resize(img, self.resize_to)
            out[side] = img if img is not None else np.zeros((0, 0, 3), np.uint8)
        return out


def build_shards(rows: Sequence[Row], data_root: str | Path, out_dir: str | Path, resize_to: int | None = None,
                 convert: bool = False, chunk_bytes: str = "256MB", manifests: Sequence[str] = ()) -> Path:
    """Write the decoded images of ``rows`` to ``out_dir`` with litdata's chunk writer (item i is row i)."""
    from litdata.streaming.writer import BinaryWriter

    rows, out = list(rows), Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty: shards are written into a new folder")
    out.mkdir(parents=True, exist_ok=True)
    encode, writer = _Encode(rows, Path(data_root), resize_to, convert), BinaryWriter(str(out), chunk_bytes=chunk_bytes)
    for i in range(len(rows)):
        writer[i] = encode(i)
    writer.done()
    writer.merge()
    meta = {"format": "uir-suite litdata shards 1", "resize": resize_to, "manifests": list(manifests),
            "keys": [row_key(r) for r in rows]}
    (out / META).write_text(json.dumps(meta))
    return out


class ShardImages:
    """LQ / GT pixels of manifest rows from shards written by :func:`build_shards` (opened lazily, per worker)."""

    def __init__(self, shard_dir: str | Path):
        self.dir = Path(shard_dir)
        meta_file = self.dir / META
        if not meta_file.is_file():
            raise FileNotFoundError(f"data.shards={self.dir}: no {META} (build shards with `python -m "
                                    "src.data.manifests shards ...`)")
        meta = json.loads(meta_file.read_text())
        self.resize = meta.get("resize")
        self.index = {k: i for i, k in enumerate(meta["keys"])}
        self._ds = None

    def check_rows(self, rows: Sequence[Row]) -> None:
        """Every training row must be in the shards (one error naming how many are not, and the first)."""
        missing = [r for r in rows if row_key(r) not in self.index]
        if missing:
            raise ValueError(f"data.shards={self.dir}: {len(missing)} of {len(rows)} training rows are not in the "
                             f"shards (first: {missing[0].origin or row_key(missing[0])}); rebuild them from the "
                             "same manifests")

    def __getstate__(self):  # DataLoader workers open their own reader
        return {**self.__dict__, "_ds": None}

    def read(self, row: Row) -> tuple[np.ndarray | None, np.ndarray | None]:
        if self._ds is None:
            from litdata import StreamingDataset

            self._ds = StreamingDataset(str(self.dir))
        key = row_key(row)
        item = self._ds[self.index[key]]
        if item["key"] != key:
            raise ValueError(f"data.shards={self.dir}: item {self.index[key]} holds {item['key']!r}, not {key!r} "
                             "(shards written out of order; rebuild them)")
        lq, gt = (np.asarray(item[s]) for s in ("lq", "gt"))
        return (lq if lq.size else None), gt
