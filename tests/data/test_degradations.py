"""Tests for ``src.data.degradations``: each degradation checked against its definition."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from src.data import degradations as deg
from src.tasks import TASKS

RANDOM_TASKS = tuple(t for t in TASKS if t != "jpeg")  # jpeg is deterministic


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """A 96x80 smooth, textured RGB test image in [0.05, 0.95] (float32)."""
    rng = _rng(123)
    base = ndimage.gaussian_filter(rng.random((96, 80, 3)), sigma=(3, 3, 0))
    base = (base - base.min()) / (base.max() - base.min())
    yy, xx = np.mgrid[0:96, 0:80]
    grad = (0.5 * yy / 95 + 0.5 * xx / 79)[..., None]
    img = 0.05 + 0.9 * (0.5 * base + 0.5 * grad)
    return img.astype(np.float32)


def _assert_image(out: np.ndarray, like: np.ndarray) -> None:
    assert isinstance(out, np.ndarray)
    assert out.shape == like.shape
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0


# ----------------------------------------------------------------------------- noise
@pytest.mark.parametrize("sigma", [15.0, 50.0])
def test_gaussian_noise_std_on_flat_grey(sigma: float) -> None:
    flat = np.full((256, 256, 3), 0.5, dtype=np.float32)
    out = deg.gaussian_noise(flat, sigma, _rng(1))
    _assert_image(out, flat)
    noise = out - flat
    assert abs(noise.std() - sigma / 255) < 0.03 * sigma / 255
    assert abs(noise.mean()) < 2e-3


def test_gaussian_noise_is_clipped() -> None:
    white = np.ones((64, 64, 3), dtype=np.float32)
    out = deg.gaussian_noise(white, 50, _rng(0))
    _assert_image(out, white)
    assert out.max() == 1.0 and out.min() < 0.9


# ----------------------------------------------------------------------------- jpeg
@pytest.mark.parametrize("quality", [10, 40, 90])
def test_jpeg_matches_pil_round_trip(image: np.ndarray, quality: int) -> None:
    q8 = np.round(image * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(q8).save(buf, format="JPEG", quality=quality)
    expected = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    out = deg.jpeg(image, quality)
    _assert_image(out, image)
    np.testing.assert_array_equal(np.round(out * 255).astype(np.uint8), expected)
    np.testing.assert_array_equal(out, expected.astype(np.float32) / np.float32(255))


def test_jpeg_deterministic_and_lower_quality_is_worse(image: np.ndarray) -> None:
    np.testing.assert_array_equal(deg.jpeg(image, 20), deg.jpeg(image, 20))
    err_low = np.abs(deg.jpeg(image, 10) - image).mean()
    err_high = np.abs(deg.jpeg(image, 90) - image).mean()
    assert err_low > err_high


# ----------------------------------------------------------------------------- kernels / blur
@pytest.mark.parametrize("kernel", [
    deg.motion_blur_kernel(15, 0), deg.motion_blur_kernel(21, 37.5), deg.motion_blur_kernel(8, 120),
    deg.motion_blur_kernel(13, 60, rng=_rng(4)), deg.defocus_kernel(1), deg.defocus_kernel(2.6),
    deg.defocus_kernel(4),
])
def test_kernels_are_normalised(kernel: np.ndarray) -> None:
    assert kernel.ndim == 2 and kernel.dtype == np.float32
    assert kernel.shape[0] % 2 == 1 and kernel.shape[1] % 2 == 1
    assert (kernel >= 0).all()
    assert kernel.sum() == pytest.approx(1.0, abs=1e-5)


def test_trivial_kernels_are_identity() -> None:
    np.testing.assert_array_equal(deg.motion_blur_kernel(1, 30), np.ones((1, 1)))
    np.testing.assert_array_equal(deg.defocus_kernel(0), np.ones((1, 1)))
    with pytest.raises(ValueError):
        deg.motion_blur_kernel(0, 0)


def test_motion_kernel_orientation() -> None:
    size = 15
    c = size // 2
    horizontal = deg.motion_blur_kernel(size, 0)
    assert horizontal[c].sum() == pytest.approx(1.0, abs=1e-5)
    assert horizontal[c, 0] > 0 and horizontal[c, -1] > 0
    vertical = deg.motion_blur_kernel(size, 90)
    assert vertical[:, c].sum() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("angle", [0.0, 30.0, 45.0, 90.0, 135.0, 160.0])
def test_motion_kernel_principal_axis(angle: float) -> None:
    """The kernel's mass lies along ``angle`` (counter-clockwise from +x, row 0 at the top)."""
    k = deg.motion_blur_kernel(21, angle).astype(np.float64)
    c = (k.shape[0] - 1) / 2
    rows, cols = np.mgrid[0:k.shape[0], 0:k.shape[1]]
    x, y = cols - c, c - rows  # y points up
    cov = np.array([[np.sum(k * x * x), np.sum(k * x * y)], [np.sum(k * x * y), np.sum(k * y * y)]])
    evals, evecs = np.linalg.eigh(cov)
    major = evecs[:, 1]
    measured = np.rad2deg(np.arctan2(major[1], major[0])) % 180
    assert min(abs(measured - angle), 180 - abs(measured - angle)) < 1.0
    assert evals[0] < 0.05 * evals[1]  # a thin line, not a blob
    assert abs(np.sum(k * x)) < 1e-4 and abs(np.sum(k * y)) < 1e-4  # centred


