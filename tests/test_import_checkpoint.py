"""`fusionlab import-checkpoint`: a reference-format checkpoint (the golden CEN network's rule-built weights) logged as
a model that `evaluate`, `predict` and `promote` use, scoring exactly what its own forward pass scores."""

import hashlib
import os
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mlflow.tracking import MlflowClient
from PIL import Image

from fusionlab.cli import main
from fusionlab.data import DatasetWriter, LabelSpec, Manifest, Sample, depth_mm_spec, rgb_spec
from fusionlab.data.torch_dataset import ShardDataset
from fusionlab.models import build
from fusionlab.models.reference_names import map_reference_state, reference_name
from fusionlab.tracking import default_tracking_uri, load_model
from fusionlab.train.evaluate import evaluate
from fusionlab.train.metrics import scores
from golden_weights import Golden

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

SIZE = (64, 96)
SAMPLES = 6  # one batch of evaluate's 8
EPOCH_START, BEST_VAL = 150, np.float64(51.0734)


def write_reference_checkpoint(path, state, epoch_start=EPOCH_START, best_val=BEST_VAL):
    """As the references' Saver writes it: the DataParallel state dict under 'segmenter', plus epoch and score."""
    torch.save({"segmenter": {f"module.{key}": value for key, value in state.items()}, "epoch_start": epoch_start,
                "best_val": best_val}, path)


def write_dataset(out, num_classes: int) -> None:
    """NYUDv2-like inputs (8-bit RGB, depth in uint16 mm), random labels over every class and some ignored pixels."""
    manifest = Manifest(name="tiny-rgbd", task="segmentation",
                        modalities={"rgb": rgb_spec(), "depth": depth_mm_spec()},
                        label=LabelSpec(tuple(f"class{k}" for k in range(num_classes)), ignore_index=255))
    rng = np.random.default_rng(0)
    with DatasetWriter(out, manifest) as writer:
        for index in range(SAMPLES):
            label = rng.integers(0, num_classes, SIZE).astype(np.uint8)
            label[rng.random(SIZE) < 0.1] = 255
            writer.write(Sample(f"s{index}", "test", {
                "rgb": rng.integers(0, 256, (*SIZE, 3)).astype(np.uint8),
                "depth": rng.integers(500, 8000, SIZE).astype(np.uint16)}, label))


def own_predictions(golden: Golden, data) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's own forward pass (no MLflow, no predictor): full-resolution argmax and the labels."""
    model = build("cen", backbone=golden.spec, num_classes=golden.num_classes, modalities=["rgb", "depth"],
                  threshold=golden.threshold, rcu_residual="post_activation")
    model.load_state_dict(map_reference_state(golden.reference_state, model.state_dict()), strict=True)
    model.eval()
    batch = next(iter(torch.utils.data.DataLoader(ShardDataset(data, "test", ["rgb", "depth"]), batch_size=8)))
    with torch.no_grad():
        ensemble = model(batch["image"].transpose(0, 1)).ensemble
    # scored as the references score: cv2.resize(INTER_CUBIC) of the logits = torch's bicubic, half-pixel centres
    logits = F.interpolate(ensemble, size=SIZE, mode="bicubic", align_corners=False)
    return logits.argmax(1), batch["label"]


def own_scores(prediction: torch.Tensor, label: torch.Tensor, num_classes: int) -> dict[str, float]:
    valid = label != 255
    matrix = np.bincount(label[valid].numpy() * num_classes + prediction[valid].numpy(), minlength=num_classes**2)
    return scores(torch.from_numpy(matrix.reshape(num_classes, num_classes)))


@pytest.fixture(scope="module")
def imported(tmp_path_factory, golden_dir):
    root = tmp_path_factory.mktemp("import")
    golden = Golden(golden_dir / "cen_refinenet_m2.npz")
    checkpoint, data, workdir = root / "model-best.pth.tar", root / "data", root / "runs"
    write_reference_checkpoint(checkpoint, golden.reference_state)
    write_dataset(data, golden.num_classes)
    assert main(["--workdir", str(workdir), "import-checkpoint", "cen", str(checkpoint), "--layers", "2,2,2,2",
                 "--num-classes", "40", "--modalities", "rgb,depth", "--data", str(data), "--evaluate", "test",
                 "--experiment", "reference"]) == 0
    uri = default_tracking_uri(workdir)
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("reference").experiment_id])
    prediction, label = own_predictions(golden, data)
    return {"golden": golden, "checkpoint": checkpoint, "data": data, "workdir": workdir, "uri": uri, "run": run,
            "model_uri": f"runs:/{run.info.run_id}/model", "prediction": prediction, "label": label,
            "scores": own_scores(prediction, label, golden.num_classes)}


@pytest.mark.slow
def test_the_run_records_the_model_and_its_source(imported):
    run = imported["run"]
    params, tags = run.data.params, run.data.tags
    assert run.info.status == "FINISHED"
    assert params["model.name"] == "cen" and params["model.backbone"] == "resnet-layers-2-2-2-2"
    assert params["model.num_classes"] == "40" and params["data.modalities"] == "['rgb', 'depth']"
    assert params["recipe"] == "reference" and params["model.params.rcu_residual"] == "post_activation"
    assert params["model.params.threshold"] == "0.02" and params["model.eval_upsample"] == "bicubic"
    assert params["import.sha256"] == hashlib.sha256(imported["checkpoint"].read_bytes()).hexdigest()
    assert params["import.file"] == str(imported["checkpoint"].resolve())
    assert params["import.epoch_start"] == str(EPOCH_START) and float(params["import.best_val"]) == BEST_VAL
    assert tags["fusionlab.kind"] == "train" and tags["fusionlab.origin"] == "import"
    assert tags["fusionlab.recipe"] == "reference" and tags["fusionlab.selection"] == "best_test"
    assert tags["fusionlab.dataset"] == "tiny-rgbd" and tags["fusionlab.modalities"] == "rgb,depth"
    assert tags["fusionlab.import.sha256"] == params["import.sha256"]
    # Weights plus spec, under the workdir as a training run's (not ./mlruns of wherever the command ran).
    spec = list((imported["workdir"] / "mlartifacts").glob("models/*/artifacts/fusionlab-model.json"))
    assert len(spec) == 1 and (spec[0].parent / "weights.pt").is_file()


