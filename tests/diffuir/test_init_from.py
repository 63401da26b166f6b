"""``model.init_from``: fine-tuning starts from a suite checkpoint's (or export's) restoring weights, read with the
one safe loader; a checkpoint of another size is refused with a sentence naming both."""

import pytest
import torch
from hydra.utils import instantiate

from src.utils.checkpoints import load_restoration_model
from tests.conftest import compose_train
from tests.test_eval import TINY_MODEL, save_tiny_checkpoint


def test_init_from_copies_the_restoring_weights_of_a_checkpoint_and_of_its_export(tmp_path):
    from src.export import export

    ckpt = save_tiny_checkpoint(tmp_path / "tiny.ckpt")
    folder = tmp_path / "exported"
    export(ckpt, "safetensors", folder)
    donor = load_restoration_model(ckpt).eval_net.state_dict()
    for source in (ckpt, folder):
        torch.manual_seed(123)  # a different random start than the donor's
        model = instantiate(compose_train([*TINY_MODEL, f"model.init_from={source}"]).model)
        for name, value in model.net.state_dict().items():
            assert torch.equal(value, donor[name]), name
        if model.ema is not None:  # the EMA starts from the same weights
            assert all(torch.equal(v, donor[k]) for k, v in model.ema.averaged.state_dict().items())
    fresh = instantiate(compose_train(TINY_MODEL).model)
    assert not all(torch.equal(v, donor[k]) for k, v in fresh.net.state_dict().items())  # the test can fail


def test_init_from_a_checkpoint_of_another_size_is_refused_by_name(tmp_path):
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.ckpt")
    # Hydra wraps the loader's CheckpointMismatchError; its sentence names the file and both sizes
    with pytest.raises(Exception, match=r"model\.init_from=.*holds DiffUIR with dim 8.*asks for DiffUIR with dim 16"):
        instantiate(compose_train(["experiment=diffuir_t", "data=builtin", "model.net.dim=16",
                                   f"model.init_from={ckpt}"]).model)
