"""The fake published-layout trees (training-path tests, paper-scale rehearsal): every builder reads them."""

from __future__ import annotations

import csv

from PIL import Image

from src.data.fake_trees import build_fake_data, photo_like


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_fake_trees_build_every_manifest_at_the_sizes_asked(tmp_path):
    sizes = {"gopro": (96, 64), "div2k": (80, 72)}
    data, manifests = build_fake_data(tmp_path, sizes=sizes, content=photo_like, train_images=3, test_images=2)
    names = {p.name for p in manifests.glob("*.csv")}
    for m in ("rain_merged_train.csv", "lol_train.csv", "lol_test.csv", "snow100k_train.csv", "reside_ots_train.csv",
              "gopro_train.csv", "gopro_test.csv", "div2k_train.csv", "flickr2k_train.csv", "rain1400_train.csv",
              "raindrop_train.csv", "raindrop_test_a.csv", "reside_sots_outdoor.csv", "snow100k_test_L.csv",
              "rain_merged_test_Rain100H.csv", "synthetic_noise50.csv", "synthetic_jpeg10.csv"):
        assert m in names, m
    assert len(_rows(manifests / "gopro_train.csv")) == 3
    assert len(_rows(manifests / "lol_test.csv")) == 2
    assert len(_rows(manifests / "rain1400_train.csv")) == 6  # two rainy versions of each clean image
    gopro = _rows(manifests / "gopro_test.csv")[0]
    lq_col = next(k for k in gopro if k.startswith("lq"))
    assert Image.open(data / gopro[lq_col]).size == (96, 64)
    lol = _rows(manifests / "lol_train.csv")[0]
    assert Image.open(data / lol[lq_col]).size == (48, 40)  # default size
