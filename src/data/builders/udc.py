"""Under-display camera sets TOLED and POLED (Zhou et al., CVPR 2021): DiffUIR's unknown-task generalisation.

Their degradation (diffraction blur, with low light and noise for POLED) is none of the eight tasks, so rows get the
task ``unknown``; the DataModules label them with a configurable task (``unknown_task``, default ``blur``).
"""

from __future__ import annotations

import os

from src.data.builders.common import BuildContext, BuildResult, find_dir, layout_problem, pair_dirs

UDC_LAYOUT = """\
<root>/{name}/{{LQ,HQ}}/<name>.png          -> {key}_test   (30 validation pairs)
<root>/{name}/<split>/{{LQ,HQ}}/<name>.png  -> {key}_<split>
(<root> may also be the {name} folder itself)"""


def _udc_builder(name: str, source: str):
    key = name.lower()
    layout = UDC_LAYOUT.format(name=name, key=key)

    def build(ctx: BuildContext) -> BuildResult:
        res = BuildResult()
        base = ctx.root if find_dir(ctx.root, "LQ") or ctx.root.name.lower() == key else find_dir(ctx.root, name)
        if base is None:
            res.problems.append(layout_problem(ctx, layout))
            return res
        lq, hq = find_dir(base, "LQ"), find_dir(base, "HQ")
        if lq and hq:
            res.add("test", *pair_dirs(ctx, f"{source}", lq, hq, "unknown", source))
        else:
            for entry in sorted(os.scandir(base), key=lambda e: e.name):
                lq, hq = find_dir(base, f"{entry.name}/LQ"), find_dir(base, f"{entry.name}/HQ")
                if entry.is_dir() and lq and hq:
                    res.add(entry.name.lower(), *pair_dirs(ctx, f"{source} {entry.name}", lq, hq, "unknown", source))
        if not res.found and not res.problems:
            res.problems.append(layout_problem(ctx, layout))
        return res

    build.__doc__ = (f"{source}: under-display camera pairs ``LQ/<name>`` ↔ ``HQ/<name>`` (identical names), "
                     f"task ``unknown``, source ``{source}``.\n\nLayouts::\n\n"
                     + "\n".join("    " + line for line in layout.splitlines()))
    return build, layout


build_toled, TOLED_LAYOUT = _udc_builder("Toled", "TOLED")
build_poled, POLED_LAYOUT = _udc_builder("Poled", "POLED")
