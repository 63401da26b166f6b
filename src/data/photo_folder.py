"""Make a folder of clean photos for ``data=folder`` from what this machine can install: Debian's packages.

    python -m src.data.photo_folder --out data/photos     # ~200 MB of downloads, ~40 photos, ~1 min

No dataset can be downloaded here, but two Debian packages ship real, freely licensed photographs:
``plasma-workspace-wallpapers`` (KDE's photographic wallpapers, 2560×1600) and ``opencv-doc`` (OpenCV's sample
photos). This fetches both with ``apt-get download`` (no install, no root needed beyond apt's cache), unpacks them
with ``dpkg -x`` into a temporary folder, and copies the photographs listed below (illustrations, logos, charts and
synthetic images are left out) together with the scikit-image photos of the built-in training set. The
photos used to judge restoration (``benchmarks/unseen_photos.py``: matplotlib's, scikit-learn's and the built-in
held-out ones) are not among them. The shipped DiffUIR-T weights were trained on this folder
(``conf/experiment/diffuir_t_photos.yaml``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

# package -> (folder inside the package, {file in that folder: name in the output folder})
PLASMA = ("usr/share/wallpapers", {
    f"{n}/contents/images/{size}": f"plasma_{n}{Path(size).suffix}" for n, size in (
        ("Autumn", "2560x1600.jpg"), ("BytheWater", "2560x1600.jpg"), ("ColdRipple", "2560x1600.jpg"),
        ("ColorfulCups", "2560x1600.jpg"), ("DarkestHour", "2560x1600.jpg"), ("EveningGlow", "2560x1600.jpg"),
        ("FallenLeaf", "2560x1600.jpg"), ("Grey", "2560x1600.jpg"), ("Kite", "2560x1600.jpg"),
        ("OneStandsOut", "2560x1600.jpg"), ("Path", "2560x1600.jpg"), ("summer_1am", "2560x1600.jpg"),
        ("Volna", "5120x2880.jpg"))})
OPENCV = ("usr/share/doc/opencv-doc/examples/data", {
    f: f"opencv_{f}" for f in (
        "aero1.jpg", "aero3.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "basketball1.png", "board.jpg",
        "box_in_scene.png", "building.jpg", "butterfly.jpg", "chicky_512.png", "ela_original.jpg", "fruits.jpg",
        "graf1.png", "home.jpg", "leuvenA.jpg", "messi5.jpg", "orange.jpg", "rubberwhale1.png", "smarties.png",
        "squirrel_cls.jpg")})
PACKAGES = {"plasma-workspace-wallpapers": PLASMA, "opencv-doc": OPENCV}
# scikit-image photos of the built-in training set (src.data.builtin.TRAIN_IMAGES minus the microscope/space ones)
SKIMAGE = ("astronaut", "coffee", "rocket", "brick", "grass", "gravel")


def _run(cmd: list[str], cwd: Path) -> None:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {done.returncode}): {done.stderr.strip()[-400:]}\n"
                           "This needs Debian's apt-get and dpkg (run 'apt-get update' first), or make the folder "
                           "from your own photos instead: any folder of clean images works with data=folder.")


def make_photo_folder(out: Path, packages: bool = True) -> list[Path]:
    """Write the photos to ``out`` (created); returns the files written."""
    from src.data.builtin import load_builtin_image

    out.mkdir(parents=True, exist_ok=True)
    written = []
    if packages:
        if not shutil.which("apt-get") or not shutil.which("dpkg"):
            raise RuntimeError("apt-get/dpkg not found: this builder needs a Debian-based machine")
        with tempfile.TemporaryDirectory(prefix="uir-photos-") as tmp:
            tmp = Path(tmp)
            for package, (folder, files) in PACKAGES.items():
                print(f"apt-get download {package} ...", flush=True)
                _run(["apt-get", "download", "-q", package], tmp)
                deb = next(tmp.glob(f"{package}_*.deb"))
                _run(["dpkg", "-x", deb.name, "x"], tmp)
                for src, name in files.items():
                    path = (tmp / "x" / folder / src).resolve()
                    if not path.is_file():
                        warnings.warn(f"{package}: {folder}/{src} not in this version of the package; skipped",
                                      stacklevel=1)
                        continue
                    shutil.copyfile(path, out / name)
                    written.append(out / name)
    from PIL import Image

    for name in SKIMAGE:
        img = (load_builtin_image(name) * 255 + 0.5).astype("uint8")
        Image.fromarray(img).save(out / f"skimage_{name}.png")
        written.append(out / f"skimage_{name}.png")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="data/photos", help="output folder (default data/photos)")
    parser.add_argument("--no-packages", action="store_true", help="only the scikit-image photos (no apt-get)")
    args = parser.parse_args(argv)
    try:
        files = make_photo_folder(Path(args.out), packages=not args.no_packages)
    except (RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{len(files)} photos in {args.out}/  (train: python -m src.train experiment=diffuir_t_photos "
          f"data.root={args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
