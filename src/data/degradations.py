"""Synthetic degradations for universal image restoration.

Eight degradations (:data:`src.tasks.TASKS`) are synthesised from a clean image.  They are used both
for on-the-fly training data and for fixed, seeded synthetic test sets, so every function
here is *pure*:

* an image is a ``float32`` numpy array of shape ``(H, W, 3)`` (RGB) with values in ``[0, 1]``;
* every random function takes an explicit ``rng: numpy.random.Generator`` (no global RNG);
* every function returns a **new** ``float32`` ``(H, W, 3)`` array clipped to ``[0, 1]`` and
  never modifies its input;
* no I/O (JPEG is round-tripped through an in-memory buffer).

All work is vectorised (numpy / scipy); large convolutions go through the FFT so that one
call on a 256x256 crop takes a few milliseconds.

Summary of the models (``J`` clean image, ``I`` degraded image):

=============  ==========================================================================
noise          ``I = clip(J + n)``, ``n ~ N(0, (sigma/255)^2)`` i.i.d. per pixel and channel
low_light      ``x = scale * J^gamma``, ``I = clip(x + n)``, ``n ~ N(0, a*x + b^2)``
               (Poisson-Gaussian sensor noise: shot ``a``, read ``b``)
haze           ``I = J*t + A*(1 - t)``, ``t = exp(-beta * d)`` (atmospheric scattering)
rain           ``I = 1 - (1 - J)(1 - R)``: screen blend of a streak layer ``R`` (sparse seeds
               motion-blurred along the rain direction)
raindrop       ``I = (1 - alpha) J + alpha D``: adherent drops ``alpha`` showing a blurred,
               flipped, shrunk view ``D`` of the scene (lens-like refraction)
snow           ``I = 1 - (1 - J)(1 - v)(1 - S)``: flakes ``S`` (soft discs, several sizes)
               and a whitening veil ``v``
blur           ``I = J * k`` (per-channel convolution, reflected borders), ``k`` a motion
               or defocus kernel
jpeg           real JPEG encode/decode (PIL) at a given quality
=============  ==========================================================================
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage, signal

from src.tasks import check_task

# Kernels with at most this many taps are applied directly; larger ones through the FFT.
_DIRECT_CONV_MAX_TAPS = 25


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------
def _as_image(img: np.ndarray) -> np.ndarray:
    """Return ``img`` as a float32 ``(H, W, 3)`` array (a view when already float32)."""
    arr = np.asarray(img, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an image of shape (H, W, 3), got {arr.shape}")
    return arr


def _finish(img: np.ndarray) -> np.ndarray:
    """Clip to ``[0, 1]`` and return a new float32 array."""
    return np.clip(img, 0.0, 1.0).astype(np.float32, copy=False)


def _screen(img: np.ndarray, layer: np.ndarray) -> np.ndarray:
    """Screen blend ``1 - (1 - img)(1 - layer)``; ``layer`` is ``(H, W)`` or ``(H, W, 3)``."""
    if layer.ndim == 2:
        layer = layer[..., None]
    return 1.0 - (1.0 - img) * (1.0 - layer)


def _odd_kernel(kernel: np.ndarray) -> np.ndarray:
    """Zero-pad a 2-D kernel at the end of each axis so that both sizes are odd."""
    kh, kw = kernel.shape
    return np.pad(kernel, ((0, 1 - kh % 2), (0, 1 - kw % 2)))


def _convolve(arr: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve a ``(H, W)`` or ``(H, W, C)`` array spatially with a 2-D kernel.

    Borders are reflected (``d c b a | a b c d``, scipy's ``"reflect"``).  Small kernels are
    applied directly, large ones through the FFT (identical up to float rounding).
    """
    kernel = _odd_kernel(np.asarray(kernel, dtype=np.float32))
    kh, kw = kernel.shape
    kern = kernel if arr.ndim == 2 else kernel[..., None]
    if kernel.size <= _DIRECT_CONV_MAX_TAPS:
        return ndimage.convolve(arr, kern, mode="reflect")
    pad = [(kh // 2, kh // 2), (kw // 2, kw // 2)] + [(0, 0)] * (arr.ndim - 2)
    padded = np.pad(arr, pad, mode="symmetric")
    return signal.fftconvolve(padded, kern, mode="valid", axes=(0, 1)).astype(np.float32)


def _gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalised isotropic 2-D Gaussian kernel truncated at ``3 sigma``."""
    if sigma <= 0:
        return np.ones((1, 1), dtype=np.float32)
    r = max(1, int(np.ceil(3 * sigma)))
    x = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    k = np.outer(g, g)
    return (k / k.sum()).astype(np.float32)


def _sparse_seeds(shape: tuple[int, int], density: float, rng: np.random.Generator,
                  low: float = 0.5) -> np.ndarray:
    """Sparse seed map: each pixel is a seed with probability ``density``.

    Seed intensities are uniform in ``[low, 1]`` (derived from the same uniform draw:
    conditioned on ``u < density``, ``u / density`` is uniform), other pixels are 0.
    """
    u = rng.random(shape, dtype=np.float32)
    density = float(np.clip(density, 0.0, 1.0))
    if density == 0.0:
        return np.zeros(shape, dtype=np.float32)
    value = low + (1.0 - low) * (u / density)
    return np.where(u < density, value, 0.0).astype(np.float32)


def _bilinear_sample(img: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Bilinearly sample ``img`` (``H, W, C``) at float coordinates, clamped to the borders."""
    h, w = img.shape[:2]
    ys = np.clip(ys, 0, h - 1)
    xs = np.clip(xs, 0, w - 1)
    y0 = np.floor(ys).astype(np.intp)
    x0 = np.floor(xs).astype(np.intp)
    y1 = np.minimum(y0 + 1, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    wy = (ys - y0)[..., None].astype(np.float32)
    wx = (xs - x0)[..., None].astype(np.float32)
    top = img[y0, x0] * (1 - wx) + img[y0, x1] * wx
    bottom = img[y1, x0] * (1 - wx) + img[y1, x1] * wx
    return top * (1 - wy) + bottom * wy


def _upsample_matrix(n_out: int, cells: int) -> np.ndarray:
    """``(n_out, cells)`` matrix of cubic-spline upsampling weights (``ndimage.zoom``, order 3).

    Spline zoom is linear and separable, so ``M_y @ grid @ M_x.T`` equals zooming ``grid``
    while costing one small matrix product.
    """
    m = ndimage.zoom(np.eye(cells), (n_out / cells, 1), order=3, mode="nearest", grid_mode=True)
    m = np.pad(m, ((0, max(0, n_out - m.shape[0])), (0, 0)), mode="edge")
    return m[:n_out]


def _smooth_noise(height: int, width: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """Low-frequency noise in ``[0, 1]``: a ``cells x cells`` uniform grid, cubic-upsampled."""
    grid = rng.random((cells, cells))
    up = _upsample_matrix(height, cells) @ grid @ _upsample_matrix(width, cells).T
    lo, hi = up.min(), up.max()
    return (up - lo) / (hi - lo) if hi > lo else np.zeros_like(up)


# --------------------------------------------------------------------------------------
# noise, JPEG
# --------------------------------------------------------------------------------------
def gaussian_noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Additive white Gaussian noise: ``I = clip(J + n, 0, 1)``, ``n ~ N(0, (sigma / 255)^2)``.

    ``sigma`` is on the 0-255 scale (the standard test setting is ``sigma = 50``).
    """
    img = _as_image(img)
    n = rng.standard_normal(img.shape, dtype=np.float32)
    return _finish(img + n * np.float32(sigma / 255.0))


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Real JPEG compression artefacts (deterministic).

    The image is quantised to uint8 (``round(255 * clip(J, 0, 1))``), saved as JPEG with PIL
    at ``quality`` (1-95) into an in-memory buffer, decoded and rescaled to ``[0, 1]``.
    """
    img = _as_image(img)
    q8 = np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(q8).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as decoded:
        out = np.asarray(decoded.convert("RGB"), dtype=np.float32)
    return out / np.float32(255.0)


# --------------------------------------------------------------------------------------
# blur
# --------------------------------------------------------------------------------------
def motion_blur_kernel(size: int, angle_deg: float, rng: np.random.Generator | None = None,
                       shake: float = 0.1) -> np.ndarray:
    """Linear motion-blur kernel of length ``size`` pixels at ``angle_deg`` (sum 1).

    The kernel is a ``size x size`` (made odd) array holding a line segment through the
    centre, rasterised with bilinear splatting.  ``angle_deg`` is measured
    counter-clockwise from the +x axis as seen on screen (row 0 at the top): 0 is a
    horizontal streak, 90 a vertical one, 45 runs from bottom-left to top-right.

    With ``rng`` the camera path is made slightly non-linear: a smooth random lateral
    displacement (two sine modes) of amplitude at most ``shake * size`` pixels.
    """
    size = int(size)
    if size < 1:
        raise ValueError(f"motion blur size must be >= 1, got {size}")
    if size == 1:
        return np.ones((1, 1), dtype=np.float32)
    n = size | 1
    c = (n - 1) / 2.0
    s = np.linspace(0.0, 1.0, 8 * n)
    t = (s - 0.5) * (size - 1)
    offset = np.zeros_like(t)
    if rng is not None and shake > 0:
        amp = rng.uniform(-1.0, 1.0, size=2) * shake * size / 2.0
        offset = amp[0] * np.sin(np.pi * s) + amp[1] * np.sin(2 * np.pi * s)
    theta = np.deg2rad(angle_deg)
    cols = np.clip(c + t * np.cos(theta) - offset * np.sin(theta), 0, n - 1)
    rows = np.clip(c - t * np.sin(theta) - offset * np.cos(theta), 0, n - 1)
    return _splat(rows, cols, n)


def _splat(rows: np.ndarray, cols: np.ndarray, n: int) -> np.ndarray:
    """Accumulate unit-mass points into an ``n x n`` grid bilinearly; normalise to sum 1."""
    k = np.zeros((n, n), dtype=np.float64)
    r0 = np.minimum(np.floor(rows).astype(np.intp), n - 1)
    c0 = np.minimum(np.floor(cols).astype(np.intp), n - 1)
    fr, fc = rows - r0, cols - c0
    r1, c1 = np.minimum(r0 + 1, n - 1), np.minimum(c0 + 1, n - 1)
    np.add.at(k, (r0, c0), (1 - fr) * (1 - fc))
    np.add.at(k, (r0, c1), (1 - fr) * fc)
    np.add.at(k, (r1, c0), fr * (1 - fc))
    np.add.at(k, (r1, c1), fr * fc)
    return (k / k.sum()).astype(np.float32)


def defocus_kernel(radius: float) -> np.ndarray:
    """Defocus (disc / pillbox) kernel of radius ``radius`` pixels (sum 1).

    ``k(x, y) ∝ clip(radius + 0.5 - sqrt(x^2 + y^2), 0, 1)``: a disc with a one-pixel
    anti-aliased rim, on a ``(2 ceil(radius) + 1)^2`` grid.  ``radius <= 0`` is the identity.
    """
    if radius <= 0:
        return np.ones((1, 1), dtype=np.float32)
    r = int(np.ceil(radius))
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    k = np.clip(radius + 0.5 - np.hypot(x, y), 0.0, 1.0)
    return (k / k.sum()).astype(np.float32)


def blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Spatially invariant blur ``I = J * k``: each channel convolved with ``kernel``.

    Borders are reflected (half-sample symmetric).  Even-sized kernels are zero-padded to
    odd size first.  The kernel is used as given (normalise it to keep brightness).
    """
    img = _as_image(img)
    kernel = np.asarray(kernel, dtype=np.float32)
    if kernel.ndim != 2:
        raise ValueError(f"kernel must be 2-D, got shape {kernel.shape}")
    return _finish(_convolve(img, kernel))


# --------------------------------------------------------------------------------------
# low light
# --------------------------------------------------------------------------------------
def low_light(img: np.ndarray, gamma: float, scale: float, rng: np.random.Generator,
              read_noise: float = 0.01, shot_noise: float = 0.005) -> np.ndarray:
    """Low-light capture: darkening plus Poisson-Gaussian sensor noise.

    ``x = scale * J^gamma`` (gamma > 1 crushes the shadows, ``scale < 1`` lowers exposure),
    ``I = clip(x + n, 0, 1)`` with ``n ~ N(0, shot_noise * x + read_noise^2)``: the
    Gaussian approximation of Poisson shot noise (variance proportional to the signal, so
    std ∝ sqrt(signal)) plus signal-independent Gaussian read noise.
    """
    img = _as_image(img)
    x = np.float32(scale) * np.power(np.clip(img, 0.0, 1.0), np.float32(gamma))
    std = np.sqrt(np.float32(shot_noise) * x + np.float32(read_noise) ** 2)
    n = rng.standard_normal(img.shape, dtype=np.float32)
    return _finish(x + std * n)


# --------------------------------------------------------------------------------------
# haze
# --------------------------------------------------------------------------------------
def haze_transmission(depth: np.ndarray, beta: float) -> np.ndarray:
    """Transmission map ``t = exp(-beta * d)`` (Beer-Lambert) for a depth map ``d``."""
    return np.exp(-np.float32(beta) * np.asarray(depth, dtype=np.float32)).astype(np.float32)


def synthetic_depth(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth synthetic depth map in ``[0, 1]`` (1 = far), shape ``(height, width)``.

    A random, slightly tilted horizon line: everything at or above it is far (depth 1),
    below it depth falls to 0 at the bottom edge following ``1 - s^p`` (``s`` the relative
    distance below the horizon).  80 % of that layout plus 20 % smooth low-frequency noise,
    renormalised to ``[0, 1]``.
    """
    horizon = rng.uniform(0.15, 0.6)
    tilt = rng.uniform(-0.25, 0.25)
    power = rng.uniform(0.6, 1.5)
    y = np.linspace(0.0, 1.0, height, dtype=np.float64)[:, None]
    x = np.linspace(-0.5, 0.5, width, dtype=np.float64)[None, :]
    line = horizon + tilt * x
    below = np.clip((y - line) / np.maximum(1.0 - line, 1e-3), 0.0, 1.0)
    layout = 1.0 - below ** power
    noise = _smooth_noise(height, width, int(rng.integers(3, 7)), rng)
    depth = 0.8 * layout + 0.2 * noise
    lo, hi = depth.min(), depth.max()
    depth = (depth - lo) / (hi - lo) if hi > lo else np.zeros_like(depth)
    return depth.astype(np.float32)


def haze(img: np.ndarray, beta: float, airlight: float | Sequence[float],
         depth: np.ndarray | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
    """Haze by the atmospheric scattering model ``I = J * t + A * (1 - t)``, ``t = exp(-beta * d)``.

    ``airlight`` ``A`` is a scalar or an RGB triple; ``depth`` ``d`` is an ``(H, W)`` map (any
    non-negative scale; usually ``[0, 1]``).  When ``depth`` is None a smooth synthetic map
    is drawn with :func:`synthetic_depth`, which requires ``rng``.
    """
    img = _as_image(img)
    h, w = img.shape[:2]
    if depth is None:
        if rng is None:
            raise ValueError("haze: pass either a depth map or an rng to draw one")
        depth = synthetic_depth(h, w, rng)
    depth = np.asarray(depth, dtype=np.float32)
    if depth.shape != (h, w):
        raise ValueError(f"depth must have shape {(h, w)}, got {depth.shape}")
    t = haze_transmission(depth, beta)[..., None]
    a = np.asarray(airlight, dtype=np.float32).reshape(-1)
    return _finish(img * t + a * (1.0 - t))


# --------------------------------------------------------------------------------------
# rain streaks
# --------------------------------------------------------------------------------------
def rain(img: np.ndarray, rng: np.random.Generator, density: float = 0.01, length: int = 20,
         angle: float = 10.0, brightness: float = 0.8, width: float = 0.6) -> np.ndarray:
    """Rain streaks screen-blended onto the image: ``I = 1 - (1 - J)(1 - R)``.

    Streak layer ``R``: sparse seeds (each pixel a seed with probability ``density``,
    intensity uniform in ``[0.5, 1]``), convolved with a motion kernel of ``length`` pixels
    (softened across by a Gaussian of std ``width``), scaled so that a lone streak peaks at
    its seed intensity, clipped and multiplied by ``brightness``.  ``angle`` is in degrees
    from the vertical; positive values lean the streak tops to the right.
    """
    img = _as_image(img)
    h, w = img.shape[:2]
    kernel = motion_blur_kernel(length, 90.0 - angle)
    if width > 0:
        kernel = signal.convolve2d(kernel, _gaussian_kernel(width), mode="full")
    seeds = _sparse_seeds((h, w), density, rng)
    streaks = _convolve(seeds, kernel) / np.float32(kernel.max())
    layer = np.clip(streaks, 0.0, 1.0) * np.float32(brightness)
    return _finish(_screen(img, layer))


# --------------------------------------------------------------------------------------
# snow
# --------------------------------------------------------------------------------------
def snow(img: np.ndarray, rng: np.random.Generator, density: float = 0.004,
         sizes: Sequence[float] = (1.0, 2.0, 3.5), veil: float = 0.15,
         brightness: float = 0.95) -> np.ndarray:
    """Snowfall: flakes of several sizes plus a whitening veil.

    ``I = 1 - (1 - J)(1 - veil)(1 - S)``.  For each flake radius ``r`` in ``sizes`` a sparse
    seed map (density ``density * (sizes[0] / r)^2``: big flakes are rarer) is convolved with
    a soft disc (defocus disc of radius ``r`` blurred by a Gaussian of std ``r / 3``) scaled
    to peak at the seed intensity; ``S`` is the per-pixel maximum over sizes times
    ``brightness``.
    """
    img = _as_image(img)
    h, w = img.shape[:2]
    flakes = np.zeros((h, w), dtype=np.float32)
    for r in sizes:
        kernel = signal.convolve2d(defocus_kernel(r), _gaussian_kernel(r / 3.0), mode="full")
        seeds = _sparse_seeds((h, w), density * (sizes[0] / r) ** 2, rng, low=0.6)
        layer = _convolve(seeds, kernel) / np.float32(kernel.max())
        np.maximum(flakes, layer, out=flakes)
    flakes = np.clip(flakes, 0.0, 1.0) * np.float32(brightness)
    out = _screen(img, np.float32(veil) + (1.0 - np.float32(veil)) * flakes)
    return _finish(out)


# --------------------------------------------------------------------------------------
# adherent raindrops
# --------------------------------------------------------------------------------------
def raindrop(img: np.ndarray, rng: np.random.Generator, count: int = 15,
             radius: tuple[float, float] = (0.02, 0.07), blur_sigma: float = 2.5,
             zoom: tuple[float, float] = (0.4, 0.8), edge: float = 0.3,
             brightness: float = 0.08) -> np.ndarray:
    """Adherent raindrops (lens-like water drops on the glass / lens).

    Each of ``count`` drops is an ellipse (semi-axes ``r`` and ``r * aspect``,
    ``r = U(radius) * min(H, W)``, aspect in ``[0.7, 1]``, random orientation) with a soft
    alpha ``alpha = smoothstep(clip((1 - rho) / edge, 0, 1))``, ``rho`` the normalised
    elliptic radius.  Inside a drop the scene is refracted like through a ball lens: pixel
    ``p`` shows the Gaussian-blurred (std ``blur_sigma``) image at ``c - z (p - c) - (0, r/2)``
    (flipped, shrunk by ``z = U(zoom)``, looking slightly upward), brightened by
    ``brightness``.  Drops are composited in order: ``I = (1 - alpha) I + alpha D``.
    """
    img = _as_image(img)
    h, w = img.shape[:2]
    out = img.copy()
    if count <= 0:
        return _finish(out)
    blurred = ndimage.gaussian_filter(img, sigma=(blur_sigma, blur_sigma, 0), mode="reflect")
    base = min(h, w)
    cy = rng.uniform(0, h, count)
    cx = rng.uniform(0, w, count)
    ry = rng.uniform(radius[0], radius[1], count) * base
    rx = ry * rng.uniform(0.7, 1.0, count)
    rot = rng.uniform(0, np.pi, count)
    z = rng.uniform(zoom[0], zoom[1], count)
    for i in range(count):
        _composite_drop(out, blurred, cy[i], cx[i], ry[i], rx[i], rot[i], z[i], edge, brightness)
    return _finish(out)


def _composite_drop(out: np.ndarray, blurred: np.ndarray, cy: float, cx: float, ry: float,
                    rx: float, rot: float, z: float, edge: float, brightness: float) -> None:
    """Composite one refracting elliptic drop into ``out`` in place (on its bounding box)."""
    h, w = out.shape[:2]
    reach = max(ry, rx) + 1
    y0, y1 = max(0, int(cy - reach)), min(h, int(cy + reach) + 1)
    x0, x1 = max(0, int(cx - reach)), min(w, int(cx + reach) + 1)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(rot) + dy * np.sin(rot)
    v = -dx * np.sin(rot) + dy * np.cos(rot)
    rho = np.sqrt((u / rx) ** 2 + (v / ry) ** 2)
    a = np.clip((1.0 - rho) / max(edge, 1e-6), 0.0, 1.0)
    alpha = (a * a * (3.0 - 2.0 * a))[..., None]
    drop = _bilinear_sample(blurred, cy - z * dy - 0.5 * ry, cx - z * dx) * np.float32(1 + brightness)
    region = out[y0:y1, x0:x1]
    out[y0:y1, x0:x1] = region * (1.0 - alpha) + np.clip(drop, 0.0, 1.0) * alpha


# --------------------------------------------------------------------------------------
# parameter sampling and dispatch
# --------------------------------------------------------------------------------------
def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    """One uniform draw in ``[lo, hi)`` as a Python float."""
    return float(rng.uniform(lo, hi))


def _log_u(rng: np.random.Generator, lo: float, hi: float) -> float:
    """One log-uniform draw in ``[lo, hi)``: equal odds per octave (noise σ 15-25 gets 42 % of [15, 50], not 29 %)."""
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _blur_params(rng: np.random.Generator) -> dict[str, Any]:
    """Motion (odd length 7-21, any angle) or defocus (radius 1-4) with equal probability."""
    if rng.random() < 0.5:
        return {"kind": "motion", "size": int(rng.integers(3, 11)) * 2 + 1, "angle": _u(rng, 0.0, 180.0)}
    return {"kind": "defocus", "radius": _u(rng, 1.0, 4.0)}


_PARAM_SAMPLERS: dict[str, Callable[[np.random.Generator], dict[str, Any]]] = {
    "noise": lambda rng: {"sigma": _log_u(rng, 15.0, 50.0)},
    "jpeg": lambda rng: {"quality": int(rng.integers(10, 41))},
    "blur": _blur_params,
    "low_light": lambda rng: {
        "gamma": _u(rng, 1.5, 3.0), "scale": _u(rng, 0.1, 0.4),
        "read_noise": _u(rng, 0.002, 0.02), "shot_noise": _u(rng, 0.001, 0.01),
    },
    "haze": lambda rng: {"beta": _u(rng, 0.6, 2.0), "airlight": _u(rng, 0.7, 1.0)},
    "rain": lambda rng: {
        "density": _u(rng, 0.004, 0.02), "length": int(rng.integers(10, 31)),
        "angle": _u(rng, -30.0, 30.0), "brightness": _u(rng, 0.6, 0.95), "width": _u(rng, 0.4, 1.2),
    },
    "snow": lambda rng: {
        "density": _u(rng, 0.002, 0.008), "veil": _u(rng, 0.05, 0.3), "brightness": _u(rng, 0.8, 1.0),
    },
    "raindrop": lambda rng: {"count": int(rng.integers(8, 31)), "blur_sigma": _u(rng, 1.5, 4.0)},
}


def random_params(task: str, rng: np.random.Generator) -> dict[str, Any]:
    """Draw parameters for ``task`` (plain Python numbers / strings; keyword args of :func:`degrade`).

    Ranges (uniform, except noise):

    * noise: ``sigma`` in [15, 50] (0-255 scale), log-uniform: the light noise most photos have (σ 15-25) is
      42 % of the draws, not the 29 % of a uniform draw
    * jpeg: ``quality`` integer in [10, 40]
    * blur: 50 % ``kind="motion"`` with odd ``size`` in [7, 21] and ``angle`` in [0, 180) deg,
      50 % ``kind="defocus"`` with ``radius`` in [1, 4] px
    * low_light: ``gamma`` in [1.5, 3], ``scale`` in [0.1, 0.4], ``read_noise`` in
      [0.002, 0.02], ``shot_noise`` in [0.001, 0.01]
    * haze: ``beta`` in [0.6, 2.0], ``airlight`` in [0.7, 1.0] (depth drawn in :func:`haze`)
    * rain: ``density`` in [0.004, 0.02], ``length`` integer in [10, 30] px, ``angle`` in
      [-30, 30] deg, ``brightness`` in [0.6, 0.95], ``width`` in [0.4, 1.2] px
    * snow: ``density`` in [0.002, 0.008], ``veil`` in [0.05, 0.3], ``brightness`` in [0.8, 1]
    * raindrop: ``count`` integer in [8, 30], ``blur_sigma`` in [1.5, 4] px
    """
    check_task(task)
    return _PARAM_SAMPLERS[task](rng)


def _blur_task(img: np.ndarray, rng: np.random.Generator, kind: str = "motion", size: int = 15,
               angle: float = 0.0, radius: float = 2.0, shake: float = 0.1,
               kernel: np.ndarray | None = None) -> np.ndarray:
    """Blur for :func:`degrade`: an explicit ``kernel``, or a motion / defocus kernel.

    Motion kernels get ``rng``-driven camera shake (see :func:`motion_blur_kernel`).
    """
    if kernel is None:
        if kind == "motion":
            kernel = motion_blur_kernel(size, angle, rng=rng, shake=shake)
        elif kind == "defocus":
            kernel = defocus_kernel(radius)
        else:
            raise ValueError(f"unknown blur kind {kind!r}; expected 'motion' or 'defocus'")
    return blur(img, kernel)


_APPLY: dict[str, Callable[..., np.ndarray]] = {
    "noise": lambda img, rng, sigma=25.0: gaussian_noise(img, sigma, rng),
    "jpeg": lambda img, rng, quality=25: jpeg(img, quality),
    "blur": _blur_task,
    "low_light": lambda img, rng, gamma=2.0, scale=0.25, **kw: low_light(img, gamma, scale, rng, **kw),
    "haze": lambda img, rng, beta=1.2, airlight=0.85, depth=None: haze(img, beta, airlight, depth, rng),
    "rain": lambda img, rng, **kw: rain(img, rng, **kw),
    "snow": lambda img, rng, **kw: snow(img, rng, **kw),
    "raindrop": lambda img, rng, **kw: raindrop(img, rng, **kw),
}


def degrade(img: np.ndarray, task: str, rng: np.random.Generator, **params: Any) -> np.ndarray:
    """Apply one degradation ``task`` (one of :data:`TASKS`) to ``img``.

    With no ``params`` all parameters are drawn with :func:`random_params` from ``rng``;
    otherwise ``params`` are used as given and missing ones take the function defaults
    (mid-range values).  Randomness inside the degradation also comes from ``rng``.
    Raises ``ValueError`` for an unknown task.
    """
    check_task(task)
    if not params:
        params = random_params(task, rng)
    return _APPLY[task](img, rng, **params)


def compose(img: np.ndarray, tasks: Iterable[str | tuple[str, dict[str, Any]]],
            rng: np.random.Generator) -> np.ndarray:
    """Apply several degradations **in the order given** (e.g. ``["noise", "blur"]`` adds
    noise and then blurs it, which differs from ``["blur", "noise"]``).

    Each entry is a task name (parameters drawn with :func:`random_params`) or a
    ``(task, params)`` pair.  All randomness is drawn from ``rng`` sequentially.
    """
    out = _as_image(img).copy()
    for entry in tasks:
        task, params = (entry, {}) if isinstance(entry, str) else entry
        out = degrade(out, task, rng, **params)
    return out
