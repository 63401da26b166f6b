"""Tests for src.metrics.fidelity (BasicSR-convention PSNR/SSIM).

References are computed independently with scikit-image / torchmetrics / scipy; the
images are real photographs bundled with scikit-image (no download needed).
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.signal import fftconvolve
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from src.metrics.fidelity import batch_psnr_ssim, psnr, rgb_to_y, ssim, to_uint8


# ----------------------------------------------------------------------------- fixtures
def _gaussian_noise(img: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noisy = img.astype(np.float64) + rng.normal(0.0, sigma, img.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB")).copy()


_CLEAN = {"astronaut": data.astronaut(), "chelsea": data.chelsea()}
_PAIRS = {
    "astronaut-noise10": (_CLEAN["astronaut"], _gaussian_noise(_CLEAN["astronaut"], 10.0, seed=0)),
    "astronaut-noise25": (_CLEAN["astronaut"], _gaussian_noise(_CLEAN["astronaut"], 25.0, seed=1)),
    "astronaut-jpeg20": (_CLEAN["astronaut"], _jpeg(_CLEAN["astronaut"], 20)),
    "chelsea-noise25": (_CLEAN["chelsea"], _gaussian_noise(_CLEAN["chelsea"], 25.0, seed=2)),
    "chelsea-jpeg10": (_CLEAN["chelsea"], _jpeg(_CLEAN["chelsea"], 10)),
}


@pytest.fixture(params=sorted(_PAIRS))
def pair(request) -> tuple[np.ndarray, np.ndarray]:
    ref, img = _PAIRS[request.param]
    assert ref.dtype == np.uint8 and ref.ndim == 3 and ref.shape[-1] == 3
    return img, ref


# ----------------------------------------------------------------------------- Y conversion
@pytest.mark.parametrize(
    "rgb, expected",
    [
        ((255, 255, 255), 235.0),  # 16 + 65.481 + 128.553 + 24.966 = 235
        ((0, 0, 0), 16.0),
        ((255, 0, 0), 16.0 + 65.481),
        ((0, 255, 0), 16.0 + 128.553),
        ((0, 0, 255), 16.0 + 24.966),
        ((10, 200, 30), 16.0 + (65.481 * 10 + 128.553 * 200 + 24.966 * 30) / 255.0),
    ],
)
def test_rgb_to_y_hand_computed(rgb, expected):
    px = np.array(rgb, dtype=np.uint8).reshape(1, 1, 3)
    y = rgb_to_y(px)
    assert y.dtype == np.float64 and y.shape == (1, 1)
    assert y[0, 0] == pytest.approx(expected, abs=1e-9)


def test_rgb_to_y_not_rounded():
    y = rgb_to_y(data.astronaut())
    assert not np.allclose(y, np.round(y))  # BasicSR keeps the fractional part
    assert 16.0 <= y.min() and y.max() <= 235.0


# ----------------------------------------------------------------------------- (1) Y-channel
def test_psnr_y_matches_skimage(pair):
    img, ref = pair
    y_img, y_ref = rgb_to_y(img), rgb_to_y(ref)
    expected = peak_signal_noise_ratio(y_ref, y_img, data_range=255)
    assert psnr(img, ref) == pytest.approx(expected, rel=1e-12, abs=1e-10)


def test_ssim_y_matches_skimage(pair):
    # skimage pads by reflection, filters, then discards (win_size - 1) / 2 = 5 pixels on
    # every side before averaging, so its mean is exactly the mean over BasicSR's "valid"
    # windows.  Measured agreement: ~1e-15 (float64 round-off); we assert 1e-6.
    img, ref = pair
    y_img, y_ref = rgb_to_y(img), rgb_to_y(ref)
    expected = structural_similarity(
        y_img, y_ref, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(img, ref) == pytest.approx(expected, abs=1e-6)


def test_ssim_matches_brute_force_2d_window():
    # Independent of the separable implementation: full 11x11 2-D window, 'valid' mode.
    ref = data.astronaut()[100:228, 150:278]
    img = _gaussian_noise(ref, 15.0, seed=3)
    a, b = rgb_to_y(img), rgb_to_y(ref)
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()

    def filt(x):
        return fftconvolve(x, w[::-1, ::-1], mode="valid")

    mu_a, mu_b = filt(a), filt(b)
    va, vb, cov = filt(a * a) - mu_a**2, filt(b * b) - mu_b**2, filt(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    smap = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (va + vb + c2))
    assert smap.shape == (128 - 10, 128 - 10)
    assert ssim(img, ref) == pytest.approx(smap.mean(), abs=1e-9)


def test_known_degradation_ordering():
    ref = _CLEAN["astronaut"]
    p10, p25 = psnr(_PAIRS["astronaut-noise10"][1], ref), psnr(_PAIRS["astronaut-noise25"][1], ref)
    s10, s25 = ssim(_PAIRS["astronaut-noise10"][1], ref), ssim(_PAIRS["astronaut-noise25"][1], ref)
    assert p10 > p25 and s10 > s25
    assert 0.0 < s25 < s10 < 1.0
    # Gaussian noise of std 10 grey levels on RGB -> roughly 20*log10(255/10) ~ 28 dB on RGB;
    # the Y channel averages the channels' noise (and compresses range), so Y-PSNR is higher.
    assert psnr(_PAIRS["astronaut-noise10"][1], ref, y_channel=False) == pytest.approx(28.2, abs=0.5)
    assert p10 > 30.0


# ----------------------------------------------------------------------------- (2) RGB mode
def test_rgb_mode_matches_skimage(pair):
    img, ref = pair
    expected_psnr = peak_signal_noise_ratio(ref, img, data_range=255)
    expected_ssim = structural_similarity(
        img.astype(np.float64),
        ref.astype(np.float64),
        data_range=255,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        channel_axis=-1,
    )
    assert psnr(img, ref, y_channel=False) == pytest.approx(expected_psnr, rel=1e-12)
    assert ssim(img, ref, y_channel=False) == pytest.approx(expected_ssim, abs=1e-6)
    # y_channel actually changes the result
    assert psnr(img, ref, y_channel=False) != pytest.approx(psnr(img, ref), abs=1e-3)


def test_rgb_mode_is_mean_of_channel_ssims():
    img, ref = _PAIRS["chelsea-noise25"]
    per_channel = [
        structural_similarity(
            img[..., c].astype(np.float64),
            ref[..., c].astype(np.float64),
            data_range=255,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        for c in range(3)
    ]
    assert ssim(img, ref, y_channel=False) == pytest.approx(np.mean(per_channel), abs=1e-9)


# ----------------------------------------------------------------------------- (3) identical
@pytest.mark.parametrize("y_channel", [True, False])
def test_identical_images(y_channel):
    ref = data.chelsea()
    assert psnr(ref, ref.copy(), y_channel=y_channel) == math.inf
    assert ssim(ref, ref.copy(), y_channel=y_channel) == 1.0


# ----------------------------------------------------------------------------- (4) crop
def test_crop_border_changes_region():
    ref = data.astronaut()
    img = ref.copy()
    # corrupt only a 4-pixel frame plus mild noise inside
    img = _gaussian_noise(img, 3.0, seed=7)
    img[:4], img[-4:], img[:, :4], img[:, -4:] = 0, 0, 0, 0
    cb = 4
    inner_img, inner_ref = img[cb:-cb, cb:-cb], ref[cb:-cb, cb:-cb]
    for y in (True, False):
        assert psnr(img, ref, crop_border=cb, y_channel=y) == pytest.approx(
            psnr(inner_img, inner_ref, y_channel=y), rel=1e-12
        )
        assert ssim(img, ref, crop_border=cb, y_channel=y) == pytest.approx(
            ssim(inner_img, inner_ref, y_channel=y), rel=1e-12
        )
        assert psnr(img, ref, crop_border=cb, y_channel=y) > psnr(img, ref, y_channel=y) + 5.0
        assert ssim(img, ref, crop_border=cb, y_channel=y) > ssim(img, ref, y_channel=y)
    # cropped Y PSNR equals skimage on the cropped Y arrays
    expected = peak_signal_noise_ratio(rgb_to_y(inner_ref), rgb_to_y(inner_img), data_range=255)
    assert psnr(img, ref, crop_border=cb) == pytest.approx(expected, rel=1e-12)


def test_crop_border_validation():
    ref = data.astronaut()[:20, :20]
    with pytest.raises(ValueError):
        psnr(ref, ref, crop_border=10)
    with pytest.raises(ValueError):
        psnr(ref, ref, crop_border=-1)
    with pytest.raises(ValueError):  # 20 - 2*5 = 10 < 11-pixel SSIM window
        ssim(ref, ref, crop_border=5)


# ----------------------------------------------------------------------------- (5) shapes
@pytest.mark.parametrize("fn", [psnr, ssim])
def test_shape_mismatch_raises(fn):
    a = data.astronaut()
    b = a[:500, :510]
    with pytest.raises(ValueError, match=r"\(512, 512, 3\).*\(500, 510, 3\)"):
        fn(a, b)


def test_batch_shape_mismatch_raises():
    with pytest.raises(ValueError, match=r"\(2, 3, 16, 16\).*\(2, 3, 16, 17\)"):
        batch_psnr_ssim(torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 17))


# ----------------------------------------------------------------------------- (6) tensors
def _to_tensor(img_u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img_u8).permute(2, 0, 1).float() / 255.0


def test_to_uint8_rounding_and_clamping():
    x = np.array([-0.2, 0.0, 0.5 / 255 - 1e-4, 0.6 / 255, 0.5, 1.0, 1.3], dtype=np.float32)
    x = x.reshape(1, -1, 1)
    out = to_uint8(x)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out.ravel(), [0, 0, 0, 1, 128, 255, 255])  # 127.5 -> 128 (half-even)
    t = torch.from_numpy(x).permute(2, 0, 1)  # 1x1xN tensor (CxHxW)
    np.testing.assert_array_equal(to_uint8(t), out)
    np.testing.assert_array_equal(to_uint8(t[None]), out)  # 1xCxHxW squeezed
    assert to_uint8(torch.rand(2, 3, 5, 6)).shape == (2, 5, 6, 3)
    with pytest.raises(ValueError):
        to_uint8(np.full((2, 2, 3), np.nan))


def test_to_uint8_roundtrip_exact():
    ref = data.chelsea()
    np.testing.assert_array_equal(to_uint8(_to_tensor(ref)), ref)
    np.testing.assert_array_equal(to_uint8(ref.astype(np.float64) / 255.0), ref)
    np.testing.assert_array_equal(to_uint8(ref), ref)


@pytest.mark.parametrize("y_channel", [True, False])
def test_tensor_path_equals_numpy_path(pair, y_channel):
    img, ref = pair
    ti, tr = _to_tensor(img), _to_tensor(ref)
    p_np, s_np = psnr(img, ref, y_channel=y_channel), ssim(img, ref, y_channel=y_channel)
    assert psnr(ti, tr, y_channel=y_channel) == p_np
    assert ssim(ti, tr, y_channel=y_channel) == s_np
    assert psnr(ti[None], tr[None], y_channel=y_channel) == p_np
    # float numpy path, and mixed tensor / uint8
    assert psnr(img / 255.0, ref / 255.0, y_channel=y_channel) == p_np
    assert ssim(ti, ref, y_channel=y_channel) == s_np


def test_batch_psnr_ssim_matches_per_image():
    pairs = [_PAIRS["astronaut-noise10"], _PAIRS["astronaut-jpeg20"], _PAIRS["astronaut-noise25"]]
    target = torch.stack([_to_tensor(r) for r, _ in pairs])
    pred = torch.stack([_to_tensor(d) for _, d in pairs])
    # small overshoot outside [0, 1] must be clamped like BasicSR's tensor2img
    pred[0, :, :8, :8] = 1.2
    ps, ss = batch_psnr_ssim(pred, target, crop_border=2)
    assert len(ps) == len(ss) == 3
    assert all(isinstance(v, float) for v in ps + ss)
    for i in range(3):
        p_u8 = to_uint8(pred[i])
        assert ps[i] == psnr(p_u8, pairs[i][0], crop_border=2)
        assert ss[i] == ssim(p_u8, pairs[i][0], crop_border=2)


# ----------------------------------------------------------------------------- (7) torchmetrics
def test_psnr_y_matches_torchmetrics(pair):
    from torchmetrics.image import PeakSignalNoiseRatio

    img, ref = pair
    metric = PeakSignalNoiseRatio(data_range=255.0).double()
    y_img = torch.from_numpy(rgb_to_y(img))[None, None]
    y_ref = torch.from_numpy(rgb_to_y(ref))[None, None]
    expected = float(metric(y_img, y_ref))
    # torchmetrics finishes the computation in float32 (measured rel. diff. ~2e-8).
    assert psnr(img, ref) == pytest.approx(expected, rel=1e-6)
