"""Every MLflow tag key fusionlab writes or reads (``fusionlab.*``, and the ``mlflow.*`` ones it sets itself), in one
place: a run's record is read back by other commands (``grid``, ``report``, ``promote``), so writer and reader must
agree on each name. No mlflow import here."""

from __future__ import annotations

from fusionlab.data.verify import VERIFIED_TAG as VERIFIED_TAG  # data/ may not import tracking/: defined there

# --- MLflow's own tags ----------------------------------------------------------------------------------------------
RUN_NAME_TAG = "mlflow.runName"
PARENT_RUN_ID_TAG = "mlflow.parentRunId"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"  # on experiments: the UI opens "custom_model_development" on its runs

# --- a training run: its identity and life (tracking/lifecycle.py) ---------------------------------------------------
RUN_KEY_TAG = "fusionlab.run_key"
KIND_TAG = "fusionlab.kind"  # "train" for a training run; "sweep" / "grid" for a parent run
LAUNCH_TAG = "fusionlab.launch"  # the id of the driver launch that last opened the run (payload["launch"])
STARTS_TAG = "fusionlab.starts"  # how many times a training loop opened the run (Ray retries included)
ERROR_TAG = "fusionlab.error"  # "<type>: <message>" of the failure that ended the run; error.txt has the traceback
PREVIOUS_ERROR_TAG = "fusionlab.previous_error"  # the error of the launch before this one, when the run is resumed
FINAL_TAG = "fusionlab.final"  # "logged" once the selected model, its test scores and plots are logged
CHANGED_PREFIX = "fusionlab.changed."  # + key: "<before> -> <after>" for a safe change made on resume
OVERRIDES_TAG = "fusionlab.param_overrides"  # JSON {key: value} of those changes: the params as the run ends
STOPPED_EARLY_TAG = "fusionlab.stopped_early"  # "true": a sweep's scheduler stopped the trial (not a failure)

# --- what a training run trained: data, model, recipe ----------------------------------------------------------------
DATASET_TAG = "fusionlab.dataset"
TASK_TAG = "fusionlab.task"  # segmentation | translation
MANIFEST_TAG = "fusionlab.manifest_sha256"
MODEL_TAG = "fusionlab.model"  # model.name
PARAMETERS_TAG = "fusionlab.parameters"  # the model's parameter count
FLOPS_TAG = "fusionlab.flops"  # forward FLOPs of one sample at the dataset's image size (convs and matmuls)
MODALITIES_TAG = "fusionlab.modalities"  # comma-separated, in input order
RECIPE_TAG = "fusionlab.recipe"  # reference | fusionlab | custom: ... (config/recipes.py: recipe_label)
SELECTION_TAG = "fusionlab.selection"  # train.selection (best_val | best_test | last), set by the training loop
SELECTION_SPLIT_TAG = "fusionlab.selection_split"  # the split the kept epoch was chosen on; "none" for last
FID_FEATURES_TAG = "fusionlab.fid_features"  # translation: the extractor FID/KID were computed with
# segmentation: how <split>_ms/<metric> were scored ("multi-scale 0.5,...,1.75 + flip"); "single-scale": none were
EVAL_PROTOCOL_TAG = "fusionlab.eval_protocol"
PRETRAINED_SHA256_TAG = "fusionlab.pretrained.sha256"  # the model.pretrained file's
PRETRAINED_RELEASE_TAG = "fusionlab.pretrained.release"  # e.g. "resnet101 imagenet1k_v1", or "unknown"

# --- an imported checkpoint (tracking/imports.py) --------------------------------------------------------------------
ORIGIN_TAG = "fusionlab.origin"  # "import": the weights were not trained by fusionlab
IMPORT_SOURCE_TAG = "fusionlab.import.source"
IMPORT_SHA256_TAG = "fusionlab.import.sha256"

# --- sweeps and grids ------------------------------------------------------------------------------------------------
SWEEP_KEY_TAG = "fusionlab.sweep_key"  # a sweep's or grid's parent run, found again by it
GRID_TAG = "fusionlab.grid"  # grid.name
CELL_TAG = "fusionlab.cell"  # the cell's label
PAPER_TAG = "fusionlab.paper"  # JSON: the cell's published figures and their source
# on a grid's parent run, set by each launch (tune/grid_runner.py): the part of the grid it ran and how much is done
GRID_CELLS_TAG = "fusionlab.grid.cells"  # "all", or the --cells slugs, comma-separated
GRID_SEEDS_TAG = "fusionlab.grid.seeds"  # "all", or the --seeds, comma-separated
GRID_SELECTED_TAG = "fusionlab.grid.selected_runs"  # "<runs the launch chose> of <the grid's runs>"
GRID_DONE_TAG = "fusionlab.grid.done_runs"  # "<done> of <the grid's runs>", as the launch ended

# --- promotions, on registered model versions (tracking/registry.py) -------------------------------------------------
class PromotionTags:
    """The keys, all under ``PREFIX``, of what a promotion records on the model version it registers."""

    PREFIX = "fusionlab.promotion."
    PREVIOUS_VERSION = PREFIX + "previous_version"  # the alias holder it replaced, or "none"
    PREVIOUS_RUN_ID = PREFIX + "previous_run_id"
    PREVIOUS_VALUE = PREFIX + "previous_value"  # the holder's metric ("none" if it had none)
    METRIC = PREFIX + "metric"
    VALUE = PREFIX + "value"
    MODE = PREFIX + "mode"
    RUN_ID = PREFIX + "run_id"
    RUN_NAME = PREFIX + "run_name"
    EXPERIMENT = PREFIX + "experiment"
    CONFIG = PREFIX + "config"  # the run's params as compact JSON
    MANIFEST = PREFIX + "manifest_sha256"
    MODEL_URI = PREFIX + "model_uri"
    ALIAS = PREFIX + "alias"
    PROMOTED_AT = PREFIX + "promoted_at"  # UTC, ISO 8601
    FORCED = PREFIX + "forced"  # "true" / "false"
    OVERRIDDEN = PREFIX + "overridden"  # forced only: the guard's reasons that --force overrode
