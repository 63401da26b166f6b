"""Fixed synthetic test sets: each set against its definition, deterministic per image, documented order."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from src.data.degradations import degrade, gaussian_noise, jpeg, random_params
from src.data.image_io import read_image, to_float, to_uint8
from src.data.manifests import main, read_manifest
from src.data.synthetic_sets import SYNTHETIC_SETS, generate_sets, image_rng, synthesize


@pytest.fixture(scope="module")
def div2k(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    rng = np.random.default_rng(1)
    d = root / "data" / "DIV2K" / "DIV2K_valid_HR"
    d.mkdir(parents=True)
    for stem in ("0801", "0802"):
        # smooth content, so JPEG and blur act as on photographs
        base = rng.random((5, 6, 3))
        arr = np.asarray(Image.fromarray((base * 255).astype(np.uint8)).resize((48, 40), Image.BICUBIC))
        Image.fromarray(arr).save(d / f"{stem}.png")
    return root


def test_sets_and_their_documented_order():
    assert list(SYNTHETIC_SETS) == ["noise50", "jpeg10", "noise_blur", "snow_noise", "raindrop_noise_blur",
                                    "jpeg_noise_blur"]
    order = {k: [t for t, _ in v[2]] for k, v in SYNTHETIC_SETS.items()}
    assert order["noise_blur"] == ["blur", "noise"]
    assert order["raindrop_noise_blur"] == ["raindrop", "blur", "noise"]
    assert order["jpeg_noise_blur"] == ["blur", "noise", "jpeg"]
    assert SYNTHETIC_SETS["noise50"][2] == [("noise", {"sigma": 50.0})]
    assert SYNTHETIC_SETS["jpeg10"][2] == [("jpeg", {"quality": 10})]


def test_generate_writes_images_manifests_and_params(div2k):
    data, out = div2k / "data", div2k / "manifests"
    written = generate_sets(data / "DIV2K" / "DIV2K_valid_HR", data, manifest_dir=out)
    assert set(written) == set(SYNTHETIC_SETS)
    for name, path in written.items():
        rows = read_manifest(path)
        task, source, _ = SYNTHETIC_SETS[name]
        assert [r.gt for r in rows] == ["DIV2K/DIV2K_valid_HR/0801.png", "DIV2K/DIV2K_valid_HR/0802.png"]
        assert all(r.task == task and r.source == source for r in rows)
        assert rows[0].lq == f"synthetic/DIV2K_valid/{name}/0801.png"
        assert read_image(data / rows[0].lq).shape == (40, 48, 3)
    params = json.loads((data / "synthetic" / "DIV2K_valid" / "noise_blur" / "params.json").read_text())
    assert params["operations_in_order"] == ["blur", "noise"] and params["images"]["0801"][1] == ["noise",
                                                                                                  {"sigma": 50.0}]

    gt = to_float(read_image(data / "DIV2K" / "DIV2K_valid_HR" / "0801.png"))

    def lq(name):
        return read_image(data / "synthetic" / "DIV2K_valid" / name / "0801.png")

    # noise50: gt + N(0, (50/255)^2), with the image's own generator
    assert np.array_equal(lq("noise50"), to_uint8(gaussian_noise(gt, 50.0, image_rng(0, "noise50", "0801"))))
    resid = to_float(lq("noise50")) - gt
    inside = (gt > 0.3) & (gt < 0.7)  # away from clipping
    assert abs(resid[inside].std() * 255 - 50) < 4
    # jpeg10: a real JPEG round trip at quality 10 (exact)
    assert np.array_equal(lq("jpeg10"), to_uint8(jpeg(gt, 10)))
    # mixed: the operations in the documented order, parameters from the same generator
    rng = image_rng(0, "jpeg_noise_blur", "0801")
    p = random_params("blur", rng)
    x = degrade(gt, "blur", rng, **p)
    x = gaussian_noise(x, 50.0, rng)
    assert np.array_equal(lq("jpeg_noise_blur"), to_uint8(jpeg(x, 10)))
    jnb = json.loads((data / "synthetic" / "DIV2K_valid" / "jpeg_noise_blur" / "params.json").read_text())
    assert jnb["images"]["0801"][0] == ["blur", p]
    rng = image_rng(0, "noise_blur", "0801")
    x = degrade(gt, "blur", rng, **random_params("blur", rng))  # blur first, then noise
    assert np.array_equal(lq("noise_blur"), to_uint8(gaussian_noise(x, 50.0, rng)))

def test_deterministic_per_image_whatever_the_subset(div2k, tmp_path):
    data = div2k / "data"
    src = data / "DIV2K" / "DIV2K_valid_HR"
    generate_sets(src, data, out_subdir="again", sets=["snow_noise", "raindrop_noise_blur"], manifest_dir=tmp_path)
    generate_sets(src, data, out_subdir="one", sets=["snow_noise"], manifest_dir=tmp_path, limit=1)
    a = (data / "again" / "snow_noise" / "0801.png").read_bytes()
    assert a == (data / "one" / "snow_noise" / "0801.png").read_bytes()
    generate_sets(src, data, out_subdir="again", sets=["snow_noise"], manifest_dir=tmp_path)
    assert a == (data / "again" / "snow_noise" / "0801.png").read_bytes()
    generate_sets(src, data, out_subdir="seed1", sets=["snow_noise"], manifest_dir=tmp_path, seed=1, limit=1)
    assert a != (data / "seed1" / "snow_noise" / "0801.png").read_bytes()
    img = to_float(read_image(src / "0801.png"))
    x1, ops1 = synthesize(img, "raindrop_noise_blur", "0801")
    x2, ops2 = synthesize(img, "raindrop_noise_blur", "0801")
    assert np.array_equal(x1, x2) and ops1 == ops2 and [t for t, _ in ops1] == ["raindrop", "blur", "noise"]
    with pytest.raises(ValueError, match="unknown synthetic set"):
        synthesize(img, "fog", "0801")


def test_cli_synth_with_crop(div2k, tmp_path, capsys):
    data = div2k / "data"
    rc = main(["synth", "--div2k-valid", str(data / "DIV2K" / "DIV2K_valid_HR"), "--data-root", str(data),
               "--out-subdir", "cropped", "--sets", "jpeg10", "--crop", "32", "--manifests-out", str(tmp_path)])
    assert rc == 0 and "jpeg10" in capsys.readouterr().out
    rows = read_manifest(tmp_path / "synthetic_jpeg10.csv")
    assert rows[0].gt == "cropped/gt_crop32/0801.png"
    assert read_image(data / rows[0].lq).shape == read_image(data / rows[0].gt).shape == (32, 32, 3)
