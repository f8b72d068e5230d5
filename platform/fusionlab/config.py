"""The one experiment config: typed, validated at load, shared by the CLI, YAML files and Tune.

Sections: ``data``, ``model``, ``train``, ``resources``, ``tracking`` (and ``search``, used by ``fusionlab tune``).
Unknown keys and bad values are errors that name the dotted key and what was expected. ``--set a.b=value`` overrides
any key; values are parsed as YAML (``1e-3``, ``true``, ``[1, 2]``). Types are strict: an integer or boolean field takes
only an integer or boolean (``true`` is not 1, ``3.0`` and ``"3"`` are not 3); numbers are finite (no NaN or inf).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)


class ConfigError(ValueError):
    """A bad config: the message names the file, the dotted key and what was expected."""


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    return value


Int = Annotated[int, Strict()]
Bool = Annotated[bool, Strict()]
# Not strict: PyYAML reads 1e-3 (no dot) as a string, which pydantic parses; a boolean is refused.
Float = Annotated[float, BeforeValidator(_not_bool)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)


class SynthesizeConfig(Section):
    """Generate the synthetic benchmark at ``data.path`` when no dataset is there yet (deterministic)."""

    train: Int = Field(64, ge=1)
    val: Int = Field(16, ge=1)
    test: Int = Field(16, ge=1)
    size: tuple[Int, Int] = (120, 160)
    seed: Int = 0
    task: Literal["segmentation", "translation"] = "segmentation"  # synthetic-rgbd or synthetic-translation


class DataConfig(Section):
    path: str  # a dataset directory written by `fusionlab data` (manifest.json + shards)
    synthesize: SynthesizeConfig | None = None
    modalities: list[str] | None = None  # input modalities in order; default: all but a translation target
    crop: tuple[Int, Int] | None = None  # training crop (H, W); default: the dataset's image size
    scale_range: tuple[Float, Float] = (0.5, 2.0)
    # After the random scale, the shorter side is raised to at least this many pixels (the references: 350).
    min_short_side: Int | None = Field(None, ge=1)
    # The random scale's interpolation: "reference" = RGB bicubic, depth (and labels) nearest; "bilinear" = every
    # image bilinear (labels always nearest).
    resize: Literal["reference", "bilinear"] = "bilinear"
    # Where an image smaller than the crop is padded: evenly on all sides (the references' Pad) or bottom/right.
    pad: Literal["centre", "bottom_right"] = "bottom_right"
    hflip: Bool = True
    # Translation: validation and test images resized to (H, W) (bilinear, antialiased) before the generator scores
    # them; None: full resolution. The CEN translation reference scores 512-px Taskonomy at 256.
    eval_size: tuple[Int, Int] | None = None
    train_split: str | list[str] = "train"  # a list trains on their union (the references: all of train)
    val_split: str = "val"
    test_split: str | None = "test"  # evaluated once after training (ensemble, full resolution) when the dataset has it

    @field_validator("scale_range")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 < value[0] <= value[1]:
            raise ValueError(f"expected 0 < low <= high, got {list(value)}")
        return value


REFERENCE_CEN_LAMBDA = 2e-4  # yikaiw/CEN's segmentation default, added once per output


class CenConfig(Section):
    # L1 weight on the penalised BN scaling factors. None: the reference's 2e-4 per output, i.e. 2e-4 with
    # penalty per_output and (M + 1) * 2e-4 with penalty once (the same pressure).
    lambda_: Float | None = Field(None, alias="lambda", ge=0)
    threshold: Float = Field(2e-2, ge=0)  # exchange channels whose |gamma| < threshold
    portion: Float | None = Field(None, gt=0, le=1)  # fraction of each bn2 a modality penalises; default 1/M
    # "loss": lambda * sum|gamma| in the loss (the references, SGD); "proximal": a soft-threshold of lr * lambda
    # after every optimizer step, which is what makes the penalty produce zeros under Adam
    sparsity: Literal["loss", "proximal"] = "loss"
    # "per_output": lambda * sum|gamma| added to each output's loss (M branches + the ensemble), as the references;
    # "once": added once. The effective pressure is lambda * (M + 1) or lambda.
    penalty: Literal["per_output", "once"] = "once"

    def resolved_lambda(self, num_modalities: int) -> float:
        if self.lambda_ is not None:
            return self.lambda_
        outputs = 1 if self.penalty == "per_output" else num_modalities + 1
        return round(REFERENCE_CEN_LAMBDA * outputs, 15)  # 6e-4, not 0.0006000000000000001, in the params

    def effective_lambda(self, num_modalities: int) -> float:
        """The weight the penalty really gets per step (what the reference calls lambda times its M + 1 terms)."""
        outputs = num_modalities + 1 if self.penalty == "per_output" else 1
        return self.resolved_lambda(num_modalities) * outputs


class AsymFusionConfig(Section):
    shuffle_groups: Int = Field(5, ge=2)
    shift_offsets: list[tuple[Int, Int]] = [(1, 0), (0, 1), (0, -1), (-1, 0)]


class ModelConfig(Section):
    name: str = "cen"
    backbone: str = "resnet_mini"
    modality: str | None = None  # unimodal: which modality
    pretrained: str | None = None  # local torchvision-format ResNet weights
    # Which torchvision ImageNet release model.pretrained must be (checked by the file's sha256); "any" skips it.
    pretrained_version: Literal["imagenet1k_v1", "imagenet1k_v2", "any"] = "any"
    # RefineNet's residual conv unit adds back relu(x) (the references' in-place ReLU) or x (Light-Weight RefineNet)
    rcu_residual: Literal["post_activation", "pre_activation"] = "pre_activation"
    # How validation, test scores and the logged model upsample the 1/4-resolution logits to the label's size:
    # bicubic as the references' cv2.resize(INTER_CUBIC), or bilinear (also what the training loss uses).
    eval_upsample: Literal["bilinear", "bicubic"] = "bilinear"
    cen: CenConfig = CenConfig()
    asymfusion: AsymFusionConfig = AsymFusionConfig()

    @field_validator("name")
    @classmethod
    def _registered(cls, value: str) -> str:
        from fusionlab.models import list_models

        if value not in list_models(task=None):
            raise ValueError(f"unknown model {value!r}; expected one of {list_models(task=None)}")
        return value

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str) -> str:
        from fusionlab.models import BACKBONES, TRANSLATION_BACKBONES

        known = sorted({*BACKBONES, *TRANSLATION_BACKBONES})
        if value not in known:
            raise ValueError(f"unknown backbone {value!r}; expected one of {known}")
        return value

    def build_kwargs(self, num_modalities: int) -> dict[str, Any]:
        """The registered constructor's own parameters (CEN's ``l1_lambda`` is the effective weight: the reference's
        per-output penalty is one term of weight lambda * (M + 1), the same gradient)."""
        from fusionlab.models import BACKBONES

        kwargs: dict[str, Any] = {}
        if self.backbone in BACKBONES:  # the RefineNet segmenters
            kwargs["rcu_residual"] = self.rcu_residual
        if self.name == "cen":
            kwargs.update(threshold=self.cen.threshold, portion=self.cen.portion,
                          l1_lambda=self.cen.effective_lambda(num_modalities), sparsity=self.cen.sparsity)
        elif self.name == "asymfusion":
            kwargs.update(shuffle_groups=self.asymfusion.shuffle_groups, shift_offsets=self.asymfusion.shift_offsets)
        elif self.name == "unimodal" and self.modality:
            kwargs["modality"] = self.modality
        return kwargs


class GanConfig(Section):
    """Translation: the pix2pix objective, BCE GAN loss + ``l1_weight`` * L1, and the PatchGAN discriminator."""

    l1_weight: Float = Field(100.0, ge=0)
    gan_weight: Float = Field(1.0, ge=0)
    lr_discriminator: Float = Field(2e-4, gt=0)
    discriminator_filters: Int = Field(64, ge=1)
    # "per_branch" (the reference): one PatchGAN, its weights shared by the branches, judges each branch's
    # (own input, output) pair, the ensemble not in the GAN loss; "shared": one discriminator on (all inputs, image)
    # for every branch and the ensemble.
    discriminators: Literal["per_branch", "shared"] = "shared"
    eval_dropout: Bool = False  # score the generator in train mode with dropout on (the reference) instead of eval


class FidConfig(Section):
    """Translation: which features FID/KID use. ``inception`` needs the pytorch-fid weights file (``weights``, else
    $FUSIONLAB_INCEPTION_WEIGHTS, else ~/.cache/fusionlab/); ``auto`` falls back to a small local extractor (its
    figures are labelled and not comparable to published FIDs); ``local`` always uses that one."""

    features: Literal["auto", "inception", "local"] = "auto"
    weights: str | None = None
    kid_subsets: Int = Field(100, ge=1)
    kid_subset_size: Int = Field(1000, ge=2)


class TrainConfig(Section):
    epochs: Int = Field(10, ge=1)
    batch_size: Int = Field(8, ge=1)  # per worker
    optimizer: Literal["sgd", "adam"] = "sgd"
    # A list is a schedule of equal-length stages; the defaults are the references' (SGD, ImageNet-initialised).
    lr_encoder: Float | list[Float] = [5e-4, 2.5e-4, 1e-4]
    lr_decoder: Float | list[Float] = [3e-3, 1.5e-3, 7e-4]
    momentum: Float = Field(0.9, ge=0, lt=1)
    weight_decay: Float = Field(1e-5, ge=0)
    betas: tuple[Float, Float] = (0.9, 0.999)  # Adam's; pix2pix and the translation references use (0.5, 0.999)
    freeze_bn: Bool = False  # the references freeze BN statistics (ImageNet init); from scratch they must train
    amp: Literal["auto", "bf16", "off"] = "auto"  # auto: bf16 autocast on GPU, off on CPU
    # Which epoch's model is kept, scored on test and logged: the best val epoch, the best epoch on the test split
    # (the references' protocol: the per-epoch evaluation runs on test), or the last.
    selection: Literal["best_val", "best_test", "last"] = "best_val"
    # The GPU path (train/device.py); "auto" means on CUDA only, so CPU runs are unchanged by default.
    channels_last: Bool | Literal["auto"] = "auto"  # model and input batches in torch.channels_last
    fused: Bool | Literal["auto"] = "auto"  # fused Adam/SGD kernels (auto: when every parameter is on CUDA)
    cudnn_benchmark: Bool = True  # cuDNN autotuning on CUDA (inputs keep one shape per run: crops)
    compile: Bool = False  # torch.compile the model after it is prepared (DDP-wrapped); checkpoints stay uncompiled
    compile_backend: str = "inductor"  # torch.compile backend; "aot_eager" traces the graphs without generating kernels
    seed: Int = 0
    val_every: Int = Field(1, ge=1)
    checkpoint_every: Int = Field(1, ge=1)
    # The latest N checkpoints are kept (resume reads the latest; the selected epoch's weights travel inside it).
    keep_checkpoints: Int = Field(2, ge=1)
    gan: GanConfig = GanConfig()  # translation only
    fid: FidConfig = FidConfig()  # translation only

    @field_validator("betas")
    @classmethod
    def _betas(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= beta < 1 for beta in value):
            raise ValueError(f"expected two values in [0, 1), got {list(value)}")
        return value

    @field_validator("lr_encoder", "lr_decoder")
    @classmethod
    def _positive(cls, value: float | list[float]) -> float | list[float]:
        # lr 0 trains nothing, silently; in a list of stages, 0 freezes that stage (as long as some stage trains)
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list):
            ok = bool(values) and all(math.isfinite(v) and v >= 0 for v in values) and any(v > 0 for v in values)
        else:
            ok = math.isfinite(value) and value > 0
        if not ok:
            raise ValueError("expected a finite learning rate > 0, or a non-empty list of them per stage (each "
                             "finite and >= 0, where 0 freezes its stage, at least one > 0)")
        return value


class ResourcesConfig(Section):
    num_workers: Int = Field(1, ge=1)
    use_gpu: Bool | Literal["auto"] = "auto"
    cpus_per_worker: Float = Field(1, gt=0)
    # Times Ray Train restarts the worker group after a worker fails (its node lost, a crash), each time from the
    # last checkpoint; -1 is unlimited, 0 fails the run at the first error.
    max_failures: Int = Field(3, ge=-1)
    # Custom Ray resources each Train worker takes besides its CPUs (and GPU), e.g. {"slot": 1}: places a grid's
    # cells on the nodes that declare them (a node type's resource, or a stand-in for a GPU in tests and benchmarks).
    worker_resources: dict[str, Float] = Field(default_factory=dict)

    @field_validator("worker_resources")
    @classmethod
    def _custom_only(cls, value: dict[str, float]) -> dict[str, float]:
        for name, amount in value.items():
            if name in ("CPU", "GPU", "memory", "object_store_memory"):
                raise ValueError(f"{name!r} is not a custom resource: set resources.cpus_per_worker or "
                                 f"resources.use_gpu instead")
            if amount <= 0:
                raise ValueError(f"{name}: expected an amount > 0, got {amount}")
        return value


class TrackingConfig(Section):
    uri: str | None = None  # default: sqlite:///<workdir>/mlflow.db
    experiment: str = "fusionlab"
    run_name: str | None = None  # default: derived from the model, data and seed


class ParameterSpace(Section):
    """One searched parameter: ``loguniform``/``uniform`` over [low, high], ``int`` range, or ``choice`` of values."""

    type: Literal["loguniform", "uniform", "int", "choice"]
    low: Float | None = None
    high: Float | None = None
    values: list[Any] | None = None

    @model_validator(mode="after")
    def _bounds(self) -> ParameterSpace:
        if self.type == "choice":
            if not self.values:
                raise ValueError("a choice needs a non-empty 'values' list")
        elif self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"{self.type} needs low < high, got low={self.low}, high={self.high}")
        elif self.type == "loguniform" and self.low <= 0:
            raise ValueError(f"loguniform needs low > 0, got {self.low}")
        return self

    def probes(self) -> list[tuple[str, Any]]:
        """The values that must each make a valid config: every choice, both ends of a range (field limits are
        bounds, so a range whose ends pass passes inside)."""
        if self.type == "choice":
            return [("value", value) for value in self.values or []]
        if self.type == "int":
            return [("low", int(self.low)), ("high", int(self.high))]
        return [("low", self.low), ("high", self.high)]


class SchedulerConfig(Section):
    type: Literal["asha", "none"] = "asha"
    grace_period: Int = Field(1, ge=1)  # epochs every trial runs before it can be stopped
    reduction_factor: Float = Field(2, gt=1)


class SearchConfig(Section):
    """``fusionlab tune``: Optuna TPE over dotted config keys, early stopping with ASHA on ``metric``."""

    space: dict[str, ParameterSpace]
    metric: str = "val/miou"
    mode: Literal["max", "min"] = "max"
    num_samples: Int = Field(8, ge=1)
    max_concurrent_trials: Int = Field(1, ge=1)
    scheduler: SchedulerConfig = SchedulerConfig()
    seed: Int = 0
    time_budget_s: Float | None = Field(None, gt=0)
    name: str | None = None  # the sweep's name (its directory and MLflow parent run); default from the model


class Config(Section):
    recipe: Literal["reference", "fusionlab"] = "fusionlab"  # fills every unset switch of fusionlab.recipes
    data: DataConfig
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    resources: ResourcesConfig = ResourcesConfig()
    tracking: TrackingConfig = TrackingConfig()
    search: SearchConfig | None = None  # read by `fusionlab tune`

    @model_validator(mode="before")
    @classmethod
    def _recipe_defaults(cls, tree: Any) -> Any:
        from fusionlab.recipes import apply_recipe

        return apply_recipe(tree) if isinstance(tree, dict) else tree

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        modalities = self.data.modalities
        if modalities is not None:
            if len(set(modalities)) != len(modalities) or not modalities:
                raise ValueError(f"data.modalities must be distinct names, got {modalities}")
            count = len(modalities)
            if self.model.name in ("cen", "asymfusion", "concat", "average", "attention") and count < 2:
                raise ValueError(f"model {self.model.name} needs at least 2 modalities, data.modalities is "
                                 f"{modalities}")
            portion = self.model.cen.portion
            if self.model.name == "cen" and portion is not None and portion > 1 / count + 1e-9:
                raise ValueError(f"model.cen.portion must be <= 1/M = {1 / count:.4g} for {count} modalities, "
                                 f"got {portion}")
            if self.model.modality is not None and self.model.modality not in modalities:
                raise ValueError(f"model.modality {self.model.modality!r} is not in data.modalities {modalities}")
            portion_space = self.search.space.get("model.cen.portion") if self.search else None
            if portion_space is not None and (portion_space.high or max(portion_space.values or [0])) > 1 / count:
                raise ValueError(f"search.space.model.cen.portion must stay within (0, 1/M] = (0, {1 / count:.4g}] "
                                 f"for {count} modalities")
        train_splits = self.data.train_split if isinstance(self.data.train_split, list) else [self.data.train_split]
        selecting_on = {"best_val": self.data.val_split, "best_test": self.data.test_split}.get(self.train.selection)
        if self.train.selection == "best_test" and not self.data.test_split:
            raise ValueError("train.selection best_test needs data.test_split (the split it selects on)")
        if selecting_on in train_splits:
            raise ValueError(f"train.selection {self.train.selection} selects on split {selecting_on!r}, which "
                             f"data.train_split {self.data.train_split} trains on; with recipe reference the val "
                             f"split is trained on, so select with best_test (the references) or set "
                             f"data.train_split: train")
        if self.search is not None and self.train.selection == "best_test" and self.search.metric.startswith("val/"):
            raise ValueError(f"search.metric {self.search.metric} is not logged under train.selection best_test "
                             f"(its per-epoch evaluation is on the test split, as test/...); a search should "
                             f"select on val: set train.selection best_val and data.train_split train")
        if self.search is not None:
            known = flatten(self.model_dump(mode="json", by_alias=True))
            unknown = [key for key in self.search.space if key not in known]
            if unknown:
                raise ValueError(f"search.space keys {unknown} are not config keys (e.g. model.cen.lambda, "
                                 f"model.cen.threshold, model.cen.portion, train.lr_encoder)")
            refused = self.refused_search_values()
            if refused:
                raise ValueError("search values a trial would be refused with (every trial would fail):\n    "
                                 + "\n    ".join(refused))
        return self

    def refused_search_values(self) -> list[str]:
        """Each searched value (``ParameterSpace.probes``) set on this config as a trial sets it, and what the
        schema says when it refuses one."""
        base = set_dotted(self.model_dump(mode="json", by_alias=True), "search", None)
        refused = []
        for key, space in (self.search.space if self.search else {}).items():
            for which, value in space.probes():
                try:
                    Config.model_validate(set_dotted(base, key, value))
                except ValidationError as error:
                    reasons = "; ".join(line.strip() for line in _error_lines(error))
                    refused.append(f"search.space.{key}: {which} {value!r}: {reasons}")
        return refused

    def run_name(self) -> str:
        if self.tracking.run_name:
            return self.tracking.run_name
        data = Path(self.data.path).name
        modalities = "+".join(self.data.modalities) if self.data.modalities else "all"
        which = f"-{self.model.modality}" if self.model.modality else ""
        return f"{self.model.name}{which}-{self.model.backbone}-{data}-{modalities}-seed{self.train.seed}"

    def flat(self) -> dict[str, Any]:
        """Dotted parameters for tracking (``model.cen.lambda``, ``train.epochs``, ...), with the CEN penalty's
        resolved and effective lambda when the modalities are known."""
        flat = flatten(self.model_dump(mode="json", by_alias=True))
        if self.data.modalities and self.model.name == "cen":
            count = len(self.data.modalities)
            flat["model.cen.lambda"] = self.model.cen.resolved_lambda(count)
            flat["model.cen.effective_lambda"] = self.model.cen.effective_lambda(count)
        return flat


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``["train.epochs=2", "model.cen.lambda=1e-3"]`` applied to a nested dict (values parsed as YAML)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        tree = set_dotted(tree, key.strip(), yaml.safe_load(raw) if raw.strip() else None)
    return tree


def get_dotted(tree: dict[str, Any], key: str) -> tuple[bool, Any]:
    """``(True, value)`` at the dotted ``key`` of a nested dict, ``(False, None)`` where a part is missing."""
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """A copy of ``tree`` with ``value`` at the dotted ``key`` (intermediate mappings created as needed)."""
    tree = dict(tree)
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        node[part] = dict(child) if isinstance(child, dict) else {}
        node = node[part]
    node[parts[-1]] = value
    return tree


def _describe(error: ValidationError, origin: str) -> str:
    return f"{origin}: invalid config\n" + "\n".join(_error_lines(error))


# The parts of an error's location that name a member of a union (``bool | Literal["auto"]``), not a key.
_UNION_MEMBER = re.compile(r"[\[\]()',]|^(bool|int|float|str)$")


def _error_lines(error: ValidationError) -> list[str]:
    """One line per key; a value a union refuses is one line with each member's reason."""
    reasons: dict[str, list[str]] = {}
    got: dict[str, str] = {}
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        if not item["loc"]:  # a check across sections: its message names the keys
            reasons.setdefault(f"  {message}", [])
            continue
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "missing":
            message = "required key is missing"
        key = ".".join(str(part) for part in item["loc"] if not _UNION_MEMBER.search(str(part)))
        got.setdefault(key, f" (got {item['input']!r})" if item["type"] not in ("missing", "extra_forbidden") else "")
        if message not in reasons.setdefault(key, []):
            reasons[key].append(message)
    return [f"  {key}: {' or '.join(messages)}{got[key]}" if messages else key for key, messages in reasons.items()]


