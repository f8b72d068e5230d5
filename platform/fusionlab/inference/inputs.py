"""What to predict on: an Arrow dataset's splits, or a folder of aligned images ``DIR/<modality>/<stem>.<png|jpg>``.

Both yield batches of model input normalised exactly as training does (``fusionlab.data.transforms.prepare`` with
the modality specs the model was trained on). Folder images are checked against those specs up front (file headers
only), so a mismatch stops the run before any inference.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fusionlab.data import DatasetError, LabelSpec, Manifest, ModalitySpec, Sample
from fusionlab.data.manifest import MANIFEST_NAME
from fusionlab.data.torch_dataset import ShardDataset
from fusionlab.data.transforms import prepare

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# PIL mode -> (numpy dtype, channels) of np.asarray(image)
MODES = {"L": ("uint8", 1), "RGB": ("uint8", 3), "I;16": ("uint16", 1), "I;16L": ("uint16", 1),
         "I;16B": ("uint16", 1), "I;16N": ("uint16", 1), "I": ("int32", 1), "F": ("float32", 1),
         "LA": ("uint8", 2), "RGBA": ("uint8", 4), "CMYK": ("uint8", 4), "1": ("bool", 1)}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass
class Batch:
    ids: list[str]  # file-name-safe ids (the sample_id or the stem)
    sources: list[str]  # per sample, where it came from
    images: torch.Tensor  # [B, M, 3, H, W] normalised model input


def model_specs(predictor) -> dict[str, ModalitySpec]:
    """The ModalitySpecs the model was trained on (empty for a model logged without them)."""
    specs = getattr(predictor, "input_specs", None) or {}
    return {name: ModalitySpec(**{**spec, "mean": tuple(spec["mean"]), "std": tuple(spec["std"])})
            for name, spec in specs.items()}


def check_input_specs(root: str | os.PathLike, manifest: Manifest, predictor) -> None:
    """The dataset stores each of the model's inputs as the model was trained on them (dtype, channels, scale, mean,
    std); a model logged without specs is not checked. ``predict`` and ``evaluate`` both refuse a mismatch."""
    for name, spec in model_specs(predictor).items():
        have = manifest.modalities.get(name)
        if have is None:
            raise DatasetError(f"{root}: the model's input {name!r} is not a modality of this dataset (it has "
                               f"{list(manifest.modalities)})")
        if (have.dtype, have.channels, have.scale, have.mean, have.std) != \
                (spec.dtype, spec.channels, spec.scale, spec.mean, spec.std):
            raise DatasetError(f"{root}: modality {name!r} is {have.dtype} x{have.channels} (scale "
                               f"{have.scale:g}, mean {have.mean}, std {have.std}); the model was trained on "
                               f"{spec.dtype} x{spec.channels} (scale {spec.scale:g}, mean {spec.mean}, "
                               f"std {spec.std})")


def safe_id(text: str) -> str:
    return _UNSAFE.sub("_", text) or "_"


def _check_unique(ids: list[str], originals: list[str], where: str, hint: str = "") -> None:
    seen: dict[str, str] = {}
    for safe, original in zip(ids, originals, strict=True):
        if safe in seen:
            raise DatasetError(f"{where}: samples {seen[safe]!r} and {original!r} would both be written as "
                               f"{safe}.png{hint}")
        seen[safe] = original


class ArrowInputs:
    """The model's modalities of one or every split of a fusionlab dataset; batched when the image size is fixed."""

    def __init__(self, root: str | os.PathLike, predictor, split: str | None = None):
        self.root = Path(root)
        self.manifest = Manifest.load(self.root)
        splits = [split] if split else list(self.manifest.splits)
        self.modalities = list(predictor.modalities)
        check_input_specs(self.root, self.manifest, predictor)
        self.datasets = [ShardDataset(self.root, name, self.modalities) for name in splits]
        self.specs = {m: self.manifest.modalities[m] for m in self.modalities}
        self.sample_ids = [str(i) for d in self.datasets for i in d.table.column("sample_id").to_pylist()]
        self.ids = [safe_id(i) for i in self.sample_ids]
        _check_unique(self.ids, self.sample_ids, f"{self.root} (splits {', '.join(splits)})",
                      "; predict one split at a time with --split" if len(splits) > 1 else "")
        self.sources = [f"{shard.file}#{row}" for d in self.datasets for shard in self.manifest.shards(d.split)
                        for row in range(shard.rows)]

    def __len__(self) -> int:
        return len(self.ids)

    def batches(self, batch_size: int) -> Iterator[Batch]:
        size = batch_size if self.manifest.image_size else 1
        start = 0
        for dataset in self.datasets:
            for batch in torch.utils.data.DataLoader(dataset, batch_size=size):
                count = batch["image"].shape[0]
                yield Batch(self.ids[start:start + count], self.sources[start:start + count], batch["image"])
                start += count


@dataclass(frozen=True)
class _FolderSample:
    stem: str
    files: dict[str, Path]  # modality -> file
    size: tuple[int, int]  # (H, W)


