"""Small helpers over torch.distributed used inside Lightning hooks (no-ops in single-process runs)."""

from __future__ import annotations

import torch.distributed as dist


def gather_objects(items: list) -> list:
    """Concatenate a Python list from every rank (every rank receives the whole list)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(items)
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, items)
    return [x for part in gathered for x in part]