def parse_config(tree: dict[str, Any], origin: str = "config", require_data: bool = True) -> Config:
    """Validate a config tree; with ``require_data`` (default) the local dataset must exist and is checked
    against ``data.modalities`` (``False`` for dry runs of grids whose data lives elsewhere)."""
    if not isinstance(tree, dict):
        raise ConfigError(f"{origin}: expected a mapping with sections data, model, train, resources, tracking")
    try:
        config = Config.model_validate(tree)
    except ValidationError as error:
        raise ConfigError(_describe(error, origin)) from None
    if "://" in config.data.path or not require_data:
        return config  # remote storage: checked by the workers that read it
    return resolve_modalities(config, tree, origin)


def resolve_modalities(config: Config, tree: dict[str, Any], origin: str) -> Config:
    """Check ``data.modalities`` against the local dataset and make the default explicit (it is then recorded)."""
    from fusionlab.data import DatasetError, Manifest

    try:
        manifest = Manifest.load(config.data.path)
    except DatasetError as error:
        raise ConfigError(f"{origin}: data.path: {error} (create a dataset with `fusionlab data synth` or "
                          f"`fusionlab data convert`)") from None
    check_task(config, manifest, origin)
    available = [m for m in manifest.modalities if m != manifest.target]
    chosen = config.data.modalities or available
    unknown = [m for m in chosen if m not in available]
    if unknown:
        raise ConfigError(f"{origin}: data.modalities: {unknown} not in dataset {manifest.name!r}, which has "
                          f"{available}")
    if config.data.modalities == chosen:
        return config
    return parse_config({**tree, "data": {**tree.get("data", {}), "modalities": chosen}}, origin)


