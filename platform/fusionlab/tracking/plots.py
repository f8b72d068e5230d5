"""PNG figures for a run: BN scaling factors, exchange by layer, confusion matrix, prediction overlays.

matplotlib only (Agg); each function writes one PNG and returns its path.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from fusionlab.data import Manifest  # noqa: E402
from fusionlab.models import FusionModel, exchange_statistics  # noqa: E402
from fusionlab.models.sparsity import exchanging_layers, penalised_block  # noqa: E402


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def gamma_histograms(model: FusionModel, path: Path) -> Path | None:
    """|gamma| of the exchanging norms per modality: the penalised block against the rest."""
    layers = exchanging_layers(model)
    if not layers:
        return None
    names = model.branch_names()
    figure, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.4), squeeze=False)
    threshold = layers[0][1].threshold
    for m, (axis, name) in enumerate(zip(axes[0], names, strict=True)):
        penalised, rest = [], []
        for _, layer in layers:
            gamma = layer.exchange_norm.modal_weights()[m].detach().abs().float().cpu()
            mask = torch.zeros_like(gamma, dtype=torch.bool)
            mask[penalised_block(gamma.numel(), m, layer.portion)] = True
            penalised.append(gamma[mask])
            rest.append(gamma[~mask])
        bins = np.linspace(0, max(float(torch.cat(penalised + rest).max()), threshold * 2), 40)
        axis.hist(torch.cat(penalised).numpy(), bins=bins, alpha=0.7, label="penalised block")
        axis.hist(torch.cat(rest).numpy(), bins=bins, alpha=0.7, label="unpenalised")
        axis.axvline(threshold, color="k", linestyle="--", linewidth=1, label=f"θ = {threshold:g}")
        axis.set_title(f"{name}: |γ| of exchanging norms")
        axis.set_xlabel("|γ|")
        axis.legend(fontsize=8)
    return _save(figure, path)


def exchange_by_layer(model: FusionModel, path: Path) -> Path | None:
    stats = exchange_statistics(model)
    if not stats:
        return None
    layers = list(stats)
    values = torch.stack([stats[layer] for layer in layers]).numpy()  # [L, M]
    figure, axis = plt.subplots(figsize=(max(6, 0.35 * len(layers)), 3.6))
    width = 0.8 / values.shape[1]
    for m, name in enumerate(model.branch_names()):
        axis.bar(np.arange(len(layers)) + m * width, values[:, m], width, label=name)
    axis.set_xticks(np.arange(len(layers)) + 0.4 - width / 2)
    axis.set_xticklabels([layer.replace("encoder.", "").removesuffix(".bn2").removesuffix(".norm") for layer in layers],
                         rotation=90,
                         fontsize=7)
    axis.set_ylabel("fraction of channels exchanged")
    axis.set_ylim(0, 1)
    axis.legend(fontsize=8)
    return _save(figure, path)


def confusion_matrix(matrix: torch.Tensor, classes: tuple[str, ...], path: Path) -> Path:
    counts = matrix.double()
    normalised = (counts / counts.sum(1, keepdim=True).clamp(min=1)).numpy()
    size = max(4, 0.35 * len(classes) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    image = axis.imshow(normalised, vmin=0, vmax=1, cmap="viridis")
    axis.set_xticks(range(len(classes)))
    axis.set_yticks(range(len(classes)))
    axis.set_xticklabels(classes, rotation=90, fontsize=7)
    axis.set_yticklabels(classes, fontsize=7)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    figure.colorbar(image, ax=axis, fraction=0.046)
    return _save(figure, path)


def _colorize(label: torch.Tensor, num_classes: int, ignore_index: int) -> np.ndarray:
    palette = plt.get_cmap("tab20", max(num_classes, 2))(np.arange(max(num_classes, 2)))[:, :3]
    values = label.numpy()
    rgb = palette[np.clip(values, 0, num_classes - 1)]
    rgb[values == ignore_index] = 0
    return rgb


def _displayable(image: torch.Tensor, spec) -> np.ndarray:
    """Undo the normalisation of a model input ``[3, H, W]`` for display."""
    mean = torch.tensor(spec.mean).view(-1, 1, 1)
    std = torch.tensor(spec.std).view(-1, 1, 1)
    value = (image.float() * std + mean) / spec.scale
    value = value / (255.0 if spec.dtype == "uint8" else max(float(value.max()), 1.0))
    return value.clamp(0, 1).permute(1, 2, 0).numpy()


def prediction_overlays(examples: list[dict[str, torch.Tensor]], manifest: Manifest, modalities: list[str],
                        path: Path) -> Path | None:
    if not examples:
        return None
    spec = manifest.label
    columns = len(modalities) + 2
    figure, axes = plt.subplots(len(examples), columns, figsize=(2.6 * columns, 2.1 * len(examples)), squeeze=False)
    for row, example in zip(axes, examples, strict=True):
        for m, name in enumerate(modalities):
            row[m].imshow(_displayable(example["image"][m], manifest.modalities[name]))
            row[m].set_title(name, fontsize=8)
        row[-2].imshow(_colorize(example["label"], spec.num_classes, spec.ignore_index))
        row[-2].set_title("ground truth", fontsize=8)
        row[-1].imshow(_colorize(example["prediction"], spec.num_classes, spec.ignore_index))
        row[-1].set_title("ensemble prediction", fontsize=8)
        for axis in row:
            axis.axis("off")
    return _save(figure, path)


def translation_grid(examples: list[dict[str, object]], modalities: list[str], branch_names: list[str],
                     path: Path) -> Path | None:
    """One row per example: the inputs, every branch's output, the ensemble and the target (images in [0, 1])."""
    if not examples:
        return None
    titles = [*modalities, *(f"{name} branch" for name in branch_names), "ensemble", "target"]
    columns = len(titles)
    figure, axes = plt.subplots(len(examples), columns, figsize=(2.2 * columns, 2.2 * len(examples)), squeeze=False)
    for row, example in zip(axes, examples, strict=True):
        images = [*example["inputs"], *example["outputs"], example["target"]]
        for axis, image, title in zip(row, images, titles, strict=True):
            picture = image.float().clamp(0, 1)
            if picture.shape[0] == 1:
                axis.imshow(picture[0].numpy(), cmap="gray", vmin=0, vmax=1)
            else:
                axis.imshow(picture[:3].permute(1, 2, 0).numpy())
            axis.set_title(title, fontsize=8)
            axis.axis("off")
    return _save(figure, path)


