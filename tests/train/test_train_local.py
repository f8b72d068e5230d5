"""The training loop in-process (no Ray): sparsity at work, its absence with lambda = theta = 0, every model tracked."""

import hashlib

import pytest
import torch
from mlflow.tracking import MlflowClient
from train_configs import config_tree

from fusionlab.data import Manifest
from fusionlab.models import list_models
from fusionlab.models.exchange import ExchangeBottleneck
from fusionlab.models.sparsity import penalised_block
from fusionlab.tracking import default_tracking_uri, load_model
from fusionlab.train.checkpoint import load_checkpoint
from fusionlab.train.driver import run_local
from fusionlab.train.evaluate import evaluate
from fusionlab.train.prepare import parse_config
from fusionlab.train.segmentation_task import build_model
from tiny_backbones import tiny_backbone


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
        model={"params": {"lambda": 10.0, "threshold": 0.1}},
        train={"epochs": 4, "optimizer": "sgd", "momentum": 0.0, "lr_encoder": 5e-3, "lr_decoder": 5e-3}))
    reports, model = trained_model(config, tmp_path)
    penalised, unpenalised = block_means(model)
    assert penalised < 0.2 * unpenalised, (penalised, unpenalised)
    assert reports[0]["exchange/fraction"] < reports[-1]["exchange/fraction"]
    assert reports[-1]["exchange/fraction"] > 0
    assert all(reports[-1][f"exchange/fraction/encoder.layer{s}.0.bn2"] > 0 for s in range(1, 5))


def test_no_sparsity_and_no_threshold_exchange_nothing(small_synthetic, tmp_path):
    config = parse_config(config_tree(small_synthetic, model={"params": {"lambda": 0.0, "threshold": 0.0}},
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


@pytest.mark.parametrize("name", list_models())
def test_every_model_trains_and_is_tracked_with_test_scores_and_run_tags(name, small_synthetic, tmp_path):
    # early_concat's branch is named "rgb+depth": its metric keys must still be valid MLflow names.
    modalities = ["rgb"] if name == "unimodal" else ["rgb", "depth"]
    config = parse_config(config_tree(small_synthetic, model={"name": name, "backbone": tiny_backbone(name)},
                                      data={"modalities": modalities},
                                      train={"epochs": 1}))
    run_local(config, tmp_path, tags={"fusionlab.cell": "a cell"})
    uri = default_tracking_uri(tmp_path)
    (run,) = MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name("tests").experiment_id])
    manifest = Manifest.load(small_synthetic)
    model = build_model(config, manifest)
    assert run.info.status == "FINISHED"
    assert run.data.tags["fusionlab.kind"] == "train" and run.data.tags["fusionlab.cell"] == "a cell"
    assert run.data.tags["fusionlab.manifest_sha256"] == hashlib.sha256(
        (small_synthetic / "manifest.json").read_bytes()).hexdigest()
    assert run.data.tags["fusionlab.parameters"] == str(sum(p.numel() for p in model.parameters()))
    assert run.data.tags["fusionlab.dataset"] == manifest.name
    # the test split is scored once, at full resolution, exactly as `fusionlab evaluate` scores the logged model
    predictor = load_model(f"runs:/{run.info.run_id}/model", uri)
    assert predictor.input_specs["rgb"]["dtype"] == "uint8" and predictor.classes == list(manifest.label.classes)
    expected = evaluate(predictor, small_synthetic, "test")
    for key, value in expected.items():
        assert run.data.metrics[f"test/{key}"] == pytest.approx(value, abs=1e-6)
    assert any(key.startswith("val/") and key.count("/") == 2 for key in run.data.metrics)  # per-branch scores
    assert run.data.tags["fusionlab.eval_protocol"] == "single-scale"
    assert not any("_ms/" in key for key in run.data.metrics)


def test_a_run_with_eval_scales_logs_the_selected_models_multi_scale_scores_on_xception(small_synthetic, tmp_path):
    """DeepLabv3+ on Xception trains end to end, and its final scores are also taken over the scales and flips."""
    config = parse_config(config_tree(small_synthetic, model={"name": "asymfusion", "backbone": "xception_mini",
                                                              "eval_scales": [0.75, 1.0], "eval_flip": True},
                                      train={"epochs": 1}))
    run_local(config, tmp_path)
    uri = default_tracking_uri(tmp_path)
    (run,) = MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name("tests").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.tags["fusionlab.eval_protocol"] == "multi-scale 0.75,1 + flip"
    predictor = load_model(f"runs:/{run.info.run_id}/model", uri)
    for split in ("val", "test"):
        multi = evaluate(predictor, small_synthetic, split, scales=[0.75, 1.0], flip=True)
        for key, value in multi.items():
            assert run.data.metrics[f"{split}_ms/{key}"] == pytest.approx(value, abs=1e-6)
    single = evaluate(predictor, small_synthetic, "test")
    assert run.data.metrics["test/miou"] == pytest.approx(single["miou"], abs=1e-6)


def test_under_adam_only_the_proximal_step_makes_the_penalised_factors_zero(small_synthetic, tmp_path):
    # Adam normalises the L1 gradient per parameter: in the loss, even a huge lambda only shrinks gammas by about the
    # learning rate per step; the proximal step removes lr * lambda each step and stops at exactly zero.
    common = {"train": {"epochs": 2, "optimizer": "adam", "lr_encoder": 1e-3, "lr_decoder": 1e-3}}
    fractions = {}
    for mode in ("loss", "proximal"):
        config = parse_config(config_tree(small_synthetic, model={"params": {"lambda": 200.0, "sparsity": mode}},
                                          tracking={"experiment": "tests", "run_name": mode}, **common))
        reports, model = trained_model(config, tmp_path)
        fractions[mode] = reports[-1]["exchange/fraction"]
        penalised, _ = block_means(model)
        if mode == "proximal":
            assert penalised == 0.0
    assert fractions["loss"] == 0.0 and fractions["proximal"] > 0.4


def test_a_run_restored_after_its_last_epoch_reports_its_final_metrics_again(small_synthetic, tmp_path):
    config = parse_config(config_tree(small_synthetic, train={"epochs": 1}))
    first = run_local(config, tmp_path)
    again = run_local(config, tmp_path)  # nothing left to train: the last report again, for Tune's final result
    assert [r["epoch"] for r in again] == [0] and again[-1]["val/miou"] == first[-1]["val/miou"]