def check_task(config: Config, manifest, origin: str) -> None:
    """The model and backbone must be ones for the dataset's task (segmentation or translation)."""
    from fusionlab.models import BACKBONES, TRANSLATION_BACKBONES, list_models

    backbones = TRANSLATION_BACKBONES if manifest.task == "translation" else BACKBONES
    models = list_models(task=manifest.task)
    if config.model.name not in models:
        raise ConfigError(f"{origin}: model.name: {config.model.name!r} is not a {manifest.task} model (dataset "
                          f"{manifest.name!r} is {manifest.task}); expected one of {models}")
    if config.model.backbone not in backbones:
        raise ConfigError(f"{origin}: model.backbone: {config.model.backbone!r} is not a {manifest.task} backbone "
                          f"(dataset {manifest.name!r}); expected one of {sorted(backbones)}")
    if config.search is not None:
        others = ("/fid", "/kid") if manifest.task == "segmentation" else ("/miou", "/pixel_acc", "/mean_acc")
        if config.search.metric.endswith(others):
            hint = "val/fid with search.mode min" if manifest.task == "translation" else "val/miou"
            raise ConfigError(f"{origin}: search.metric: {config.search.metric!r} is not logged by {manifest.task} "
                              f"runs (dataset {manifest.name!r}); use e.g. {hint}")