def parameter_scatter(values: list[float], scores: list[float], parameter: str, metric: str, log_x: bool,
                      path: Path) -> Path:
    """One point per trial: a searched parameter against the trial's final metric."""
    figure, axis = plt.subplots(figsize=(4.8, 3.6))
    axis.scatter(values, scores)
    if log_x:
        axis.set_xscale("log")
    axis.set_xlabel(parameter)
    axis.set_ylabel(metric)
    axis.set_title(f"{metric} against {parameter}", fontsize=9)
    return _save(figure, path)


def importance_bar(importances: dict[str, float], path: Path) -> Path:
    figure, axis = plt.subplots(figsize=(5.2, 0.5 * len(importances) + 1.5))
    names = list(importances)
    axis.barh(names, [importances[name] for name in names])
    axis.set_xlabel("importance (fANOVA)")
    axis.invert_yaxis()
    return _save(figure, path)


def method_bars(labels: list[str], values: list[float | None], published: list[float | None], metric: str,
                path: Path) -> Path:
    """One bar per table row (ours), with the published figure as a marker where there is one."""
    figure, axis = plt.subplots(figsize=(6.4, 0.42 * len(labels) + 1.4))
    positions = np.arange(len(labels))
    axis.barh(positions, [v if v is not None else 0 for v in values], color="tab:blue", label="this run")
    marked = [(p, v) for p, v in zip(positions, published, strict=True) if v is not None]
    if marked:
        axis.scatter([v for _, v in marked], [p for p, _ in marked], marker="D", color="tab:orange", zorder=3,
                     label="published")
        axis.legend(fontsize=8, loc="lower right")
    for position, value in zip(positions, values, strict=True):
        if value is not None:
            axis.text(value, position, f" {value:.1f}", va="center", fontsize=8)
    shown = [v for v in [*values, *published] if v is not None]
    axis.set_xlim(0, 1.12 * max(shown, default=1.0))  # room for the value labels
    axis.set_yticks(positions)
    axis.set_yticklabels(labels, fontsize=8)
    axis.invert_yaxis()
    axis.set_xlabel(metric)
    return _save(figure, path)
