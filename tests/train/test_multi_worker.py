"""A multi-worker cell is defined: its workers on one node (STRICT_PACK), and each rank its own random stream."""

from __future__ import annotations

import pytest
import torch
from train_configs import config_tree

from fusionlab.train.driver import scaling_config
from fusionlab.train.loop import seed_rank
from fusionlab.train.prepare import parse_config


def masks(seed: int, rank: int) -> torch.Tensor:
    torch.manual_seed(seed)
    torch.nn.Linear(4, 4)  # the model's initial weights, drawn alike on every rank
    seed_rank(seed, rank)
    return torch.nn.functional.dropout(torch.ones(64), 0.5)


def test_every_rank_draws_its_own_dropout_masks_and_rank_0_those_of_one_worker():
    torch.manual_seed(3)
    torch.nn.Linear(4, 4)
    one_worker = torch.nn.functional.dropout(torch.ones(64), 0.5)
    ranks = [masks(3, rank) for rank in range(4)]
    assert torch.equal(ranks[0], one_worker)
    assert all(not torch.equal(ranks[a], ranks[b]) for a in range(4) for b in range(a + 1, 4))
    assert torch.equal(masks(3, 2), ranks[2]), "reproducible from the seed and the rank"


def test_a_cell_keeps_its_workers_on_one_node_unless_told(small_synthetic):
    config = parse_config(config_tree(small_synthetic, resources={"num_workers": 2, "use_gpu": False}))
    scaling = scaling_config(config)
    assert scaling.placement_strategy == "STRICT_PACK" and scaling.num_workers == 2 and scaling.use_gpu is False
    spread = parse_config(config_tree(small_synthetic, resources={"placement": "spread", "use_gpu": True}))
    assert scaling_config(spread).placement_strategy == "SPREAD"
    with pytest.raises(ValueError, match="must be decided"):
        scaling_config(parse_config(config_tree(small_synthetic)))
