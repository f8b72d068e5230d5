"""The training loop in-process (no Ray): sparsity at work, and its absence with lambda = theta = 0."""

import torch
from train_configs import config_tree

from fusionlab.config import parse_config
from fusionlab.data import Manifest
from fusionlab.models.exchange import ExchangeBottleneck
from fusionlab.models.sparsity import penalised_block
from fusionlab.train.checkpoint import load_checkpoint
from fusionlab.train.driver import run_local
from fusionlab.train.loop import build_model


def trained_model(config, workdir):
    reports = run_local(config, workdir)
    checkpoints = sorted((workdir / "checkpoints" / config.run_name()).glob("epoch_*"))
    model = build_model(config, Manifest.load(config.data.path))
    model.load_state_dict(load_checkpoint(checkpoints[-1])["model"])
    return reports, model


def block_means(model):
    penalised, rest = [], []
    for block in (m for m in model.modules() if isinstance(m, ExchangeBottleneck)):
        for m, bn in enumerate(block.bn2.bns):
            gamma = bn.weight.detach().abs()
            mask = torch.zeros_like(gamma, dtype=torch.bool)
            mask[penalised_block(gamma.numel(), m, block.portion)] = True
            penalised.append(gamma[mask])
            rest.append(gamma[~mask])
    return float(torch.cat(penalised).mean()), float(torch.cat(rest).mean())


def test_l1_sparsity_collapses_the_penalised_block(small_synthetic, tmp_path):
    # Plain SGD so the L1 steps (lr * lambda = 0.05) settle below theta instead of oscillating around it.
    config = parse_config(config_tree(
        small_synthetic,
        model={"cen": {"lambda": 10.0, "threshold": 0.1}},
        train={"epochs": 4, "optimizer": "sgd", "momentum": 0.0, "lr_encoder": 5e-3, "lr_decoder": 5e-3}))
    reports, model = trained_model(config, tmp_path)
    penalised, unpenalised = block_means(model)
    assert penalised < 0.2 * unpenalised, (penalised, unpenalised)
    assert reports[0]["exchange/fraction"] < reports[-1]["exchange/fraction"]
    assert reports[-1]["exchange/fraction"] > 0
    assert all(reports[-1][f"exchange/fraction/encoder.layer{s}.0.bn2"] > 0 for s in range(1, 5))


def test_no_sparsity_and_no_threshold_exchange_nothing(small_synthetic, tmp_path):
    config = parse_config(config_tree(small_synthetic, model={"cen": {"lambda": 0.0, "threshold": 0.0}},
                                      train={"epochs": 2}))
    reports, model = trained_model(config, tmp_path)
    assert all(r["exchange/fraction"] == 0.0 for r in reports)
    assert all(value == 0.0 for key, value in reports[-1].items() if key.startswith("exchange/fraction/"))
    assert model.regularization_loss() == 0


def test_local_run_resumes_from_its_last_checkpoint(small_synthetic, tmp_path):
    first = parse_config(config_tree(small_synthetic, train={"epochs": 2}))
    run_local(first, tmp_path)
    longer = parse_config(config_tree(small_synthetic, train={"epochs": 3}))
    reports = run_local(longer, tmp_path)  # same run name: continues after epoch 2
    assert [r["epoch"] for r in reports] == [2]
