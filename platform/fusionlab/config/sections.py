"""The config's sections (``data``, ``model``, ``train``, ``resources``, ``tracking``); their strict field types are
``types.py``'s."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from fusionlab.names import display_name_problem

from .params import MOVED_KEYS, param_fields, validate_params
from .params import model_params as params_instance
from .types import Bool, Float, Int, Section


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
    # DataLoader worker processes decoding training and per-epoch evaluation rows (each worker of a run has its own;
    # the rows reach the training process as stored, uint8/uint16, and are normalised and augmented on its device).
    # 0: in the training process. None: min(4, cores - 1) when training on CUDA with more than 2 cores, else 0 (a CPU
    # run's workers would take the cores its model uses; tiny test runs do not pay ~1 s of worker start-up); on Ray
    # the cores are at most resources.cpus_per_worker. The batches do not depend on it: augmentation draws are keyed
    # on (seed, epoch, row).
    num_workers: Int | None = Field(None, ge=0)
    # Ray runs: the node-local directory where a node's workers share one uncompressed copy of each split they read
    # (data/node_cache.py); None: $FUSIONLAB_NODE_CACHE, else fusionlab-node-cache in the temporary directory. Copies
    # unused for 7 days are removed when another is written.
    node_cache: str | None = None

    @field_validator("scale_range")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 < value[0] <= value[1]:
            raise ValueError(f"expected 0 < low <= high, got {list(value)}")
        return value


class ModelConfig(Section):
    name: str = "cen"
    backbone: str = "resnet_mini"
    # Local ImageNet weights: a torchvision-format ResNet file, or SegFormer's mit_bX.pth for a Mix Transformer.
    pretrained: str | None = None
    # Which torchvision ResNet release model.pretrained must be (checked by the file's sha256); "any" skips it.
    pretrained_version: Literal["imagenet1k_v1", "imagenet1k_v2", "any"] = "any"
    # How validation, test scores and the logged model upsample the 1/4-resolution logits to the label's size:
    # bicubic as the references' cv2.resize(INTER_CUBIC), or bilinear (also what the training loss uses).
    eval_upsample: Literal["bilinear", "bicubic"] = "bilinear"
    # Segmentation: the selected model's final scores are also taken over these input scales (and, with eval_flip,
    # their mirror images), logits averaged at full resolution, as <split>_ms/<metric> beside the single-scale
    # <split>/<metric> (DeepLab's protocol: [0.5, 0.75, 1, 1.25, 1.5, 1.75] and a flip). [1.0] and no flip: none.
    eval_scales: list[Float] = Field(default_factory=lambda: [1.0], min_length=1)
    eval_flip: Bool = False
    # Every channel width of the backbone (and the segmentation decoder) times this: 1.0 is the published network;
    # e.g. late fusion at ~0.7 has CEN's parameter count (the report shows #params and FLOPs per sample beside).
    width: Float = Field(1.0, gt=0)
    # The model's own parameters, validated against the params class it registers for its task (models/params.py):
    # e.g. CEN's lambda, threshold, portion, sparsity, penalty; every default explicit after validation.
    params: dict[str, Any] = Field(default_factory=dict, validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, tree: Any) -> Any:
        moved = [key for key in MOVED_KEYS if isinstance(tree, dict) and key in tree]
        if moved:
            raise ValidationError.from_exception_data("ModelConfig", [
                {"type": PydanticCustomError("moved", MOVED_KEYS[key]), "loc": (key,), "input": tree[key]}
                for key in moved])
        return tree

    @field_validator("eval_scales")
    @classmethod
    def _scales_in_bounds(cls, value: list[float]) -> list[float]:
        from fusionlab.models.multiscale import scales_problem

        problem = scales_problem(value)
        if problem:
            raise ValueError(f"{problem}; got {value}")
        return value

    @property
    def multi_scale(self) -> bool:
        """Whether the final scores are also taken multi-scale (or flipped)."""
        from fusionlab.models.multiscale import is_single_scale

        return not is_single_scale(self.eval_scales, self.eval_flip)

    @model_validator(mode="after")
    def _pretrained_fits(self) -> ModelConfig:
        if self.pretrained and self.width != 1.0:
            raise ValueError(f"model.pretrained ({self.pretrained}) holds the published widths; model.width "
                             f"{self.width} would not fit them (width 1.0, or no pretrained weights)")
        return self

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

    @field_validator("params")
    @classmethod
    def _model_params(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if "name" not in info.data or "backbone" not in info.data:
            return value  # the name or backbone is refused already
        if param_fields(info.data["name"], info.data["backbone"]) is None:
            return value  # a model of the other task: prepare's check_task names the pairing against the dataset
        return validate_params(info.data["name"], info.data["backbone"], value)

    @property
    def has_params_class(self) -> bool:
        """Whether the model is registered for its backbone's task (else ``train.prepare.check_task`` refuses it)."""
        return param_fields(self.name, self.backbone) is not None

    def model_params(self):
        """The params instance (``fusionlab.models.params``) of this model for its task."""
        return params_instance(self.name, self.backbone, self.params)

    def build_kwargs(self, num_modalities: int) -> dict[str, Any]:
        """``models.build``'s keyword arguments: ``width`` and the registered constructor's own parameters (CEN's
        ``l1_lambda`` is the effective weight: the reference's per-output penalty is one term of weight
        lambda * (M + 1), the same gradient)."""
        return {"width": self.width, **self.model_params().constructor_kwargs(num_modalities)}


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


