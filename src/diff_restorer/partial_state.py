"""Checkpoints that hold only what a stage trains: the frozen SD / CLIP / VGG weights are re-read from their files."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn
from torch.nn.modules.module import _IncompatibleKeys


class PartialStateDictMixin:
    """For a LightningModule with ``saved_prefixes`` (state-dict key prefixes kept in checkpoints) and
    ``frozen_modules()`` (kept in eval mode whatever the trainer asks)."""

    saved_prefixes: tuple[str, ...]

    def frozen_modules(self) -> list[nn.Module]:
        raise TypeError(f"{type(self).__name__} must define frozen_modules()")

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.frozen_modules():
            m.eval()
        return self

    def state_dict(self, *args, destination=None, prefix: str = "", keep_vars: bool = False):
        """Only the saved parts (``saved_prefixes``)."""
        full = super().state_dict(*args, prefix=prefix, keep_vars=keep_vars)
        kept = OrderedDict((k, v) for k, v in full.items() if k[len(prefix):].startswith(self.saved_prefixes))
        if hasattr(full, "_metadata"):
            kept._metadata = full._metadata
        if destination is None:
            return kept
        destination.update(kept)
        return destination

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load a saved-parts state dict (frozen weights in it, as from a full state dict, load too)."""
        expected = set(self.state_dict().keys())
        known = set(super().state_dict().keys())
        missing, unexpected = sorted(expected - set(state_dict)), sorted(set(state_dict) - known)
        if strict and (missing or unexpected):
            raise RuntimeError(f"Error(s) loading a {type(self).__name__} state dict: missing keys "
                               f"{missing[:10]}{'…' if len(missing) > 10 else ''}, unexpected keys "
                               f"{unexpected[:10]}{'…' if len(unexpected) > 10 else ''}")
        super().load_state_dict(state_dict, strict=False, assign=assign)
        return _IncompatibleKeys(missing, unexpected)