def check_batch_fits(config: Config, workers: int) -> None:
    """Training drops the last incomplete batch: a train.batch_size above a worker's share of the train split trains
    zero steps (loss NaN, a finished run). Checked where the manifest is readable (a missing one is reported
    elsewhere); for a sweep, the largest batch its search may sample is checked too."""
    from fusionlab.data import DatasetError, Manifest

    if "://" in config.data.path:
        return
    try:
        rows = Manifest.load(config.data.path).rows(config.data.train_split)
    except DatasetError:
        return
    sizes = {"train.batch_size": config.train.batch_size}
    searched = config.search.space.get("train.batch_size") if config.search else None
    if searched is not None:  # its values are integers: checked against the field at load
        sizes["search.space.train.batch_size"] = max(value for _, value in searched.probes())
    for key, size in sizes.items():
        if size > rows // workers:
            share = f", {rows // workers} per worker for {workers} workers" if workers > 1 else ""
            raise ConfigError(f"{key} {size} is larger than data.train_split {config.data.train_split!r} ({rows} "
                              f"rows{share}): no complete batch, no training step; use a batch size <= "
                              f"{max(rows // workers, 1)}")


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> Config:
    path = Path(path)
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML ({error})") from None
    tree = apply_overrides(tree, overrides or [])
    tree = absolute_data_path(tree, path.parent)
    create_synthetic_data(tree)
    return parse_config(tree, origin=str(path))


