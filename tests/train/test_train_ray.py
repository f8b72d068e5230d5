"""End to end on Ray Train with 2 CPU workers: learning, MLflow contents, evaluation.

A killed driver resuming in the same MLflow run from its Train checkpoints is tests/tune/test_grid_run.py's killed
and resumed grid (its cells are the same ``run_ray`` runs, found again by their run keys); selection on the test
split is tests/train/test_selection.py (in process) and tests/train/test_validate_workers.py (the Ray driver's
evaluation split, and figures summed over two simulated workers)."""

from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from train_configs import config_tree

from fusionlab.data import Manifest
from fusionlab.inference.servable import servable
from fusionlab.tracking import default_tracking_uri, load_model
from fusionlab.train.driver import run_ray
from fusionlab.train.evaluate import evaluate
from fusionlab.train.prepare import parse_config
from fusionlab.train.segmentation_task import build_model

pytestmark = pytest.mark.slow


def only_run(uri: str, experiment: str):
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1, f"expected one MLflow run, found {len(runs)}"
    return client, runs[0]


def metric_history(client, run_id: str, key: str, epochs: int | None = None) -> list[float]:
    """The values by step; ``epochs``: only the per-epoch ones (the selected epoch's are logged again after them)."""
    ordered = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
    return [m.value for m in ordered if epochs is None or m.step < epochs]


def untrained_val_miou(config, data) -> float:
    torch.manual_seed(config.train.seed)
    manifest = Manifest.load(data)
    return evaluate(servable(build_model(config, manifest), manifest), data, "val")["miou"]


def test_cen_trains_on_two_workers_and_is_tracked(small_synthetic, tmp_path, ray_local):
    config = parse_config(config_tree(small_synthetic, train={"epochs": 5, "lr_encoder": 2e-3, "lr_decoder": 2e-3},
                                      resources={"num_workers": 2}, tracking={"experiment": "e2e"}))
    run_ray(config, tmp_path)
    client, run = only_run(default_tracking_uri(tmp_path), "e2e")
    assert run.info.status == "FINISHED"
    assert run.data.params["model.name"] == "cen"
    # the fusionlab recipe adds the penalty once: the reference's 2e-4 per output is 3 x 2e-4 for M = 2
    assert float(run.data.params["model.params.lambda"]) == pytest.approx(6e-4)
    assert run.data.params["resources.num_workers"] == "2"
    history = metric_history(client, run.info.run_id, "val/miou", epochs=5)
    assert len(history) == 5
    selected = int(run.data.metrics["selected_epoch"])
    assert run.data.tags["fusionlab.selection"] == "best_val" and history[selected] == max(history)
    # Learning, judged against the same network untrained (same seed, same evaluation path): epoch-to-epoch val
    # mIoU on 8 images swings by a few points with the order Ray Data hands out batches, this gap does not.
    untrained = untrained_val_miou(config, small_synthetic)
    assert max(history) > untrained + 0.05, f"val mIoU {history} should beat the untrained model's {untrained:.3f}"
    losses = metric_history(client, run.info.run_id, "train/loss")
    assert losses[-1] < 0.9 * losses[0], f"train loss should fall: {losses}"
    for key in ("train/loss", "val/pixel_acc", "val/mean_acc", "val/rgb/miou", "val/depth/miou",
                "exchange/fraction/encoder.layer1.0.bn2", "alpha/rgb"):
        assert len(metric_history(client, run.info.run_id, key, epochs=5)) == 5, key
    plots = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "plots")}
    assert plots == {"gamma_histograms.png", "exchange_by_layer.png", "confusion_matrix.png", "predictions.png"}
    for name in plots:
        local = client.download_artifacts(run.info.run_id, f"plots/{name}", str(tmp_path / "dl"))
        assert Path(local).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The logged model is the selected epoch's: it scores on val what that epoch logged, which is also the final
    # value of each val metric (logged again after the last epoch).
    predictor = load_model(f"runs:/{run.info.run_id}/model", default_tracking_uri(tmp_path))
    metrics = evaluate(predictor, small_synthetic, "val")
    assert metrics["miou"] == pytest.approx(history[selected], abs=1e-6)
    assert run.data.metrics["val/miou"] == history[selected]
    pixel_acc = metric_history(client, run.info.run_id, "val/pixel_acc", epochs=5)[selected]
    assert metrics["pixel_acc"] == pytest.approx(pixel_acc, abs=1e-6)


def test_translation_on_two_workers_scores_fid_over_the_whole_split(tmp_path, ray_local):
    """Each worker sees half of the val split; the logged FID and L1 are those of the whole split (features
    gathered from both workers), as recomputed here from the logged model."""
    import torch

    from fusionlab.data.synthetic_translation import write_synthetic_translation
    from fusionlab.data.torch_dataset import ShardDataset
    from fusionlab.fid import LocalFeatures, frechet_distance
    from fusionlab.train.translation import to_unit_range

    data = tmp_path / "data"
    manifest = write_synthetic_translation(data, train=8, val=8, test=2, size=(32, 32), seed=1)
    tree = {"data": {"path": str(data), "modalities": ["normal", "reshading"], "scale_range": [1.0, 1.0]},
            "model": {"name": "cen", "backbone": "unet_mini"},
            "train": {"epochs": 1, "batch_size": 2, "optimizer": "adam", "lr_encoder": 1e-3, "lr_decoder": 1e-3,
                      "betas": [0.5, 0.999], "fid": {"features": "local", "kid_subsets": 10}},
            "resources": {"num_workers": 2}, "tracking": {"experiment": "translation-e2e"}}
    run_ray(parse_config(tree), tmp_path / "runs")
    client, run = only_run(default_tracking_uri(tmp_path / "runs"), "translation-e2e")
    assert run.info.status == "FINISHED" and run.data.tags["fusionlab.task"] == "translation"
    assert len(metric_history(client, run.info.run_id, "val/fid", epochs=1)) == 1

    predictor = load_model(f"runs:/{run.info.run_id}/model", default_tracking_uri(tmp_path / "runs"))
    dataset = ShardDataset(data, "val", ["normal", "reshading"])
    samples = [dataset[i] for i in range(len(dataset))]
    with torch.no_grad():
        generated = predictor(torch.stack([s["image"] for s in samples]))
    targets = torch.stack([to_unit_range(s["target"], manifest.modalities["rgb"]) for s in samples])
    extractor = LocalFeatures()
    expected_fid = frechet_distance(extractor.features(targets), extractor.features(generated))
    expected_l1 = float((2 * (generated - targets)).abs().mean())
    # the logged generator is the selected epoch's, whose val figures are the final ones
    assert run.data.metrics["val/fid"] == pytest.approx(expected_fid, rel=1e-3)
    assert run.data.metrics["val/l1"] == pytest.approx(expected_l1, rel=1e-3)