def test_motion_kernel_shake_is_seeded() -> None:
    a = deg.motion_blur_kernel(17, 30, rng=_rng(1))
    b = deg.motion_blur_kernel(17, 30, rng=_rng(1))
    c = deg.motion_blur_kernel(17, 30, rng=_rng(2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_defocus_kernel_is_a_symmetric_disc() -> None:
    k = deg.defocus_kernel(3)
    assert k.shape == (7, 7)
    np.testing.assert_allclose(k, k.T, atol=1e-7)
    np.testing.assert_allclose(k, np.flipud(k), atol=1e-7)
    assert k[3, 3] == k.max() and k[0, 0] == 0


@pytest.mark.parametrize(
    "kernel", [deg.defocus_kernel(1), deg.motion_blur_kernel(21, 30), deg.defocus_kernel(4)]
)
def test_blur_of_constant_is_constant(kernel: np.ndarray) -> None:
    flat = np.full((40, 50, 3), 0.3, dtype=np.float32)
    flat[..., 1] = 0.7
    out = deg.blur(flat, kernel)
    _assert_image(out, flat)
    np.testing.assert_allclose(out, flat, atol=1e-5)


@pytest.mark.parametrize("kernel", [
    np.array([[0, 0, 0], [0, 0, 0], [0, 0, 1.0]]),  # small: direct path
    deg.motion_blur_kernel(11, 20, rng=_rng(3)),  # large, asymmetric: FFT path
])
def test_blur_equals_reflect_convolution(image: np.ndarray, kernel: np.ndarray) -> None:
    expected = np.stack([ndimage.convolve(image[..., ch].astype(np.float64), kernel, mode="reflect")
                         for ch in range(3)], axis=-1)
    np.testing.assert_allclose(deg.blur(image, kernel), expected, atol=1e-5)


def test_blur_smooths(image: np.ndarray) -> None:
    out = deg.blur(image, deg.defocus_kernel(3))
    assert np.abs(np.diff(out, axis=1)).mean() < np.abs(np.diff(image, axis=1)).mean()


# ----------------------------------------------------------------------------- low light
def test_low_light_darkens(image: np.ndarray) -> None:
    out = deg.low_light(image, 2.0, 0.3, _rng(0))
    _assert_image(out, image)
    assert out.mean() < 0.5 * image.mean()


def test_low_light_without_noise_is_scaled_gamma(image: np.ndarray) -> None:
    out = deg.low_light(image, 2.2, 0.25, _rng(0), read_noise=0.0, shot_noise=0.0)
    np.testing.assert_allclose(out, 0.25 * image.astype(np.float64) ** 2.2, atol=1e-6)


def test_low_light_noise_is_poisson_gaussian() -> None:
    read, shot = 0.01, 0.004
    for level in (0.2, 1.0):
        flat = np.full((128, 128, 3), level, dtype=np.float32)
        out = deg.low_light(flat, 1.0, 0.5, _rng(5), read_noise=read, shot_noise=shot)
        signal = 0.5 * level
        assert out.mean() == pytest.approx(signal, abs=2e-3)
        assert out.var() == pytest.approx(shot * signal + read**2, rel=0.05)


# ----------------------------------------------------------------------------- haze
def test_haze_matches_scattering_model(image: np.ndarray) -> None:
    h, w = image.shape[:2]
    depth = np.tile(np.linspace(0, 1, w, dtype=np.float32), (h, 1))
    beta, airlight = 1.3, 0.9
    t = np.exp(-beta * depth.astype(np.float64))[..., None]
    expected = image * t + airlight * (1 - t)
    np.testing.assert_allclose(deg.haze_transmission(depth, beta), t[..., 0], atol=1e-6)
    out = deg.haze(image, beta, airlight, depth=depth)
    _assert_image(out, image)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_haze_rgb_airlight_and_zero_depth(image: np.ndarray) -> None:
    h, w = image.shape[:2]
    np.testing.assert_allclose(deg.haze(image, 1.0, 0.8, depth=np.zeros((h, w))), image, atol=1e-7)
    far = deg.haze(image, 50.0, (0.9, 0.8, 0.7), depth=np.ones((h, w)))
    np.testing.assert_allclose(far, np.broadcast_to([0.9, 0.8, 0.7], image.shape), atol=1e-6)


def test_haze_synthetic_depth(image: np.ndarray) -> None:
    depth = deg.synthetic_depth(96, 80, _rng(2))
    assert depth.shape == (96, 80) and depth.dtype == np.float32
    assert depth.min() == pytest.approx(0.0, abs=1e-6) and depth.max() == pytest.approx(1.0, abs=1e-6)
    assert np.abs(np.diff(depth, axis=1)).max() < 0.1  # smooth
    assert depth[:10].mean() > depth[-10:].mean()  # far at the top, near at the bottom
    out = deg.haze(image, 1.2, 0.9, rng=_rng(2))
    np.testing.assert_allclose(out, deg.haze(image, 1.2, 0.9, depth=depth), atol=1e-7)
    assert np.abs(out - 0.9).mean() < np.abs(image - 0.9).mean()  # pulled towards airlight
    with pytest.raises(ValueError, match="depth"):
        deg.haze(image, 1.0, 0.9)
    with pytest.raises(ValueError, match="shape"):
        deg.haze(image, 1.0, 0.9, depth=np.zeros((5, 5)))


# ----------------------------------------------------------------------------- weather
@pytest.mark.parametrize("fn", [
    lambda img, rng: deg.rain(img, rng),
    lambda img, rng: deg.snow(img, rng),
    lambda img, rng: deg.raindrop(img, rng),
], ids=["rain", "snow", "raindrop"])
def test_weather_changes_image_keeps_range(image: np.ndarray, fn) -> None:
    out = fn(image, _rng(0))
    _assert_image(out, image)
    assert np.abs(out - image).mean() > 1e-3
    np.testing.assert_array_equal(out, fn(image, _rng(0)))
    assert not np.array_equal(out, fn(image, _rng(1)))


@pytest.mark.parametrize("fn", [deg.rain, deg.snow], ids=["rain", "snow"])
def test_rain_and_snow_only_brighten(image: np.ndarray, fn) -> None:
    out = fn(image, _rng(3))
    assert (out >= image - 1e-6).all()


def test_rain_streaks_follow_angle() -> None:
    black = np.zeros((128, 128, 3), dtype=np.float32)
    vertical = deg.rain(black, _rng(0), density=0.005, length=25, angle=0.0)[..., 0]
    assert np.abs(np.diff(vertical, axis=0)).mean() < 0.5 * np.abs(np.diff(vertical, axis=1)).mean()
    assert vertical.max() > 0.5
    tilted = deg.rain(black, _rng(0), density=0.005, length=25, angle=45.0)[..., 0]
    # tops lean right: a streak pixel continues one row up and one column right
    up_right = np.abs(tilted[1:, :-1] - tilted[:-1, 1:]).mean()
    up_left = np.abs(tilted[1:, 1:] - tilted[:-1, :-1]).mean()
    assert up_right < 0.5 * up_left


def test_snow_veil_whitens() -> None:
    grey = np.full((64, 64, 3), 0.4, dtype=np.float32)
    out = deg.snow(grey, _rng(0), density=0.0, veil=0.25)
    np.testing.assert_allclose(out, 1 - 0.6 * 0.75, atol=1e-6)


def test_raindrop_is_local(image: np.ndarray) -> None:
    np.testing.assert_array_equal(deg.raindrop(image, _rng(0), count=0), image)
    out = deg.raindrop(image, _rng(0), count=3, radius=(0.05, 0.08))
    changed = np.abs(out - image).max(axis=-1) > 1e-6
    assert 0.0 < changed.mean() < 0.3


# ----------------------------------------------------------------------------- dispatch
@pytest.mark.parametrize("task", TASKS)
def test_degrade_dispatch(image: np.ndarray, task: str) -> None:
    before = image.copy()
    out = deg.degrade(image, task, _rng(7))
    _assert_image(out, image)
    assert out is not image
    np.testing.assert_array_equal(image, before)  # input untouched
    assert np.abs(out - image).mean() > 1e-4
    np.testing.assert_array_equal(out, deg.degrade(image, task, _rng(7)))
    out64 = deg.degrade(image.astype(np.float64), task, _rng(7))
    _assert_image(out64, image)


@pytest.mark.parametrize("task", RANDOM_TASKS)
def test_degrade_different_seeds_differ(image: np.ndarray, task: str) -> None:
    assert not np.array_equal(deg.degrade(image, task, _rng(1)), deg.degrade(image, task, _rng(2)))


@pytest.mark.parametrize("task", TASKS)
def test_degrade_with_explicit_params(image: np.ndarray, task: str) -> None:
    params = deg.random_params(task, _rng(11))
    out = deg.degrade(image, task, _rng(3), **params)
    _assert_image(out, image)
    np.testing.assert_array_equal(out, deg.degrade(image, task, _rng(3), **params))


def test_degrade_explicit_params_match_functions(image: np.ndarray) -> None:
    np.testing.assert_array_equal(deg.degrade(image, "noise", _rng(0), sigma=50),
                                  deg.gaussian_noise(image, 50, _rng(0)))
    np.testing.assert_array_equal(deg.degrade(image, "jpeg", _rng(0), quality=15), deg.jpeg(image, 15))
    np.testing.assert_array_equal(deg.degrade(image, "blur", _rng(0), kind="defocus", radius=2),
                                  deg.blur(image, deg.defocus_kernel(2)))
    kernel = deg.motion_blur_kernel(9, 10)
    np.testing.assert_array_equal(deg.degrade(image, "blur", _rng(0), kernel=kernel), deg.blur(image, kernel))


def test_direct_functions_do_not_modify_input(image: np.ndarray) -> None:
    before = image.copy()
    calls = [
        lambda: deg.gaussian_noise(image, 25, _rng()), lambda: deg.jpeg(image, 30),
        lambda: deg.blur(image, deg.defocus_kernel(2)), lambda: deg.low_light(image, 2, 0.3, _rng()),
        lambda: deg.haze(image, 1, 0.9, rng=_rng()), lambda: deg.rain(image, _rng()),
        lambda: deg.snow(image, _rng()), lambda: deg.raindrop(image, _rng()),
        lambda: deg.compose(image, list(TASKS), _rng()),
    ]
    for call in calls:
        out = call()
        assert out is not image
        np.testing.assert_array_equal(image, before)


def test_unknown_task_error(image: np.ndarray) -> None:
    with pytest.raises(ValueError) as err:
        deg.degrade(image, "fog", _rng())
    message = str(err.value)
    assert "'fog'" in message
    assert all(task in message for task in TASKS)
    with pytest.raises(ValueError, match="fog"):
        deg.random_params("fog", _rng())
    with pytest.raises(ValueError, match="blur kind"):
        deg.degrade(image, "blur", _rng(), kind="gaussian")


def test_bad_image_shape() -> None:
    with pytest.raises(ValueError, match="shape"):
        deg.gaussian_noise(np.zeros((8, 8)), 10, _rng())


def test_random_params_ranges() -> None:
    rng = _rng(0)
    for _ in range(200):
        assert 15 <= deg.random_params("noise", rng)["sigma"] <= 50
        assert 10 <= deg.random_params("jpeg", rng)["quality"] <= 40
        p = deg.random_params("low_light", rng)
        assert 1.5 <= p["gamma"] <= 3 and 0.1 <= p["scale"] <= 0.4
        p = deg.random_params("haze", rng)
        assert 0.6 <= p["beta"] <= 2.0 and 0.7 <= p["airlight"] <= 1.0
        p = deg.random_params("blur", rng)
        if p["kind"] == "motion":
            assert 7 <= p["size"] <= 21 and p["size"] % 2 == 1 and 0 <= p["angle"] < 180
        else:
            assert p["kind"] == "defocus" and 1 <= p["radius"] <= 4
    kinds = {deg.random_params("blur", rng)["kind"] for _ in range(50)}
    assert kinds == {"motion", "defocus"}
    for task in TASKS:  # plain Python values (loggable / serialisable)
        assert all(isinstance(v, (int, float, str)) for v in deg.random_params(task, rng).values())
    sigmas = np.array([deg.random_params("noise", _rng(k))["sigma"] for k in range(4000)])
    assert abs(np.mean(sigmas < 25) - np.log(25 / 15) / np.log(50 / 15)) < 0.03  # log-uniform: 42 % at σ 15-25


# ----------------------------------------------------------------------------- compose


def test_compose_order_matters(image: np.ndarray) -> None:
    noise = ("noise", {"sigma": 50})
    defocus = ("blur", {"kind": "defocus", "radius": 3})
    noise_blur = deg.compose(image, [noise, defocus], _rng(0))
    blur_noise = deg.compose(image, [defocus, noise], _rng(0))
    _assert_image(noise_blur, image)
    assert not np.allclose(noise_blur, blur_noise, atol=1e-3)
    # noise applied last stays high-frequency; blurred noise is smooth
    assert np.abs(np.diff(blur_noise, axis=1)).mean() > 2 * np.abs(np.diff(noise_blur, axis=1)).mean()


def test_compose_equals_sequential_degrade(image: np.ndarray) -> None:
    rng = _rng(9)
    expected = deg.degrade(deg.degrade(image, "haze", rng), "jpeg", rng)
    np.testing.assert_array_equal(deg.compose(image, ["haze", "jpeg"], _rng(9)), expected)
    np.testing.assert_array_equal(deg.compose(image, [], _rng(9)), image)
