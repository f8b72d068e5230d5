"""train.smoke_steps: a paper grid rehearsed at full size, a few steps per epoch, and labelled as such."""

from __future__ import annotations

from train_configs import config_tree

from fusionlab.config import parse_config
from fusionlab.data.ray_dataset import EpochBatches
from fusionlab.recipes import recipe_label
from fusionlab.train.context import LocalContext, capped


class FakeEpochs:
    """Stands in for RayEpochs: epoch ``e``'s batches are ``(e, 0), (e, 1), ...``."""

    class Dataset:
        def __init__(self, epoch):
            self.epoch = epoch

        def iter_torch_batches(self, **kwargs):
            return iter([{"epoch": self.epoch, "i": i} for i in range(6)])

    def dataset(self, epoch):
        return self.Dataset(epoch)


def test_a_capped_epoch_hands_the_next_epoch_its_own_batches():
    feed = EpochBatches(FakeEpochs(), num_epochs=3, batch_size=1)
    try:
        first = list(capped(feed(0), 2))
        second = list(feed(1))
    finally:
        feed.close()
    assert [(b["epoch"], b["i"]) for b in first] == [(0, 0), (0, 1)]
    assert [(b["epoch"], b["i"]) for b in second] == [(1, i) for i in range(6)], "not epoch 0's leftovers"


def test_smoke_steps_cap_training_and_evaluation_and_say_so(small_synthetic, tmp_path):
    config = parse_config(config_tree(small_synthetic, train={"smoke_steps": 2, "batch_size": 4}))
    context = LocalContext(config, tmp_path, echo=False)
    assert len(list(context.train_batches(0))) == 2 and len(list(context.val_batches())) == 2
    assert "smoke run (2 steps per epoch)" in recipe_label(config.flat())
    full = LocalContext(parse_config(config_tree(small_synthetic, train={"batch_size": 4})), tmp_path, echo=False)
    assert len(list(full.train_batches(0))) == 32 // 4
    assert "smoke" not in recipe_label(full.config.flat())
