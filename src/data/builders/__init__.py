"""Dataset builders: one module per dataset family, each scanning that dataset's published folder layout (and
DiffUIR's copy where it differs) and pairing degraded with reference images by name.

:data:`BUILDERS` maps the name used on the command line (``python -m src.data.manifests build <name> --root ...``)
to a :class:`~src.data.builders.common.Builder`; ``splits`` are the splits every complete copy of the dataset has (a
missing one fails the build unless ``--skip-missing``). Layout assumptions are in each builder's docstring, its
``layout`` text (``python -m src.data.manifests list``) and ``data_manifests/README.md``.
"""

from __future__ import annotations

from src.data.builders import blur, clean, lowlight, rain, raindrop, reside, snow, udc
from src.data.builders.common import Builder

BUILDERS: dict[str, Builder] = {b.name: b for b in (
    # Diff-Restorer's training sources (and DiffUIR's sets where they coincide)
    Builder("div2k", clean.build_div2k, "DIV2K HR images, clean (noise and JPEG synthesised)", clean.DIV2K_LAYOUT),
    Builder("flickr2k", clean.build_flickr2k, "Flickr2K HR images, clean (noise and JPEG synthesised)",
            clean.FLICKR2K_LAYOUT, splits=("train",)),
    Builder("lol", lowlight.build_lol, "LOL low-light pairs (both papers)", lowlight.LOL_LAYOUT,
            splits=("train", "test")),
    Builder("reside", reside.build_reside, "RESIDE OTS / ITS / SOTS / RTTS dehazing sets", reside.RESIDE_LAYOUT),
    Builder("rain1400", rain.build_rain1400, "Rain1400 (DDN) rain-streak pairs", rain.RAIN1400_LAYOUT,
            splits=("train", "test")),
    Builder("raindrop", raindrop.build_raindrop, "Raindrop (AttentiveGAN) pairs", raindrop.RAINDROP_LAYOUT,
            splits=("train", "test_a")),
    Builder("snow100k", snow.build_snow100k, "Snow100K train, Snow100K-S/M/L tests, realistic (no reference)",
            snow.SNOW100K_LAYOUT),
    Builder("gopro", blur.build_gopro, "GoPro motion-blur pairs (both papers)", blur.GOPRO_LAYOUT,
            splits=("train", "test")),
    # Diff-Restorer's real-world tests (no reference)
    Builder("realsnow", snow.build_realsnow, "RealSnow real snowy images", snow.REALSNOW_LAYOUT, splits=("test",)),
    Builder("rtts", reside.build_rtts, "RTTS real hazy images (no reference)", reside.RTTS_LAYOUT, splits=("test",)),
    # DiffUIR's sets
    Builder("rain_merged", rain.build_rain_merged,
            "merged deraining sets: Rain13K train, Rain100H/L, Test100/1200/2800", rain.MERGED_LAYOUT,
            splits=("train", *(f"test_{s}" for s in rain.MERGED_TEST_SETS))),
    Builder("hide", blur.build_hide, "HIDE deblurring test (zero-shot)", blur.HIDE_LAYOUT, splits=("test",)),
    Builder("realblur_j", blur.build_realblur_j, "RealBlur-J (zero-shot)", blur.REALBLUR_J_LAYOUT),
    Builder("realblur_r", blur.build_realblur_r, "RealBlur-R (zero-shot)", blur.REALBLUR_R_LAYOUT),
    Builder("mef", lowlight.build_mef, "MEF real low-light images (no reference)", lowlight.MEF_LAYOUT,
            splits=("test",)),
    Builder("npe", lowlight.build_npe, "NPE real low-light images (no reference)", lowlight.NPE_LAYOUT,
            splits=("test",)),
    Builder("dicm", lowlight.build_dicm, "DICM real low-light images (no reference)", lowlight.DICM_LAYOUT,
            splits=("test",)),
    Builder("practical", rain.build_practical, "Practical real rainy images (no reference)", rain.PRACTICAL_LAYOUT,
            splits=("test",)),
    Builder("toled", udc.build_toled, "TOLED under-display camera pairs (unknown task)", udc.TOLED_LAYOUT),
    Builder("poled", udc.build_poled, "POLED under-display camera pairs (unknown task)", udc.POLED_LAYOUT),
)}


def get_builder(name: str) -> Builder:
    """The builder called ``name``; ``KeyError`` listing the known ones otherwise."""
    try:
        return BUILDERS[name.lower()]
    except KeyError:
        raise KeyError(f"no dataset builder {name!r}; known: {', '.join(BUILDERS)}") from None


__all__ = ["BUILDERS", "Builder", "get_builder"]