class LrScheduleConfig(Section):
    """Within each stage of ``lr_encoder`` / ``lr_decoder``: the stage's rate throughout (``stages``), or TokenFusion's
    ``PolyWarmupAdamW`` per optimiser step (``poly_warmup``): a linear warm-up from ``warmup_ratio`` x the rate over
    ``warmup_iters`` steps, then ``(1 - step / max_iters) ** power`` x the rate, unchanged once ``max_iters`` is
    reached. Its step count starts again at every stage, as the reference builds a new optimiser per stage."""

    type: Literal["stages", "poly_warmup"] = "stages"
    warmup_iters: Int = Field(1500, ge=0)
    warmup_ratio: Float = Field(1e-6, ge=0, le=1)
    max_iters: Int = Field(40000, ge=1)
    power: Float = Field(1.0, ge=0)


class TrainConfig(Section):
    epochs: Int = Field(10, ge=1)
    batch_size: Int = Field(8, ge=1)  # per worker
    # The per-epoch evaluation's batch size, per worker; None: batch_size, or 1 where the dataset's images vary in
    # size. Images of different sizes are batched by size (each batch holds one size), so any value is accepted.
    val_batch_size: Int | None = Field(None, ge=1)
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    # A list is a schedule of equal-length stages; the defaults are the references' (SGD, ImageNet-initialised).
    lr_encoder: Float | list[Float] = [5e-4, 2.5e-4, 1e-4]
    lr_decoder: Float | list[Float] = [3e-3, 1.5e-3, 7e-4]
    lr_schedule: LrScheduleConfig = LrScheduleConfig()
    # At each new stage the optimiser's state (momentum, Adam's moments and step) starts afresh, as the references'
    # new optimisers per stage do; or it carries over.
    restart_each_stage: Bool = False
    momentum: Float = Field(0.9, ge=0, lt=1)
    weight_decay: Float = Field(1e-5, ge=0)
    # Weight decay of the encoder's normalisation parameters (those with "norm" in their name, as TokenFusion's
    # param groups split them); None: weight_decay, in the encoder's one group.
    norm_weight_decay: Float | None = Field(None, ge=0)
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
    # Smoke runs (a rehearsal of a paper grid at full size): at most this many training steps and evaluation batches
    # per worker and epoch. The recipe label says so: such a run reproduces nothing.
    smoke_steps: Int | None = Field(None, ge=1)
    val_every: Int = Field(1, ge=1)
    # None: at each evaluation (val_every), the cadence a resumed run needs without writing the model between two.
    checkpoint_every: Int | None = Field(None, ge=1)
    # The N best-ranked checkpoints are kept, and always the latest (resume reads it): the selected epoch's checkpoint
    # ranks first, so its weights are kept once, in it, and in no later checkpoint (train/selection.py).
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