@pytest.mark.slow
def test_evaluate_scores_exactly_what_the_network_computes(imported, capsys):
    expected = imported["scores"]
    assert 0 < expected["pixel_acc"] < 1  # random labels: a non-degenerate matrix
    logged = imported["run"].data.metrics
    assert {key: logged[f"test/{key}"] for key in expected} == expected
    assert main(["--workdir", str(imported["workdir"]), "evaluate", "--model", imported["model_uri"],
                 "--data", str(imported["data"]), "--split", "test"]) == 0
    shown = re.findall(r"\d+\.\d{2}", capsys.readouterr().out.split("(ensemble)")[-1])
    assert shown == [f"{100 * expected[key]:.2f}" for key in ("pixel_acc", "mean_acc", "miou")]
    assert evaluate(load_model(imported["model_uri"], imported["uri"]), imported["data"], "test") == expected


@pytest.mark.slow
def test_predict_writes_the_networks_labels(imported, tmp_path):
    out = tmp_path / "predicted"
    assert main(["--workdir", str(imported["workdir"]), "predict", "--model", imported["model_uri"],
                 "--input", str(imported["data"]), "--out", str(out)]) == 0
    for index in range(SAMPLES):
        written = np.asarray(Image.open(out / "labels" / f"s{index}.png"))
        assert np.array_equal(written, imported["prediction"][index].numpy()), index


@pytest.mark.slow
def test_promote_registers_it_like_a_trained_run(imported, capsys):
    workdir = str(imported["workdir"])
    assert main(["--workdir", workdir, "promote", "--experiment", "reference", "--metric", "test/miou"]) == 0
    assert "promoted" in capsys.readouterr().out
    assert main(["--workdir", workdir, "registry", "tiny-rgbd-segmentation"]) == 0
    assert imported["run"].info.run_name in capsys.readouterr().out


# -- errors, on a small network (resnet_mini), through the same command ----------------------------------------------
def mini_reference_state() -> dict[str, torch.Tensor]:
    model = build("cen", backbone="resnet_mini", num_classes=40, modalities=["rgb", "depth"])
    return {reference_name(key): value for key, value in model.state_dict().items()}


def import_mini(tmp_path, state, capsys) -> tuple[int, str]:
    path = tmp_path / "model-best.pth.tar"
    write_reference_checkpoint(path, state)
    code = main(["--workdir", str(tmp_path / "runs"), "import-checkpoint", "cen", str(path), "--backbone",
                 "resnet_mini", "--num-classes", "40"])
    return code, " ".join(capsys.readouterr().out.split())


def test_a_missing_key_is_named(tmp_path, capsys):
    state = mini_reference_state()
    del state["layer3.0.downsample.1.bn_0.running_var"]
    code, out = import_mini(tmp_path, state, capsys)
    assert code == 1
    assert ("1 missing key(s): layer3.0.downsample.1.bn_0.running_var [256] (the model's "
            "encoder.layer3.0.downsample.1.bns.0.running_var)") in out


def test_an_unexpected_key_is_named(tmp_path, capsys):
    state = {**mini_reference_state(), "aux_clf.module.weight": torch.zeros(40, 32, 1, 1)}
    code, out = import_mini(tmp_path, state, capsys)
    assert code == 1
    assert "1 unexpected key(s): aux_clf.module.weight [40, 32, 1, 1] (no fusionlab counterpart)" in out


def test_a_misshaped_tensor_is_named(tmp_path, capsys):
    state = mini_reference_state()
    state["p_ims1d2_outl1_dimred.module.weight"] = torch.zeros(64, 512, 1, 1)
    code, out = import_mini(tmp_path, state, capsys)
    assert code == 1
    assert ("1 mis-shaped tensor(s): p_ims1d2_outl1_dimred.module.weight is [64, 512, 1, 1], the model's "
            "decoder.stages.0.dimred.weight is [64, 512, 3, 3]") in out


def test_a_faithful_small_checkpoint_imports_with_the_reference_inputs(tmp_path, capsys):
    code, out = import_mini(tmp_path, mini_reference_state(), capsys)
    assert code == 0, out
    assert f"epoch_start {EPOCH_START}" in out and "runs:/" in out
    client = MlflowClient(default_tracking_uri(tmp_path / "runs"))
    (run,) = client.search_runs([client.get_experiment_by_name("imports").experiment_id])
    assert run.data.tags["fusionlab.dataset"] == "nyudv2"
    assert "fusionlab.manifest_sha256" not in run.data.tags  # no dataset given: never compared with one
    predictor = load_model(f"runs:/{run.info.run_id}/model", default_tracking_uri(tmp_path / "runs"))
    assert predictor.input_specs["depth"]["scale"] == 1 / 5000 and predictor.classes[0] == "wall"