class FolderInputs:
    """``DIR/<modality>/<stem>.<png|jpg>`` per model modality, matched by stem, one sample per batch."""

    def __init__(self, root: str | os.PathLike, predictor):
        self.root = Path(root)
        self.modalities = list(predictor.modalities)
        self.specs = model_specs(predictor)
        missing = [m for m in self.modalities if m not in self.specs]
        if missing:
            raise DatasetError(f"the model carries no input spec for {missing} (logged before specs were recorded); "
                               f"predict on an Arrow dataset instead of an image folder")
        # Only the inputs' decoding matters here; a translation model has no classes, so a one-name label stands in.
        classes = tuple(getattr(predictor, "classes", None) or ("output",))
        self.manifest = Manifest("images", "segmentation", self.specs,
                                 LabelSpec(classes, getattr(predictor, "ignore_index", 255)))
        self.samples = self._discover()
        self.ids = [safe_id(s.stem) for s in self.samples]
        _check_unique(self.ids, [s.stem for s in self.samples], str(self.root))

    def _files(self, modality: str) -> dict[str, Path]:
        folder = self.root / modality
        if not folder.is_dir():
            present = sorted(p.name for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []
            raise DatasetError(f"{folder}: no such folder; the model needs one folder per input modality "
                               f"{self.modalities} under {self.root} (found {present or 'none'})")
        files: dict[str, Path] = {}
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
                continue
            if path.stem in files:
                raise DatasetError(f"{path} and {files[path.stem]} share the stem {path.stem!r}; keep one")
            files[path.stem] = path
        return files

    def _discover(self) -> list[_FolderSample]:
        files = {m: self._files(m) for m in self.modalities}
        stems = sorted(set().union(*(f.keys() for f in files.values())))
        if not stems:
            raise DatasetError(f"{self.root}: no {'/'.join(IMAGE_SUFFIXES)} images under "
                               f"{', '.join(m + '/' for m in self.modalities)}")
        samples = []
        for stem in stems:
            have = {m: files[m][stem] for m in self.modalities if stem in files[m]}
            lacking = [m for m in self.modalities if m not in have]
            if lacking:
                example = next(iter(have.values()))
                raise DatasetError(f"{example} has no matching {' or '.join(lacking)} image (expected "
                                   f"{self.root / lacking[0] / stem}.png or .jpg)")
            sizes = {m: self._check_header(m, path) for m, path in have.items()}
            if len(set(sizes.values())) > 1:
                listing = ", ".join(f"{have[m]} is {h}x{w}" for m, (h, w) in sizes.items())
                raise DatasetError(f"images of {stem!r} differ in size (HxW): {listing}")
            samples.append(_FolderSample(stem, have, sizes[self.modalities[0]]))
        return samples

    def _check_header(self, modality: str, path: Path) -> tuple[int, int]:
        try:
            with Image.open(path) as image:
                mode, (width, height) = image.mode, image.size
        except Exception as error:  # PIL raises several types for damaged files
            raise DatasetError(f"{path}: unreadable image ({type(error).__name__}: {error})") from None
        dtype, channels = MODES.get(mode, (None, None))
        self._check_format(modality, path, dtype, channels, f"a {mode} image")
        return height, width

    def _check_format(self, modality: str, path: Path, dtype: str | None, channels: int | None, what: str) -> None:
        spec = self.specs[modality]
        if (dtype, channels) == (spec.dtype, spec.channels):
            return
        found = f"{what} ({dtype}, {channels} channel(s))" if dtype else what
        hint = " - an 8-bit image where 16-bit values are expected" if (dtype, spec.dtype) == ("uint8", "uint16") \
            else ""
        raise DatasetError(f"{path}: {found}{hint}; the model's {modality!r} input expects {spec.dtype} with "
                           f"{spec.channels} channel(s)")

    def _load(self, sample: _FolderSample) -> Sample:
        arrays = {}
        for modality, path in sample.files.items():
            try:
                with Image.open(path) as image:
                    array = np.asarray(image)
            except Exception as error:  # changed since discovery, or damaged past its header
                raise DatasetError(f"{path}: unreadable image ({type(error).__name__}: {error})") from None
            channels = 1 if array.ndim == 2 else array.shape[2]
            self._check_format(modality, path, array.dtype.name, channels, "the decoded image")
            if array.shape[:2] != sample.size:
                raise DatasetError(f"{path}: decoded {array.shape[0]}x{array.shape[1]}, its header said "
                                   f"{sample.size[0]}x{sample.size[1]} (changed while predicting?)")
            arrays[modality] = array
        return Sample(sample.stem, "", arrays)

    def __len__(self) -> int:
        return len(self.samples)

    def batches(self, batch_size: int = 1) -> Iterator[Batch]:
        """One sample at a time: folder images may differ in size."""
        for sample, sample_id in zip(self.samples, self.ids, strict=True):
            image = prepare(self._load(sample), self.manifest, self.modalities)["image"]
            sources = ";".join(str(sample.files[m]) for m in self.modalities)
            yield Batch([sample_id], [sources], image[None])


def open_inputs(root: str | os.PathLike, predictor, split: str | None = None) -> ArrowInputs | FolderInputs:
    """An Arrow dataset when ``root`` has a manifest, otherwise a folder of per-modality images."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"input directory not found: {root}")
    if (root / MANIFEST_NAME).is_file():
        return ArrowInputs(root, predictor, split)
    if split:
        raise DatasetError(f"{root}: --split applies to Arrow datasets; this is an image folder (no {MANIFEST_NAME})")
    return FolderInputs(root, predictor)
