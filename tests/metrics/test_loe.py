"""LOE on synthetic images whose lightness order relations are known."""

import numpy as np
import pytest
import torch

from src.metrics.loe import lightness, loe, loe_sample_grid


def _image(h=60, w=80, seed=0, high=120):
    return np.random.default_rng(seed).integers(0, high, size=(h, w, 3), dtype=np.uint8)


def test_lightness_is_the_max_over_rgb():
    img = np.array([[[10, 200, 30], [0, 0, 0]]], dtype=np.uint8)
    assert lightness(img).tolist() == [[200.0, 0.0]]
    assert lightness(torch.tensor([[[1.0]], [[0.5]], [[0.0]]])).tolist() == [[255.0]]  # CxHxW float in [0, 1]


def test_identity_and_strictly_increasing_tone_curves_give_zero():
    img = _image()
    assert loe(img, img) == 0.0
    brighter = (2 * img.astype(np.int32) + 7).astype(np.uint8)  # injective on 0..119, order preserved
    assert loe(img, brighter) == 0.0
    curve = np.round(255 * (1 - (1 - img / 255.0) ** 2)).astype(np.uint8)  # slope > 1 below 128: injective
    assert len(np.unique(curve)) == len(np.unique(img))
    assert loe(img, curve) == 0.0


def test_order_reversal_flips_every_pair_of_different_lightness():
    img = _image(seed=1)
    reversed_ = 255 - img
    # max(255 - c) = 255 - min(c), so use a grey image for an exact reversal of the lightness order
    grey = np.repeat(img[..., :1], 3, axis=2)
    value = loe(grey, 255 - grey)
    rows, cols = loe_sample_grid(*grey.shape[:2])
    sampled = grey[np.ix_(rows, cols)][..., 0].ravel()
    expected = np.mean([(sampled != s).sum() for s in sampled])  # pairs with a different lightness, per pixel
    assert value == pytest.approx(expected)
    assert value > 0.9 * sampled.size  # nearly every relation broken
    assert loe(img, reversed_) > 100


def test_swapping_two_levels_in_a_tiny_image():
    ref = np.array([[10, 20], [30, 40]], dtype=np.uint8)[..., None].repeat(3, axis=2)
    enh = np.array([[10, 30], [20, 40]], dtype=np.uint8)[..., None].repeat(3, axis=2)
    # pixels 20 and 30 each see one flipped relation (with each other); 10 and 40 see none: mean 2/4
    assert loe(ref, enh) == 0.5


def test_downsampling_keeps_about_50_samples_on_the_short_side_like_the_matlab_code():
    rows, cols = loe_sample_grid(400, 600)  # step 8: 1-based 8, 16, ..., 400
    assert (len(rows), len(cols)) == (50, 75)
    assert rows[0] == 7 and rows[-1] == 399
    rows, cols = loe_sample_grid(120, 130)  # step 2
    assert (len(rows), len(cols)) == (60, 65)
    rows, cols = loe_sample_grid(32, 40)  # smaller than 50: every pixel
    assert (len(rows), len(cols)) == (32, 40)


def test_matches_a_brute_force_count_on_the_sampled_pixels():
    rng = np.random.default_rng(3)
    ref = rng.integers(0, 256, size=(41, 45, 3), dtype=np.uint8)
    enh = np.clip(ref.astype(int) + rng.integers(-40, 40, size=ref.shape), 0, 255).astype(np.uint8)
    rows, cols = loe_sample_grid(41, 45, block=20)  # step 2: 20 x 22 samples
    a = ref.max(axis=2)[np.ix_(rows, cols)].ravel().tolist()
    b = enh.max(axis=2)[np.ix_(rows, cols)].ravel().tolist()
    brute = sum((a[y] >= a[x]) != (b[y] >= b[x]) for x in range(len(a)) for y in range(len(a))) / len(a)
    assert len(a) == 440
    assert loe(ref, enh, block=20, chunk=97) == pytest.approx(brute)


def test_size_mismatch_is_an_error():
    with pytest.raises(ValueError, match="sizes differ"):
        loe(_image(60, 80), _image(60, 81))
