"""Every dataset builder against a small fake tree in that dataset's published layout (tiny PNG / JPEG files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from src.data.builders import BUILDERS, get_builder
from src.data.manifests import ManifestError, build_manifests, read_manifest

_RNG = np.random.default_rng(0)


def img(path: Path, size=(12, 8)) -> Path:
    """A tiny random RGB image at ``path`` (PNG or JPEG by extension); parent folders created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_RNG.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def pairs(lq_dir: Path, gt_dir: Path, lq_names, gt_names) -> None:
    for n in lq_names:
        img(lq_dir / n)
    for n in gt_names:
        img(gt_dir / n)


def build(name, root, tmp_path, **kw):
    return build_manifests(name, root, data_root=tmp_path / "data", out_dir=tmp_path / "manifests", **kw)


def counts(out):
    return {split: len(rows) for split, rows in out.splits.items()}


@pytest.fixture
def data(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    return d


def test_registry_lists_every_dataset_of_the_issue():
    expected = {"div2k", "flickr2k", "lol", "reside", "rain1400", "raindrop", "snow100k", "gopro", "realsnow", "rtts",
                "rain_merged", "hide", "realblur_j", "realblur_r", "mef", "npe", "dicm", "practical", "toled", "poled"}
    assert expected <= set(BUILDERS)
    for b in BUILDERS.values():
        assert b.layout and b.description and b.fn.__doc__
    with pytest.raises(KeyError, match="no dataset builder 'nope'"):
        get_builder("nope")


def test_div2k_and_flickr2k_rows_synthesise_noise_and_jpeg(data, tmp_path):
    for i in range(3):
        img(data / "DIV2K" / "DIV2K_train_HR" / f"{i + 1:04d}.png")
    for i in range(2):
        img(data / "DIV2K" / "DIV2K_valid_HR" / f"{i + 801:04d}.png")
    out = build("div2k", data / "DIV2K", tmp_path)
    assert counts(out) == {"train": 6, "valid": 4}
    rows = read_manifest(tmp_path / "manifests" / "div2k_train.csv")
    assert {r.task for r in rows} == {"noise", "jpeg"} and all(r.lq is None and r.synthetic for r in rows)
    assert rows[0].gt == "DIV2K/DIV2K_train_HR/0001.png" and rows[0].source == "DIV2K"
    img(data / "Flickr2K" / "Flickr2K_HR" / "000001.png")
    assert counts(build("flickr2k", data / "Flickr2K", tmp_path)) == {"train": 2}


@pytest.mark.parametrize("layout", ["published", "diffuir"])
def test_lol(data, tmp_path, layout):
    tr, te = ("our485", "eval15") if layout == "published" else ("train", "test")
    names = ["2.png", "5.png", "9.png"]
    pairs(data / "LOL" / tr / "low", data / "LOL" / tr / "high", names, names)
    pairs(data / "LOL" / te / "low", data / "LOL" / te / "high", ["1.png"], ["1.png"])
    out = build("lol", data / "LOL", tmp_path)
    assert counts(out) == {"train": 3, "test": 1}
    row = read_manifest(tmp_path / "manifests" / "lol_test.csv")[0]
    assert (row.lq, row.gt, row.task, row.source) == (f"LOL/{te}/low/1.png", f"LOL/{te}/high/1.png", "low_light", "LOL")
    assert "lol" in out.report() and "low_light: 3" in out.report()


def test_reside_ots_sots_rtts(data, tmp_path):
    r = data / "RESIDE"
    pairs(r / "OTS_ALPHA" / "haze" / "OTS", r / "OTS_ALPHA" / "clear" / "clear_images",
          ["0001_0.8_0.2.jpg", "0001_0.9_0.16.jpg", "0002_1_0.08.jpg"], ["0001.jpg", "0002.jpg", "0003.jpg"])
    pairs(r / "SOTS" / "outdoor" / "hazy", r / "SOTS" / "outdoor" / "gt", ["0001_0.8_0.2.jpg"], ["0001.png"])
    img(r / "RTTS" / "JPEGImages" / "AM_Bing_211.png")
    (r / "RTTS" / "Annotations").mkdir()
    out = build("reside", r, tmp_path)
    assert counts(out) == {"ots_train": 3, "sots_outdoor": 1, "rtts": 1}
    ots = read_manifest(tmp_path / "manifests" / "reside_ots_train.csv")
    assert [Path(x.gt).name for x in ots] == ["0001.jpg", "0001.jpg", "0002.jpg"]
    assert any("1 of 3 reference images have no degraded image" in n for n in out.notes)  # 0003.jpg unused
    rtts = read_manifest(tmp_path / "manifests" / "reside_rtts.csv")
    assert rtts[0].gt is None and rtts[0].task == "haze" and rtts[0].source == "RTTS"
    assert counts(build("rtts", r / "RTTS", tmp_path)) == {"test": 1}


def test_rain_merged_and_rain1400_and_practical(data, tmp_path):
    s = data / "syn_rain"
    pairs(s / "train" / "input", s / "train" / "target", ["1.jpg", "2.jpg"], ["1.jpg", "2.jpg"])
    for name in ("Rain100H", "Rain100L", "Test100", "Test1200", "Test2800"):
        pairs(s / "test" / name / "input", s / "test" / name / "target", ["a.png"], ["a.png"])
    pairs(s / "test" / "Rain100L" / "input", s / "test" / "Rain100L" / "target", ["rain-007.png"], ["norain-007.png"])
    out = build("rain_merged", s, tmp_path)
    assert counts(out) == {"train": 2, "test_Rain100H": 1, "test_Rain100L": 2, "test_Test100": 1,
                           "test_Test1200": 1, "test_Test2800": 1}
    assert {r.source for r in out.splits["test_Test2800"]} == {"Test2800"}
    r14 = data / "Rain1400"
    pairs(r14 / "training" / "rainy_image", r14 / "training" / "ground_truth", ["1_1.jpg", "1_2.jpg", "1_14.jpg"],
          ["1.jpg"])
    pairs(r14 / "testing" / "rainy_image", r14 / "testing" / "ground_truth", ["901_3.jpg"], ["901.jpg"])
    out = build("rain1400", r14, tmp_path)
    assert counts(out) == {"train": 3, "test": 1}
    assert {r.gt for r in out.splits["train"]} == {"Rain1400/training/ground_truth/1.jpg"}
    img(data / "Practical" / "rain1.jpg")
    out = build("practical", data / "Practical", tmp_path)
    assert counts(out) == {"test": 1} and out.splits["test"][0].gt is None


def test_raindrop(data, tmp_path):
    r = data / "Raindrop"
    pairs(r / "train" / "data", r / "train" / "gt", ["0_rain.png", "1_rain.png"], ["0_clean.png", "1_clean.png"])
    pairs(r / "test_a" / "data", r / "test_a" / "gt", ["5_rain.png"], ["5_clean.png"])
    pairs(r / "test_b" / "data", r / "test_b" / "gt", ["6_rain.jpg"], ["6_clean.jpg"])
    out = build("raindrop", r, tmp_path)
    assert counts(out) == {"train": 2, "test_a": 1, "test_b": 1}
    assert out.splits["test_a"][0].gt == "Raindrop/test_a/gt/5_clean.png"


@pytest.mark.parametrize("layout", ["published", "diffuir"])
def test_snow100k(data, tmp_path, layout):
    s = data / "Snow100K"
    if layout == "published":
        train = s / "Snow100K-training" / "all"
        test = s / "Snow100K-testset" / "media" / "jdway" / "GameSSD" / "overlapping" / "test"
        img(train / "mask" / "beautiful_1.jpg")
        real = s / "realistic"
    else:
        train, test, real = s / "train", s / "test", None
    pairs(train / "synthetic", train / "gt", ["beautiful_1.jpg", "city_2.jpg"], ["beautiful_1.jpg", "city_2.jpg"])
    for size in ("S", "L"):
        pairs(test / f"Snow100K-{size}" / "synthetic", test / f"Snow100K-{size}" / "gt", ["x.jpg"], ["x.jpg"])
    if real:
        img(real / "snow_0001.jpg")
    out = build("snow100k", s, tmp_path)
    expected = {"train": 2, "test_S": 1, "test_L": 1} | ({"realistic": 1} if real else {})
    assert counts(out) == expected
    assert out.splits["test_L"][0].source == "Snow100K-L"


def test_realsnow_with_and_without_reference(data, tmp_path):
    img(data / "RealSnow" / "a.jpg")
    out = build("realsnow", data / "RealSnow", tmp_path)
    assert counts(out) == {"test": 1} and out.splits["test"][0].gt is None
    pairs(data / "RealSnow2" / "test" / "input", data / "RealSnow2" / "test" / "gt", ["b.png"], ["b.png"])
    out = build("realsnow", data / "RealSnow2", tmp_path)
    assert out.splits["test"][0].gt == "RealSnow2/test/gt/b.png"


@pytest.mark.parametrize("layout", ["published", "diffuir"])
def test_gopro(data, tmp_path, layout):
    g = data / "GoPro"
    if layout == "published":
        for split, scenes in (("train", ["GOPR0372_07_00", "GOPR0374_11_00"]), ("test", ["GOPR0384_11_00"])):
            for sc in scenes:  # the same frame names in every scene: pairs are keyed by scene and frame
                pairs(g / split / sc / "blur", g / split / sc / "sharp", ["000047.png"], ["000047.png"])
                img(g / split / sc / "blur_gamma" / "000047.png")
        expected = {"train": 2, "test": 1}
    else:
        pairs(g / "train" / "input", g / "train" / "target", ["a.png", "b.png"], ["a.png", "b.png"])
        pairs(g / "test" / "GoPro" / "input", g / "test" / "GoPro" / "target", ["c.png"], ["c.png"])
        expected = {"train": 2, "test": 1}
    out = build("gopro", g, tmp_path)
    assert counts(out) == expected
    if layout == "published":
        assert [r.gt for r in out.splits["train"]] == ["GoPro/train/GOPR0372_07_00/sharp/000047.png",
                                                       "GoPro/train/GOPR0374_11_00/sharp/000047.png"]


def test_hide(data, tmp_path):
    h = data / "HIDE_dataset"
    img(h / "test" / "test-close-ups" / "1fromGOPR0950.png")
    img(h / "test" / "test-long-shot" / "2fromGOPR1096.png")
    img(h / "train" / "3fromGOPR0000.png")
    for n in ("1fromGOPR0950.png", "2fromGOPR1096.png", "3fromGOPR0000.png"):
        img(h / "GT" / n)
    out = build("hide", h, tmp_path)
    assert counts(out) == {"test": 2, "train": 1}
    assert out.splits["test"][0].gt == "HIDE_dataset/GT/1fromGOPR0950.png"


@pytest.mark.parametrize("variant", ["J", "R"])
def test_realblur_list_and_scan(data, tmp_path, variant):
    rb = data / "RealBlur"
    base = f"RealBlur-{variant}_ECC_IMCORR_centroid_itensity_ref"
    for sc in ("scene001", "scene230"):
        pairs(rb / base / sc / "blur", rb / base / sc / "gt", ["blur_1.png", "blur_2.png"], ["gt_1.png", "gt_2.png"])
    out = build(f"realblur_{variant.lower()}", rb, tmp_path)  # no list files: scanned, every scene in 'all'
    assert counts(out) == {"all": 4}
    (rb / f"RealBlur_{variant}_test_list.txt").write_text(
        f"{base}/scene230/gt/gt_1.png {base}/scene230/blur/blur_1.png\n"
        f"{base}/scene230/gt/gt_2.png {base}/scene230/blur/blur_2.png\n")
    (rb / f"RealBlur_{variant}_train_list.txt").write_text(
        f"{base}/scene001/gt/gt_1.png {base}/scene001/blur/blur_1.png\n")
    out = build(f"realblur_{variant.lower()}", rb, tmp_path)
    assert counts(out) == {"test": 2, "train": 1}
    row = out.splits["test"][0]
    assert row.lq == f"RealBlur/{base}/scene230/blur/blur_1.png" and row.source == f"RealBlur-{variant}"


@pytest.mark.parametrize("name", ["mef", "npe", "dicm"])
def test_no_reference_low_light_sets(data, tmp_path, name):
    img(data / name.upper() / "01.bmp")
    img(data / name.upper() / "02.jpg")
    (data / name.upper() / "readme.txt").write_text("not an image")
    out = build(name, data / name.upper(), tmp_path)
    assert counts(out) == {"test": 2}
    assert all(r.gt is None and r.task == "low_light" and r.source == name.upper() for r in out.splits["test"])


@pytest.mark.parametrize("name", ["toled", "poled"])
def test_udc_sets(data, tmp_path, name):
    base = data / "UDC" / name.capitalize()
    pairs(base / "LQ", base / "HQ", ["99.png", "100.png"], ["99.png", "100.png"])
    out = build(name, data / "UDC", tmp_path)
    assert counts(out) == {"test": 2}
    assert {r.task for r in out.splits["test"]} == {"unknown"} and out.splits["test"][0].source == name.upper()


def test_unknown_layout_is_a_clear_error(data, tmp_path):
    (data / "empty").mkdir()
    with pytest.raises(ManifestError, match="(?s)no known layout found.*our485"):
        build("lol", data / "empty", tmp_path)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        build("lol", data / "missing", tmp_path)


def test_paths_stay_relative_to_the_data_root(data, tmp_path):
    pairs(data / "sets" / "LOL" / "our485" / "low", data / "sets" / "LOL" / "our485" / "high", ["1.png"], ["1.png"])
    pairs(data / "sets" / "LOL" / "eval15" / "low", data / "sets" / "LOL" / "eval15" / "high", ["1.png"], ["1.png"])
    out = build_manifests("lol", data / "sets" / "LOL", data_root=data, out_dir=None)
    assert out.splits["train"][0].lq == "sets/LOL/our485/low/1.png" and out.files == {}
    out = build_manifests("lol", data / "sets" / "LOL", out_dir=None)  # default: the parent of the dataset folder
    assert out.splits["train"][0].lq == "LOL/our485/low/1.png"
    with pytest.raises(ValueError, match="not inside the data root"):
        build_manifests("lol", data / "sets" / "LOL", data_root=tmp_path / "elsewhere", out_dir=None)
