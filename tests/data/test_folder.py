import numpy as np
import pytest
import torch
from PIL import Image

from src.data.folder import FolderDataModule, is_heldout, list_photos, load_photo, split_photos
from src.tasks import TASKS


def _photos(root, n=6, size=(96, 80)):
    rng = np.random.default_rng(0)
    (root / "sub" / "deeper").mkdir(parents=True)
    paths = []
    for i in range(n):
        folder = root if i % 3 == 0 else root / "sub" if i % 3 == 1 else root / "sub" / "deeper"
        ext = (".png", ".jpg", ".webp")[i % 3]
        p = folder / f"photo{i}{ext}"
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(p)
        paths.append(p)
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    Image.fromarray(np.zeros((80, 80, 3), np.uint8)).save(root / ".hidden" / "skip.png")
    return paths


def test_lists_images_recursively_of_any_type_and_skips_hidden(tmp_path):
    made = _photos(tmp_path)
    assert sorted(list_photos(tmp_path)) == sorted(made)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        list_photos(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no image files"):
        list_photos(tmp_path / "empty")


def test_split_is_by_file_stable_and_honours_listed_files(tmp_path):
    _photos(tmp_path, n=9)
    train, held = split_photos(tmp_path, 0.3)
    assert held and train and not set(train) & set(held) and len(train) + len(held) == 9
    rel = [p.relative_to(tmp_path).as_posix() for p in held]
    assert all(is_heldout(r, 0.3) for r in rel) or len(held) == 1
    # adding a photo never moves an old one between the splits
    Image.fromarray(np.zeros((80, 80, 3), np.uint8)).save(tmp_path / "new.png")
    train2, held2 = split_photos(tmp_path, 0.3)
    assert set(held) <= set(held2) and set(train) <= set(train2)
    _, held3 = split_photos(tmp_path, 0.0, heldout_files=["sub/photo1.jpg"])
    assert [p.relative_to(tmp_path).as_posix() for p in held3] == ["sub/photo1.jpg"]
    with pytest.raises(FileNotFoundError, match="heldout_files"):
        split_photos(tmp_path, 0.0, heldout_files=["nope.png"])


def test_load_photo_downscales_with_area_and_refuses_too_small(tmp_path):
    img = np.zeros((200, 400, 3), np.uint8)
    img[:, ::2] = 255  # stripes: area averaging gives grey, nearest would keep black or white
    Image.fromarray(img).save(tmp_path / "a.png")
    out = load_photo(tmp_path / "a.png", max_side=100)
    assert out.shape == (50, 100, 3) and out.dtype == np.float32
    assert abs(float(out.mean()) - 0.5) < 0.01 and float(out.std()) < 0.05
    with pytest.raises(ValueError, match="smaller than the crop size"):
        load_photo(tmp_path / "a.png", max_side=100, min_side=64)


def test_datamodule_trains_and_tests_on_the_split(tmp_path):
    _photos(tmp_path, n=6)
    dm = FolderDataModule(str(tmp_path), batch_size=3, patch_size=32, train_samples=6, eval_size=48,
                          tasks=["noise", "haze"], heldout_fraction=0.2, eval_batch_size=2)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["lq"].shape == batch["gt"].shape == (3, 3, 32, 32)
    assert set(batch["task"].tolist()) <= {TASKS.index("noise"), TASKS.index("haze")}
    assert not torch.equal(batch["lq"], batch["gt"])
    held = {p.name for p in dm.heldout_files}
    assert held and not held & {p.name for p in dm.train_files}
    val = next(iter(dm.val_dataloader()))
    assert val["gt"].shape[1:] == (3, 48, 48) and val["name"][0].endswith(("_noise", "_haze"))
    assert len(dm.eval_set) == 2 * len(held)


def test_train_config_composes_with_data_folder(compose_cfg, tmp_path):
    cfg = compose_cfg(["experiment=diffuir_t_photos", f"data.root={tmp_path}"])
    assert cfg.data._target_ == "src.data.folder.FolderDataModule" and cfg.data.root == str(tmp_path)
    assert cfg.trainer.strategy == "ddp" and cfg.num_threads == 1
