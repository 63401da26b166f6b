"""src.utils.padding: the one pad-to-a-multiple of the suite (the Restorer, the Diff-Restorer stages)."""

import torch

from src.utils.padding import pad_to_multiple


def test_pad_to_multiple_reflects_or_replicates_and_crops_back():
    x = torch.rand(3, 37, 53)
    y, (h, w) = pad_to_multiple(x, 16)
    assert y.shape == (3, 48, 64) and (h, w) == (37, 53) and torch.equal(y[:, :h, :w], x)
    assert torch.equal(y[:, 37, :53], x[:, 35])  # reflect: row 37 mirrors row 35
    tiny = torch.rand(1, 3, 2, 5)
    z, (h, w) = pad_to_multiple(tiny, 16)
    assert z.shape == (1, 3, 16, 16) and torch.equal(z[..., :2, :5], tiny)  # too small to reflect: replicate
    same, _ = pad_to_multiple(torch.rand(3, 32, 16), 16)
    assert same.shape == (3, 32, 16)
    batch = torch.rand(2, 3, 9, 9)
    padded, size = pad_to_multiple(batch, 4)
    assert padded.shape == (2, 3, 12, 12) and size == (9, 9) and torch.equal(padded[..., :9, :9], batch)
