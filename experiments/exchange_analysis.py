"""Why exchanging helps or does not, from a finished ablation grid (experiments/synthetic_ablation.yaml):

    python experiments/exchange_analysis.py --workdir WORKDIR --experiment synthetic-ablation \
        --data data/synthetic-ablation [--out WORKDIR/reports/synthetic-ablation-exchange]

For every run of the grid's exchanging and no-exchange cells, on the test split:
- the ensemble's and each branch's mIoU, and the ensemble's with the exchange switched off at inference (every
  exchanging layer's rule set to "none"): the drop is what the trained network takes from the other modality through
  the exchanged channels;
- how fast gamma collapses: the first epoch at which the logged exchanged fraction reached 95% of its final value.
For the unimodal cells: how complementary the modalities are, the share of labelled test pixels RGB-only gets right,
depth-only gets right, and either gets right (an oracle no fusion can beat pixel-wise), seed by seed.
Writes ``exchange_analysis.md`` and ``exchange_fraction.png`` under ``--out`` and prints the Markdown.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from mlflow.tracking import MlflowClient  # noqa: E402

from fusionlab.data import Manifest  # noqa: E402
from fusionlab.data.torch_dataset import ShardDataset  # noqa: E402
from fusionlab.data.transforms import select_modalities  # noqa: E402
from fusionlab.models.sparsity import exchanging_layers  # noqa: E402
from fusionlab.tracking import default_tracking_uri, load_model  # noqa: E402
from fusionlab.tracking.report_rows import search_all_runs  # noqa: E402
from fusionlab.train.metrics import ConfusionMatrix  # noqa: E402

EXCHANGE_FAMILY = ("cen", "cen_no_exchange", "cen_random_exchange", "cen_penalised_exchange")


def test_batches(predictor, data: Path):
    manifest = Manifest.load(data)
    dataset = ShardDataset(data, "test", select_modalities(manifest, predictor.modalities))
    yield from torch.utils.data.DataLoader(dataset, batch_size=8)


@torch.no_grad()
def branch_scores(predictor, data: Path) -> dict[str, float]:
    """mIoU of the ensemble and of each branch, as the predictor upsamples them."""
    model = predictor.model.eval()
    names = ["ensemble", *model.branch_names()]
    matrices = {name: ConfusionMatrix(predictor.num_classes, predictor.ignore_index) for name in names}
    for batch in test_batches(predictor, data):
        out = model(batch["image"].transpose(0, 1))
        logits = {"ensemble": out.ensemble, **dict(zip(model.branch_names(), out.branches, strict=True))}
        for name, value in logits.items():
            upsampled = F.interpolate(value, size=batch["label"].shape[-2:], mode=predictor.upsample,
                                      align_corners=False)
            matrices[name].update(upsampled.argmax(1), batch["label"])
    return {name: 100 * matrix.compute()["miou"] for name, matrix in matrices.items()}


@torch.no_grad()
def without_exchange(predictor, data: Path) -> float | None:
    """The ensemble's test mIoU with every exchanging layer's exchange switched off (None: it has none)."""
    layers = [layer for _, layer in exchanging_layers(predictor.model) if layer.rule != "none"]
    if not layers:
        return None
    rules = [layer.rule for layer in layers]
    for layer in layers:
        layer.rule = "none"
    try:
        return branch_scores(predictor, data)["ensemble"]
    finally:
        for layer, rule in zip(layers, rules, strict=True):
            layer.rule = rule


def collapse_epoch(client: MlflowClient, run_id: str) -> tuple[int | None, list[float]]:
    history = sorted(client.get_metric_history(run_id, "exchange/fraction"), key=lambda m: m.step)
    values = [m.value for m in history]
    if not values or values[-1] == 0:
        return None, values
    return next(i for i, v in enumerate(values) if v >= 0.95 * values[-1]), values


@torch.no_grad()
def correct_pixels(predictor, data: Path) -> torch.Tensor:
    """A bool per labelled test pixel: is the predicted class right (fixed pixel order)."""
    right = []
    for batch in test_batches(predictor, data):
        label = batch["label"]
        prediction = predictor(batch["image"]).argmax(1)
        valid = label != predictor.ignore_index
        right.append((prediction == label)[valid])
    return torch.cat(right)


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.fmean(values):.1f} ± {statistics.stdev(values):.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--experiment", default="synthetic-ablation")
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    uri = default_tracking_uri(args.workdir)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(args.experiment)
    runs = [run for run in search_all_runs(client, experiment.experiment_id, "tags.`fusionlab.kind` = 'train'")
            if run.info.status == "FINISHED"]
    data = Path(args.data)
    out = Path(args.out or Path(args.workdir) / "reports" / f"{args.experiment}-exchange")
    out.mkdir(parents=True, exist_ok=True)

    rows: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    curves: dict[str, list[list[float]]] = defaultdict(list)
    unimodal: dict[str, dict[str, torch.Tensor]] = defaultdict(dict)  # seed -> modality -> correct pixels
    for run in sorted(runs, key=lambda r: r.info.run_name):
        cell = run.data.tags.get("fusionlab.cell", run.info.run_name)
        name = run.data.params.get("model.name")
        seed = run.data.params.get("train.seed")
        if name not in EXCHANGE_FAMILY and name != "unimodal":
            continue
        predictor = load_model(f"runs:/{run.info.run_id}/model", uri)
        if name == "unimodal":
            unimodal[seed][predictor.modalities[0]] = correct_pixels(predictor, data)
            continue
        scores = branch_scores(predictor, data)
        for key, value in scores.items():
            rows[cell][key].append(value)
        off = without_exchange(predictor, data)
        if off is not None:
            rows[cell]["exchange off at test"].append(off)
            rows[cell]["drop"].append(scores["ensemble"] - off)
        epoch, values = collapse_epoch(client, run.info.run_id)
        if values:
            rows[cell]["final exchanged %"].append(100 * values[-1])
            curves[cell].append(values)
        if epoch is not None:
            rows[cell]["collapse epoch"].append(epoch + 1)

    columns = ["ensemble", "rgb", "depth", "exchange off at test", "drop", "final exchanged %", "collapse epoch"]
    lines = [f"# Exchange analysis: {args.experiment}", "",
             "Test split, mIoU in percent, mean ± std over seeds. *exchange off at test*: the trained ensemble with "
             "every exchange switched off at inference; *drop*: ensemble − that. *collapse epoch*: the first epoch at "
             "which the logged exchanged fraction reached 95% of its final value.", "",
             "| cell | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for cell, values in rows.items():
        lines.append(f"| {cell} | " + " | ".join(mean_std(values.get(c, [])) for c in columns) + " |")
    if unimodal:
        lines += ["", "Complementarity of the unimodal cells (share of labelled test pixels right, percent):", "",
                  "| seed | RGB only | depth only | either (oracle) | both |", "|---|---:|---:|---:|---:|"]
        for seed, by_modality in sorted(unimodal.items()):
            if {"rgb", "depth"} <= set(by_modality):
                rgb, depth = by_modality["rgb"], by_modality["depth"]
                lines.append(f"| {seed} | {100 * rgb.float().mean():.1f} | {100 * depth.float().mean():.1f} | "
                             f"{100 * (rgb | depth).float().mean():.1f} | {100 * (rgb & depth).float().mean():.1f} |")
    text = "\n".join(lines) + "\n"
    (out / "exchange_analysis.md").write_text(text)
    if curves:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(6, 3.5))
        for number, (cell, series) in enumerate(curves.items()):
            for index, values in enumerate(series):  # one line per seed, one colour per cell
                axis.plot(range(1, len(values) + 1), [100 * v for v in values], label=cell if index == 0 else None,
                          color=f"C{number}", alpha=0.8)
        axis.set_xlabel("epoch")
        axis.set_ylabel("exchanged (modality, channel) pairs, %")
        axis.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(out / "exchange_fraction.png", dpi=120)
    print(text)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
