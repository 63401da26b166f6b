"""Image I/O for restoration (src/utils/images.py) and atomic writes (src/utils/atomic.py)."""

import io
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from src.utils.atomic import atomic_open, atomic_write_bytes, stale_temporaries
from src.utils.images import (
    ImageReadError,
    apply_orientation,
    encode_png16,
    read_image,
    write_image,
)
from tests.conftest import ROOT

RNG = np.random.default_rng(0)


def _u8(*shape):
    return RNG.integers(0, 256, shape).astype(np.uint8)


def _u16(*shape):
    return RNG.integers(0, 65536, shape).astype(np.uint16)


def _png_bit_depth(path) -> int:
    return path.read_bytes()[24]


def _roundtrip(tmp_path, name, make):
    """Write an input with ``make(path)``, read it, write its (unchanged) colours back; returns (loaded, out)."""
    src = tmp_path / name
    make(src)
    loaded = read_image(src)
    out = tmp_path / "out" / name
    out.parent.mkdir(exist_ok=True)
    write_image(out, loaded.rgb, loaded)
    return loaded, out


def test_rgb8_roundtrip_is_lossless(tmp_path):
    a = _u8(13, 21, 3)
    loaded, out = _roundtrip(tmp_path, "rgb.png", lambda p: Image.fromarray(a).save(p))
    assert loaded.rgb.dtype == np.float32 and loaded.rgb.shape == (13, 21, 3) and loaded.bit_depth == 8
    assert np.array_equal(np.asarray(Image.open(out)), a)


def test_grayscale_is_replicated_then_written_back_as_L(tmp_path):
    g = _u8(9, 17)
    loaded, out = _roundtrip(tmp_path, "gray.png", lambda p: Image.fromarray(g).save(p))
    assert loaded.grayscale and np.array_equal(loaded.rgb[..., 0], loaded.rgb[..., 2])
    with Image.open(out) as im:
        assert im.mode == "L" and np.array_equal(np.asarray(im), g)


def test_bilevel_image_is_read_as_gray(tmp_path):
    loaded, out = _roundtrip(tmp_path, "bw.png", lambda p: Image.fromarray(_u8(8, 8) > 127).save(p))
    assert loaded.grayscale and Image.open(out).mode == "L"


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_kept_exactly(tmp_path, mode):
    arr = _u8(11, 7, 4 if mode == "RGBA" else 2)
    loaded, _ = _roundtrip(tmp_path, "a.png", lambda p: Image.fromarray(arr, mode).save(p))
    restored = 1 - loaded.rgb  # a "restoration" that changes every colour
    out = tmp_path / "inv.png"
    write_image(out, restored, loaded)
    with Image.open(out) as im:
        assert im.mode == mode
        got = np.asarray(im)
    assert np.array_equal(got[..., -1], arr[..., -1])  # alpha untouched
    assert np.array_equal(got[..., 0], 255 - arr[..., 0])


def test_palette_with_transparency_becomes_rgba(tmp_path):
    def make(p):
        im = Image.fromarray(_u8(6, 6, 3)).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
        im.save(p, transparency=0)

    loaded, out = _roundtrip(tmp_path, "pal.png", make)
    assert loaded.alpha is not None and any("palette" in n for n in loaded.notes)
    assert Image.open(out).mode == "RGBA"


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16bit_png_keeps_full_precision_and_bit_depth(tmp_path, channels):
    a = _u16(10, 14, channels)
    loaded, out = _roundtrip(tmp_path, "deep.png", lambda p: p.write_bytes(encode_png16(a)))
    assert loaded.bit_depth == 16 and loaded.grayscale == (channels <= 2)
    assert (loaded.alpha is not None) == (channels in (2, 4))
    assert _png_bit_depth(out) == 16
    assert out.read_bytes()[25] == {1: 0, 2: 4, 3: 2, 4: 6}[channels]  # same colour type
    again = read_image(out)
    assert np.array_equal(np.rint(again.rgb * 65535), np.rint(loaded.rgb * 65535))
    expected = a[..., :3] if channels >= 3 else np.repeat(a[..., :1], 3, axis=2)
    assert np.array_equal(np.rint(loaded.rgb * 65535).astype(np.uint16), expected)  # values not multiple of 257


def test_16bit_gray_png_written_by_pillow(tmp_path):
    g = _u16(12, 9)
    loaded, out = _roundtrip(tmp_path, "g16.png", lambda p: Image.fromarray(g).save(p))
    assert loaded.bit_depth == 16 and loaded.grayscale and _png_bit_depth(out) == 16
    assert np.array_equal(np.asarray(Image.open(out)), g)