def absolute_data_path(tree: dict[str, Any], config_dir: Path) -> dict[str, Any]:
    """Workers run elsewhere: a relative ``data.path`` becomes absolute (the current directory first, then the
    config file's directory if the dataset is there)."""
    data = tree.get("data") if isinstance(tree, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("path"), str) or "://" in data["path"]:
        return tree
    relative = Path(data["path"]).expanduser()
    if relative.is_absolute():
        return tree
    resolved = Path.cwd() / relative
    if not resolved.exists() and (config_dir / relative).exists():
        resolved = config_dir / relative
    return {**tree, "data": {**data, "path": str(resolved.resolve())}}


def create_synthetic_data(tree: dict[str, Any]) -> None:
    """``data.synthesize``: write the synthetic dataset at ``data.path`` if none is there (so a fresh clone runs)."""
    data = tree.get("data") if isinstance(tree, dict) else None
    if not isinstance(data, dict) or not data.get("synthesize") or "path" not in data:
        return
    target = Path(str(data["path"]))
    if "://" in str(target) or (target / "manifest.json").is_file():
        return
    try:
        spec = SynthesizeConfig.model_validate(data["synthesize"])
    except ValidationError as error:
        raise ConfigError(_describe(error, "data.synthesize")) from None
    from fusionlab.data.synthetic import write_synthetic
    from fusionlab.data.synthetic_translation import write_synthetic_translation

    write = write_synthetic_translation if spec.task == "translation" else write_synthetic
    write(target, train=spec.train, val=spec.val, test=spec.test, size=spec.size, seed=spec.seed)
