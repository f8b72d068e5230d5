"""Image-to-image translation: a generator and its PatchGAN discriminator (the objective is in ``translation``),
selected on the lowest ensemble FID; per epoch an image grid, at the end the selected generator's test scores."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fusionlab.config import Config
from fusionlab.data import Manifest
from fusionlab.fid import resolve_extractor
from fusionlab.models import FusionModel, build, build_discriminator
from fusionlab.models.discriminator import build_branch_discriminator
from fusionlab.tracking.tags import FID_FEATURES_TAG

from .context import WorkerContext
from .device import maybe_compile, to_device, use_fused
from .optim import build_optimizer, set_epoch_lr, stage_lr
from .steps import Draw, Evaluation, autocast, encoder_lr, unwrap
from .translation import evaluate_translation, scoring_options, train_epoch


def build_generator(config: Config, manifest: Manifest) -> FusionModel:
    return build(config.model.name, backbone=config.model.backbone, task="translation",
                 num_classes=manifest.modalities[manifest.target].channels, modalities=config.data.modalities,
                 **config.model.build_kwargs(len(config.data.modalities)))


def build_pair(config: Config, manifest: Manifest) -> tuple[FusionModel, nn.Module]:
    """The generator and its discriminator (``train.gan.discriminators``: see ``translation``'s docstring)."""
    generator = build_generator(config, manifest)
    out_channels = manifest.modalities[manifest.target].channels
    base = config.train.gan.discriminator_filters
    if config.train.gan.discriminators == "per_branch":
        return generator, build_branch_discriminator(branch_channels(generator), out_channels, base=base)
    return generator, build_discriminator(len(config.data.modalities), out_channels, base=base)


def branch_channels(generator: FusionModel) -> int:
    """Channels of one branch's input (3; 3 * M for the early-fusion concat's single branch)."""
    probe = torch.zeros(len(generator.modalities), 1, generator.in_channels, 1, 1)
    return generator.branch_inputs(probe).shape[2]


def discriminator_optimizer(discriminator: nn.Module, config: Config) -> torch.optim.Optimizer:
    return torch.optim.Adam(discriminator.parameters(), lr=config.train.gan.lr_discriminator,
                            betas=config.train.betas, fused=use_fused(config.train, discriminator.parameters()) or None)


def discriminator_lr(config: Config, epoch: int) -> float:
    """``train.gan.lr_discriminator`` scaled as the decoder's stage schedule scales its first rate."""
    first = stage_lr(config.train.lr_decoder, 0, config.train.epochs)
    if first == 0:
        return config.train.gan.lr_discriminator
    return config.train.gan.lr_discriminator * stage_lr(config.train.lr_decoder, epoch, config.train.epochs) / first


def check_feature_weights(config: Config) -> None:
    """Before any worker starts: the Inception file FID/KID were asked to use must be there (the error says where
    it was looked for and how to get it)."""
    from fusionlab.fid import inception_weights_path
    from fusionlab.fid.inception import InceptionWeightsMissing, missing_weights_message

    settings = config.train.fid
    if settings.features == "inception" or (settings.features == "auto" and settings.weights):
        path = inception_weights_path(settings.weights)
        if not path.is_file():
            raise InceptionWeightsMissing(missing_weights_message(path))


def feature_extractor(config: Config, device: torch.device):
    extractor = resolve_extractor(config.train.fid.features, config.train.fid.weights)
    if isinstance(extractor, nn.Module):
        extractor.to(device).eval()
    return extractor


@torch.no_grad()
def test_scores(core: FusionModel, config: Config, manifest: Manifest, device: torch.device,
                extractor) -> dict[str, float]:
    """The test split once, on rank 0 alone: ``test/fid``, ``test/kid``, ``test/l1`` (and per branch)."""
    from fusionlab.data.torch_dataset import ShardDataset

    dataset = ShardDataset(config.data.path, config.data.test_split, config.data.modalities)
    batches = torch.utils.data.DataLoader(dataset, batch_size=config.train.batch_size)
    metrics, _ = evaluate_translation(core, batches, config.train.fid, device, manifest, list(config.data.modalities),
                                      extractor, gather=lambda tensor: tensor, prefix="test",
                                      **scoring_options(config))
    return metrics


class TranslationTask:
    """The discriminator and its Adam state travel in every checkpoint (``discriminator``,
    ``discriminator_optimizer``), so a resumed run goes on against the discriminator it had."""

    metric, lower_is_better = "fid", True

    def __init__(self, config: Config, manifest: Manifest):
        self.config, self.manifest = config, manifest
        self.discriminator: nn.Module | None = None
        self.discriminator_optimizer: torch.optim.Optimizer | None = None
        self.extractor = None  # the FID/KID features, loaded in prepare

    def build(self, device: torch.device) -> tuple[nn.Module, torch.optim.Optimizer]:
        # on the device before the optimisers are built: a fused optimiser needs its parameters there
        generator, discriminator = (to_device(module, self.config.train, device)
                                    for module in build_pair(self.config, self.manifest))
        optimizer = build_optimizer(generator, self.config.train)
        self.discriminator = discriminator
        self.discriminator_optimizer = discriminator_optimizer(discriminator, self.config)
        return generator, optimizer

    def extra_state(self) -> dict[str, Any]:
        return {"discriminator": unwrap(self.discriminator).state_dict(),
                "discriminator_optimizer": self.discriminator_optimizer.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.discriminator.load_state_dict(state["discriminator"])
        self.discriminator_optimizer.load_state_dict(state["discriminator_optimizer"])

    def prepare(self, ctx: WorkerContext) -> None:
        self.discriminator = maybe_compile(ctx.prepare_model(self.discriminator), self.config.train)
        self.extractor = feature_extractor(self.config, ctx.device)

    def run_tags(self) -> dict[str, str]:
        return {FID_FEATURES_TAG: self.extractor.name}

    def train_epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer, ctx: WorkerContext,
                    epoch: int) -> dict[str, float]:
        set_epoch_lr(optimizer, self.config.train, epoch)
        for group in self.discriminator_optimizer.param_groups:
            group["lr"] = discriminator_lr(self.config, epoch)
        core = unwrap(model)

        def after_generator_step() -> None:  # CEN's proximal L1 step, at the encoder's current rate
            core.after_optimizer_step(encoder_lr(optimizer))

        return train_epoch(model, self.discriminator, ctx.train_batches(epoch),
                           (optimizer, self.discriminator_optimizer), self.config, ctx,
                           self.manifest.modalities[self.manifest.target], epoch,
                           lambda: autocast(self.config, ctx.device), after_generator_step)

    def evaluate(self, model: nn.Module, ctx: WorkerContext, keep_examples: int, prefix: str) -> Evaluation:
        metrics, examples = evaluate_translation(
            model, ctx.val_batches(), self.config.train.fid, ctx.device, self.manifest,
            list(self.config.data.modalities), self.extractor, ctx.all_gather, keep_examples=keep_examples,
            prefix=prefix, **scoring_options(self.config))
        return Evaluation(metrics, {"examples": examples})

    def log_epoch_extras(self, tracker: Any, epoch: int, core: FusionModel, evaluation: Evaluation) -> None:
        from fusionlab.tracking import plots

        examples, modalities = evaluation.kept["examples"], list(self.config.data.modalities)
        tracker.log_figure(lambda path: plots.translation_grid(examples, modalities, core.branch_names(), path),
                           f"images/epoch_{epoch:04d}.png")

    def test_scores(self, core: FusionModel, device: torch.device) -> dict[str, float]:
        return test_scores(core, self.config, self.manifest, device, self.extractor)

    def multi_scale_scores(self, core: FusionModel, device: torch.device) -> dict[str, float]:
        return {}  # the config refuses model.eval_scales for translation: images are scored as generated

    def figures(self, core: FusionModel, kept: dict[str, Any]) -> dict[str, Draw]:
        from fusionlab.tracking import plots

        return {
            "gamma_histograms.png": lambda path: plots.gamma_histograms(core, path),
            "exchange_by_layer.png": lambda path: plots.exchange_by_layer(core, path),
            "translations.png": lambda path: plots.translation_grid(kept.get("examples", []), list(core.modalities),
                                                                    core.branch_names(), path),
        }

    def predictor(self, core: FusionModel) -> nn.Module:
        from fusionlab.inference.servable import translation_servable

        return translation_servable(core, self.manifest)