@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_tiff_roundtrip(tmp_path, channels):
    import tifffile

    a = _u16(8, 10, channels)
    extra = {"extrasamples": ["unassalpha"]} if channels == 4 else {}
    loaded, out = _roundtrip(tmp_path, "deep.tif", lambda p: tifffile.imwrite(p, a, photometric="rgb", **extra))
    assert loaded.bit_depth == 16
    assert np.array_equal(tifffile.imread(out), a)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_and_output_is_upright_without_tag(tmp_path, orientation):
    arr = _u8(6, 10, 3)
    src = tmp_path / "exif.png"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(arr).save(src, exif=exif)
    with Image.open(src) as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    loaded = read_image(src)
    assert loaded.orientation == orientation
    assert np.array_equal(np.rint(loaded.rgb * 255).astype(np.uint8), expected)
    assert np.array_equal(apply_orientation(arr, orientation), expected)  # the 16-bit path's numpy version
    out = tmp_path / "upright.png"
    write_image(out, loaded.rgb, loaded)
    with Image.open(out) as im:
        assert im.size == (expected.shape[1], expected.shape[0])
        assert im.getexif().get(0x0112) is None


def test_icc_profile_is_kept(tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    loaded, out = _roundtrip(tmp_path, "icc.png", lambda p: Image.fromarray(_u8(4, 4, 3)).save(p, icc_profile=icc))
    assert Image.open(out).info.get("icc_profile") == icc


def test_jpeg_keeps_name_size_and_notes_what_it_cannot_store(tmp_path):
    loaded = read_image(_save(tmp_path / "a.png", Image.fromarray(_u8(9, 13, 4), "RGBA")))
    notes = write_image(tmp_path / "a.jpg", loaded.rgb, loaded)
    assert any("alpha dropped" in n for n in notes)
    with Image.open(tmp_path / "a.jpg") as im:
        assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (13, 9))


def test_multiframe_uses_first_frame(tmp_path):
    frames = [Image.fromarray(_u8(5, 5, 3)) for _ in range(3)]
    src = tmp_path / "anim.gif"
    frames[0].save(src, save_all=True, append_images=frames[1:])
    assert any("3 frames" in n for n in read_image(src).notes)


def _save(path, image):
    image.save(path)
    return path


# ------------------------------------------------------------------------------------------------ bad inputs
def _truncated_png(p):
    buf = io.BytesIO()
    Image.fromarray(_u8(64, 64, 3)).save(buf, "PNG")
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


def _truncated_jpeg(p):
    buf = io.BytesIO()
    Image.fromarray(_u8(64, 64, 3)).save(buf, "JPEG")
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


BAD = {
    "missing.png": (None, "no such file"),
    "text.png": (lambda p: p.write_text("not an image"), "not an image"),
    "empty.jpg": (lambda p: p.write_bytes(b""), "not an image"),
    "notes.txt": (lambda p: p.write_text("hello"), "not an image"),
    "half.png": (_truncated_png, "truncated or corrupt"),
    "half.jpg": (_truncated_jpeg, "truncated or corrupt"),
    "float.tif": (lambda p: Image.fromarray(np.zeros((4, 4), np.float32)).save(p), "unsupported image mode 'F'"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_inputs_raise_a_one_line_reason(tmp_path, name):
    make, reason = BAD[name]
    path = tmp_path / name
    if make:
        make(path)
    with pytest.raises(ImageReadError, match=reason) as info:
        read_image(path)
    assert info.value.path == str(path) and "\n" not in str(info.value)


def test_folder_and_oversized_images_are_refused(tmp_path):
    with pytest.raises(ImageReadError, match="is a folder"):
        read_image(tmp_path)
    big = _save(tmp_path / "big.png", Image.fromarray(_u8(40, 50, 3)))
    with pytest.raises(ImageReadError, match="2,000 pixels is more than the limit of 1,000"):
        read_image(big, max_pixels=1000)
    assert read_image(big, max_pixels=None).width == 50


def test_write_checks_size_and_never_clobbers_when_asked(tmp_path):
    loaded = read_image(_save(tmp_path / "a.png", Image.fromarray(_u8(4, 6, 3))))
    with pytest.raises(ValueError, match="restored image is 5×4"):
        write_image(tmp_path / "b.png", np.zeros((4, 5, 3), np.float32), loaded)
    (tmp_path / "c.png").write_bytes(b"keep me")
    with pytest.raises(FileExistsError):
        write_image(tmp_path / "c.png", loaded.rgb, loaded, overwrite=False)
    assert (tmp_path / "c.png").read_bytes() == b"keep me"
    with pytest.raises(ValueError, match="cannot write images with extension"):
        write_image(tmp_path / "d.xyz", loaded.rgb, loaded)


# ------------------------------------------------------------------------------------------------ atomic writes
def test_atomic_write_failure_leaves_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.png"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError), atomic_open(target) as f:
        f.write(b"new but incomplete")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["out.png"]
    assert oct(target.stat().st_mode & 0o777) != oct(0o600)  # normal permissions, not mkstemp's 0600


WRITER = """
import sys, time
from src.utils.atomic import atomic_open
with atomic_open(sys.argv[1]) as f:
    f.write(b"x" * 1_000_000)
    f.flush()
    open(sys.argv[2], "w").close()
    time.sleep(60)
"""


def test_sigkill_during_an_atomic_write_leaves_no_truncated_file(tmp_path):
    target, ready = tmp_path / "image.png", tmp_path / "ready"
    target.write_bytes(b"previous complete file")
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target), str(ready)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert target.read_bytes() == b"previous complete file"
    leftovers = stale_temporaries(tmp_path)
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".image.png.")  # hidden, never taken as an input