# The query keys through which pyarrow's S3 URIs (s3://bucket/path?access_key=...) would carry credentials.
PYARROW_SECRET_KEYS = frozenset({"access_key", "secret_key", "session_token"})


class ResourcesConfig(Section):
    # Training workers of one run (DDP). train.batch_size is per worker: the global batch is batch_size x
    # num_workers, recorded as train.global_batch_size and in the recipe label (recipes.py).
    num_workers: Int = Field(1, ge=1)
    # How a run's workers are placed (Ray placement strategy): all on one node (strict_pack: one NCCL group inside a
    # machine, or the run waits for a node that fits it), or packed / spread over nodes where they must.
    placement: Literal["strict_pack", "pack", "spread"] = "strict_pack"
    use_gpu: Bool | Literal["auto"] = "auto"
    cpus_per_worker: Float = Field(1, gt=0)
    # Times Ray Train restarts the worker group after a worker fails (its node lost, a crash), each time from the
    # last checkpoint; -1 is unlimited, 0 fails the run at the first error.
    max_failures: Int = Field(3, ge=-1)
    # Custom Ray resources each Train worker takes besides its CPUs (and GPU), e.g. {"slot": 1}: places a grid's
    # cells on the nodes that declare them (a node type's resource, or a stand-in for a GPU in tests and benchmarks).
    worker_resources: dict[str, Float] = Field(default_factory=dict)
    # Where Ray Train keeps each run, its checkpoints among it (RunConfig.storage_path): the run is <storage_path>/<run
    # name>, where a run started again finds its latest checkpoint. None: <workdir>/ray_results. On a cluster, storage
    # every node reaches: a bucket prefix (s3://bucket/fusionlab/ray_results, gs://...) or an absolute path on NFS.
    # Never credentials (the value is recorded with the run): pyarrow takes them from each node's environment or
    # instance profile, as it takes an S3-compatible store's endpoint (AWS_ENDPOINT_URL=http://minio:9000).
    storage_path: str | None = None
    # How a checkpoint reaches storage_path: before training goes on (sync), or uploaded in the background while the
    # next epochs train (async: off the training step's critical path, for a checkpoint of a GB going to a bucket).
    # Under async, the epoch's report (Tune's metrics too) is registered once its upload ends, so a driver killed
    # meanwhile resumes from the checkpoint before.
    checkpoint_upload: Literal["sync", "async"] = "sync"

    @field_validator("storage_path")
    @classmethod
    def _storage_without_secret(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if "://" not in value:
            if not value.startswith("/"):
                raise ValueError("expected an absolute path or a URI such as s3://bucket/prefix")
            return value
        from urllib.parse import parse_qsl, urlsplit

        from fusionlab.credentials import SECRET_QUERY_KEYS

        parts = urlsplit(value)
        keys = {key.lower() for key, _ in parse_qsl(parts.query)}
        if "@" in parts.netloc or keys & (SECRET_QUERY_KEYS | PYARROW_SECRET_KEYS):
            # "secret": the config's error message leaves the value out (config/tree.py)
            raise PydanticCustomError("secret", "holds credentials, and it is recorded with the run: give them to "
                                                "every node through its environment (AWS_ACCESS_KEY_ID, "
                                                "AWS_SECRET_ACCESS_KEY) or its instance profile instead")
        return value.rstrip("/")

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
    # default: MLFLOW_TRACKING_URI, else sqlite:///<workdir>/mlflow.db. Kept with its password redacted (the full
    # URI stays in the environment: fusionlab/credentials.py), so no param, checkpoint or trial config holds it.
    uri: str | None = None
    # MLflow display names: any text but control characters or both kinds of quote; where one becomes a folder
    # (checkpoints/<run>, ray_results/<run>, reports/<experiment>) it is mapped to a safe one (fusionlab/names.py).
    experiment: str = "fusionlab"
    run_name: str | None = None  # default: derived from the model, data and seed

    @field_validator("experiment", "run_name")
    @classmethod
    def _display_name(cls, value: str | None) -> str | None:
        problem = None if value is None else display_name_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("uri")
    @classmethod
    def _without_secret(cls, value: str | None) -> str | None:
        from fusionlab.credentials import remember_uri

        return None if value is None else remember_uri(value)


