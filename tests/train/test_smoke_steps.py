"""train.smoke_steps: a paper grid rehearsed at full size, a few steps per epoch, and labelled as such."""

from __future__ import annotations

from train_configs import config_tree

from fusionlab.config.recipes import recipe_label
from fusionlab.train.context import LocalContext, capped
from fusionlab.train.prepare import parse_config


def test_a_capped_feed_is_closed_when_the_cap_ends_it():
    """A source that makes batches ahead stops its epoch there, instead of handing its leftovers to the next."""
    closed = []

    def feed(epoch):
        try:
            yield from ({"epoch": epoch, "i": i} for i in range(6))
        finally:
            closed.append(epoch)

    source = feed(0)  # held here: only capped's close, not its collection, can end it
    assert [(b["epoch"], b["i"]) for b in capped(source, 2)] == [(0, 0), (0, 1)]
    assert closed == [0] and next(source, None) is None, "the source is closed when the cap ends it"
    assert [(b["epoch"], b["i"]) for b in capped(feed(1), None)] == [(1, i) for i in range(6)], "no cap: all of it"
    assert len(list(capped(feed(2), 10))) == 6 and closed == [0, 1, 2], "a cap past the end ends with the source"
    assert list(capped([1, 2, 3], 2)) == [1, 2], "a source without close"


def test_smoke_steps_cap_training_and_evaluation_and_say_so(small_synthetic, tmp_path):
    config = parse_config(config_tree(small_synthetic, train={"smoke_steps": 2, "batch_size": 4}))
    context = LocalContext(config, tmp_path, echo=False)
    assert len(list(context.train_batches(0))) == 2 and len(list(context.val_batches())) == 2
    assert "smoke run (2 steps per epoch)" in recipe_label(config.flat())
    full = LocalContext(parse_config(config_tree(small_synthetic, train={"batch_size": 4})), tmp_path, echo=False)
    assert len(list(full.train_batches(0))) == 32 // 4
    assert "smoke" not in recipe_label(full.config.flat())
