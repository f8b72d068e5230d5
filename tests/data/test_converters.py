"""Converters: tiny inputs written in each dataset's real format, converted, read back and compared pixel by pixel."""

from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from PIL import Image

from fusionlab.data import DatasetError, DatasetReader, Manifest
from fusionlab.data.converters import CONVERTERS, convert
from fusionlab.data.converters.common import split_of
from fusionlab.data.converters.nyudv2 import NYU40_CLASSES

H, W = 12, 16
rng = np.random.default_rng(0)


def save_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def random_rgb(height: int = H, width: int = W) -> np.ndarray:
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def read_back(out: Path) -> dict[str, object]:
    reader = DatasetReader(out)
    reader.verify()
    return {sample.sample_id: sample for split in reader.manifest.splits for sample in reader.iter_samples(split)}


def assert_nothing_left(out: Path) -> None:
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.partial-*"))


# -- NYUDv2, official labelled .mat --------------------------------------------------------------------------------
def write_nyu_mat(src: Path, count: int = 4) -> dict[str, np.ndarray]:
    src.mkdir(parents=True, exist_ok=True)
    rgb = rng.integers(0, 256, (count, H, W, 3), dtype=np.uint8)
    depth_mm = rng.integers(500, 10_000, (count, H, W)).astype(np.uint16)
    metres = (depth_mm / 1000).astype(np.float32)
    metres[0, 0, 0], metres[0, 0, 1] = 70.0, np.nan  # beyond uint16 millimetres; NaN
    depth_mm[0, 0, 0], depth_mm[0, 0, 1] = 65535, 0
    raw = rng.integers(0, 895, (count, H, W)).astype(np.uint16)
    raw[0, 1, :3], raw[0, 2, :2] = 0, (1, 894)  # unlabelled; the first and last NYU class ids
    with h5py.File(src / "nyu_depth_v2_labeled.mat", "w", userblock_size=512) as mat:  # MATLAB v7.3 = HDF5
        mat["images"] = rgb.transpose(0, 3, 2, 1)  # MATLAB's column-major (N, 3, W, H)
        mat["depths"] = metres.transpose(0, 2, 1)
        mat["labels"] = raw.transpose(0, 2, 1)
    map_class = rng.integers(1, 41, (1, 894)).astype(np.float64)
    names = np.empty((1, 40), dtype=object)
    names[0, :] = [f"class{i}" for i in range(40)]
    scipy.io.savemat(src / "classMapping40.mat", {"mapClass": map_class, "className": names})
    scipy.io.savemat(src / "splits.mat", {"trainNdxs": np.array([[1], [3]]), "testNdxs": np.array([[2], [4]])})
    label = np.where(raw == 0, 255, map_class[0, np.maximum(raw, 1) - 1] - 1).astype(np.uint8)
    return {"rgb": rgb, "depth": depth_mm, "label": label}


def test_nyudv2_labeled_mat_round_trip(tmp_path):
    expected = write_nyu_mat(tmp_path / "src")
    manifest = convert("nyudv2", tmp_path / "src", tmp_path / "out", val_fraction=0.0)
    assert manifest.label.classes == tuple(f"class{i}" for i in range(40))
    assert manifest.modalities["depth"].unit == "mm" and manifest.image_size == (H, W)
    samples = read_back(tmp_path / "out")
    assert {sid: s.split for sid, s in samples.items()} == {"0001": "train", "0002": "test", "0003": "train",
                                                            "0004": "test"}
    for i in range(4):
        sample = samples[f"{i + 1:04d}"]
        np.testing.assert_array_equal(sample.modalities["rgb"], expected["rgb"][i])
        np.testing.assert_array_equal(sample.modalities["depth"][:, :, 0], expected["depth"][i])
        np.testing.assert_array_equal(sample.label, expected["label"][i])
    assert (samples["0001"].label[1, :3] == 255).all()


def test_nyudv2_labeled_mat_needs_splits(tmp_path):
    write_nyu_mat(tmp_path / "src")
    (tmp_path / "src" / "splits.mat").unlink()
    with pytest.raises(DatasetError, match="splits.mat"):
        convert("nyudv2", tmp_path / "src", tmp_path / "out")
    assert_nothing_left(tmp_path / "out")


# -- NYUDv2, the reference's prepared PNG folder ----------------------------------------------------------------------
def write_nyu_prepared(src: Path, depth_dtype=np.uint16) -> dict[str, dict[str, np.ndarray]]:
    samples = {}
    for stem in ("0001", "0002", "0003"):
        rgb, mask = random_rgb(), rng.integers(0, 40, (H, W), dtype=np.uint8)
        mask[0, :4] = 255
        depth = rng.integers(0, np.iinfo(depth_dtype).max, (H, W)).astype(depth_dtype)
        save_png(src / "rgb" / f"{stem}.png", rgb)
        save_png(src / "masks" / f"{stem}.png", mask)
        save_png(src / "depth" / f"{stem}.png", depth)
        samples[stem] = {"rgb": rgb, "label": mask, "depth": depth}
    line = "rgb/{0}.png\tmasks/{0}.png\tdepth/{0}.png\n".format
    (src / "train.txt").write_text(line("0001") + line("0002"))
    (src / "val.txt").write_text(line("0003"))
    return samples


@pytest.mark.parametrize("depth_dtype", [np.uint16, np.uint8])
def test_nyudv2_prepared_round_trip(tmp_path, depth_dtype):
    expected = write_nyu_prepared(tmp_path / "src", depth_dtype)
    manifest = convert("nyudv2", tmp_path / "src", tmp_path / "out", val_fraction=0.0)
    assert manifest.label.classes == NYU40_CLASSES and manifest.source["layout"] == "prepared-png"
    assert manifest.source["depth_png_bits"] == [8 * np.dtype(depth_dtype).itemsize]
    assert DatasetReader(tmp_path / "out").manifest.source == manifest.source
    samples = read_back(tmp_path / "out")
    assert {sid: s.split for sid, s in samples.items()} == {"0001": "train", "0002": "train", "0003": "test"}
    for stem, arrays in expected.items():
        np.testing.assert_array_equal(samples[stem].modalities["rgb"], arrays["rgb"])
        np.testing.assert_array_equal(samples[stem].modalities["depth"][:, :, 0], arrays["depth"].astype(np.uint16))
        np.testing.assert_array_equal(samples[stem].label, arrays["label"])


def test_missing_modality_file_names_it(tmp_path):
    write_nyu_prepared(tmp_path / "src")
    (tmp_path / "src" / "depth" / "0002.png").unlink()
    with pytest.raises(DatasetError, match=r"depth/0002\.png: depth file not found \(listed in .*train\.txt line 2"):
        convert("nyudv2", tmp_path / "src", tmp_path / "out")
    assert_nothing_left(tmp_path / "out")


def test_disagreeing_shapes_name_the_files(tmp_path):
    write_nyu_prepared(tmp_path / "src")
    save_png(tmp_path / "src" / "depth" / "0002.png", np.zeros((H - 2, W), np.uint16))
    with pytest.raises(DatasetError, match=r"depth/0002\.png.*sizes disagree"):
        convert("nyudv2", tmp_path / "src", tmp_path / "out")
    assert_nothing_left(tmp_path / "out")


def test_label_outside_the_classes_names_sample_and_file(tmp_path):
    write_nyu_prepared(tmp_path / "src")
    mask = np.zeros((H, W), np.uint8)
    mask[3, 3] = 57
    save_png(tmp_path / "src" / "masks" / "0003.png", mask)
    with pytest.raises(DatasetError, match=r"masks/0003\.png.*sample '0003'.*\[57\]"):
        convert("nyudv2", tmp_path / "src", tmp_path / "out")
    assert_nothing_left(tmp_path / "out")


def test_unreadable_image_names_it(tmp_path):
    write_nyu_prepared(tmp_path / "src")
    (tmp_path / "src" / "rgb" / "0001.png").write_bytes(b"not a png at all")
    with pytest.raises(DatasetError, match=r"rgb/0001\.png: unreadable RGB image"):
        convert("nyudv2", tmp_path / "src", tmp_path / "out")
    assert_nothing_left(tmp_path / "out")


def test_grayscale_rgb_is_an_error(tmp_path):
    write_nyu_prepared(tmp_path / "src")
    save_png(tmp_path / "src" / "rgb" / "0002.png", np.zeros((H, W), np.uint8))
    with pytest.raises(DatasetError, match=r"rgb/0002\.png: RGB image is uint8 with 1 channel; expected"):
        convert("nyudv2", tmp_path / "src", tmp_path / "out")
    assert_nothing_left(tmp_path / "out")


def test_unrecognised_nyudv2_source(tmp_path):
    (tmp_path / "src").mkdir()
    with pytest.raises(DatasetError, match="not a NYUDv2 source"):
        convert("nyudv2", tmp_path / "src", tmp_path / "out")
    with pytest.raises(DatasetError, match="NYUDv2 source directory not found"):
        convert("nyudv2", tmp_path / "absent", tmp_path / "out")


def test_existing_output_needs_overwrite(tmp_path):
    write_nyu_prepared(tmp_path / "src")
    convert("nyudv2", tmp_path / "src", tmp_path / "out")
    with pytest.raises(DatasetError, match="already exists"):
        convert("nyudv2", tmp_path / "src", tmp_path / "out")
    convert("nyudv2", tmp_path / "src", tmp_path / "out", overwrite=True)
    assert len(read_back(tmp_path / "out")) == 3


# -- SUN RGB-D -------------------------------------------------------------------------------------------------------
def rotate_right_3(mm: np.ndarray) -> np.ndarray:
    """How SUN RGB-D stores millimetres in its depth PNGs."""
    wide = mm.astype(np.uint32)
    return (((wide << 3) | (wide >> 13)) & 0xFFFF).astype(np.uint16)


def write_sunrgbd(src: Path) -> dict[str, dict[str, np.ndarray]]:
    samples = {}
    for stem, (height, width), suffix in (("img-000001", (H, W), ".png"), ("img-000002", (10, 14), ".jpg"),
                                          ("img-000003", (H, W), ".png")):
        rgb, raw = random_rgb(height, width), rng.integers(0, 38, (height, width), dtype=np.uint8)
        mm = rng.integers(0, 65536, (height, width)).astype(np.uint16)
        save_png(src / "depth" / f"{stem}.png", rotate_right_3(mm))
        save_png(src / "label" / f"{stem}.png", raw)
        image = save_png(src / "image" / f"{stem}{suffix}", rgb)
        rgb = np.asarray(Image.open(image))  # JPEG is lossy: compare with its decoded pixels
        samples[stem] = {"rgb": rgb, "mm": mm, "label": np.where(raw == 0, 255, raw - 1).astype(np.uint8)}
    (src / "train.txt").write_text("img-000001\nimg-000002\n")
    (src / "test.txt").write_text("img-000003\n\n")
    return samples


def test_sunrgbd_round_trip_undoes_the_bit_rotation(tmp_path):
    expected = write_sunrgbd(tmp_path / "src")
    manifest = convert("sunrgbd", tmp_path / "src", tmp_path / "out", val_fraction=0.0)
    assert manifest.label.num_classes == 37 and manifest.label.classes[23] == "fridge"
    assert manifest.image_size is None  # sizes vary between samples
    samples = read_back(tmp_path / "out")
    assert {sid: s.split for sid, s in samples.items()} == {"img-000001": "train", "img-000002": "train",
                                                            "img-000003": "test"}
    for stem, arrays in expected.items():
        np.testing.assert_array_equal(samples[stem].modalities["rgb"], arrays["rgb"])
        np.testing.assert_array_equal(samples[stem].modalities["depth"][:, :, 0], arrays["mm"])
        np.testing.assert_array_equal(samples[stem].label, arrays["label"])


def test_sunrgbd_without_bitshift_keeps_stored_depth(tmp_path):
    expected = write_sunrgbd(tmp_path / "src")
    convert("sunrgbd", tmp_path / "src", tmp_path / "out", depth_bitshift=False)
    sample = read_back(tmp_path / "out")["img-000003"]
    np.testing.assert_array_equal(sample.modalities["depth"][:, :, 0], rotate_right_3(expected["img-000003"]["mm"]))


def test_sunrgbd_label_outside_the_classes_names_the_file(tmp_path):
    write_sunrgbd(tmp_path / "src")
    save_png(tmp_path / "src" / "label" / "img-000003.png", np.full((H, W), 40, np.uint8))
    with pytest.raises(DatasetError, match=r"label/img-000003\.png: label values \[40\]"):
        convert("sunrgbd", tmp_path / "src", tmp_path / "out")
    assert_nothing_left(tmp_path / "out")


# -- Cityscapes ------------------------------------------------------------------------------------------------------
OFFICIAL_TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
                      26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
CITY_FRAMES = {"train": ["aachen_000000_000019", "aachen_000001_000019"], "val": ["lindau_000000_000019"],
               "test": ["berlin_000000_000019"]}


def write_cityscapes(src: Path, splits_with_labels=("train", "val")) -> dict[str, dict[str, np.ndarray]]:
    samples = {}
    for split, frames in CITY_FRAMES.items():
        for frame in frames:
            city = frame.split("_")[0]
            rgb, disparity = random_rgb(), rng.integers(0, 65536, (H, W)).astype(np.uint16)
            label_ids = rng.integers(0, 34, (H, W), dtype=np.uint8)
            save_png(src / "leftImg8bit" / split / city / f"{frame}_leftImg8bit.png", rgb)
            save_png(src / "disparity" / split / city / f"{frame}_disparity.png", disparity)
            if split in splits_with_labels:
                save_png(src / "gtFine" / split / city / f"{frame}_gtFine_labelIds.png", label_ids)
            train_ids = np.vectorize(lambda i: OFFICIAL_TRAIN_IDS.get(int(i), 255))(label_ids).astype(np.uint8)
            samples[frame] = {"split": split, "rgb": rgb, "disparity": disparity, "label": train_ids}
    return samples


def test_cityscapes_round_trip_maps_train_ids(tmp_path):
    expected = write_cityscapes(tmp_path / "src")
    manifest = convert("cityscapes", tmp_path / "src", tmp_path / "out")
    assert manifest.label.num_classes == 19 and manifest.modalities["disparity"].dtype == "uint16"
    assert manifest.modalities["disparity"].scale == 1 / 32768
    samples = read_back(tmp_path / "out")
    assert set(samples) == {"aachen_000000_000019", "aachen_000001_000019", "lindau_000000_000019"}
    for frame, sample in samples.items():
        assert sample.split == expected[frame]["split"]
        np.testing.assert_array_equal(sample.modalities["rgb"], expected[frame]["rgb"])
        np.testing.assert_array_equal(sample.modalities["disparity"][:, :, 0], expected[frame]["disparity"])
        np.testing.assert_array_equal(sample.label, expected[frame]["label"])


def test_cityscapes_test_split_needs_its_gtfine(tmp_path):
    write_cityscapes(tmp_path / "unlabelled")
    manifest = convert("cityscapes", tmp_path / "unlabelled", tmp_path / "out1", splits=("train", "val", "test"))
    assert sorted(manifest.splits) == ["train", "val"] and manifest.source["skipped_splits"] == ["test"]
    write_cityscapes(tmp_path / "labelled", splits_with_labels=("train", "val", "test"))
    manifest = convert("cityscapes", tmp_path / "labelled", tmp_path / "out2", splits=("train", "val", "test"))
    assert sorted(manifest.splits) == ["test", "train", "val"]


def test_cityscapes_missing_disparity_names_it(tmp_path):
    write_cityscapes(tmp_path / "src")
    (tmp_path / "src" / "disparity" / "val" / "lindau" / "lindau_000000_000019_disparity.png").unlink()
    with pytest.raises(DatasetError, match=r"lindau_000000_000019_disparity\.png: disparity file not found"):
        convert("cityscapes", tmp_path / "src", tmp_path / "out")
    assert_nothing_left(tmp_path / "out")


# -- Taskonomy -------------------------------------------------------------------------------------------------------
def write_taskonomy(src: Path, count: int = 5) -> dict[str, dict[str, np.ndarray]]:
    makers = {"rgb": random_rgb, "normal": random_rgb,
              "reshading": lambda: rng.integers(0, 256, (H, W), dtype=np.uint8),
              "depth_zbuffer": lambda: rng.integers(0, 65536, (H, W)).astype(np.uint16)}
    samples = {}
    for point in range(count):
        sample_id = f"point_{point}_view_{point % 2}"
        samples[sample_id] = {domain: make() for domain, make in makers.items()}
        for domain, array in samples[sample_id].items():
            save_png(src / domain / f"{sample_id}_domain_{domain}.png", array)
    return samples


def test_taskonomy_round_trip(tmp_path):
    expected = write_taskonomy(tmp_path / "src")
    manifest = convert("taskonomy", tmp_path / "src", tmp_path / "out", val_fraction=0.5, encoding="raw")
    assert manifest.task == "translation" and manifest.target == "rgb" and manifest.label is None
    specs = manifest.modalities
    assert sorted(specs) == ["depth_zbuffer", "normal", "reshading", "rgb"]
    assert (specs["normal"].dtype, specs["normal"].channels) == ("uint8", 3)
    assert (specs["reshading"].dtype, specs["reshading"].channels) == ("uint8", 1)
    assert (specs["depth_zbuffer"].dtype, specs["depth_zbuffer"].scale) == ("uint16", 1 / 65535)
    samples = read_back(tmp_path / "out")
    assert set(samples) == set(expected)
    for sample_id, arrays in expected.items():
        assert samples[sample_id].split == split_of(sample_id, 0.5)
        for domain, array in arrays.items():
            np.testing.assert_array_equal(samples[sample_id].modalities[domain].reshape(array.shape), array)


def reference_dataset_item(arrays: dict[str, np.ndarray], domain: str) -> np.ndarray:
    """yikaiw/CEN image2image_translation/utils/dataset.py, __getitem__'s per-image encoding, as its authors ran it
    (their Pillow decoded 16-bit PNGs as int32, so ``1 + img`` does not wrap), and its Normalize(0.5, 0.5)."""
    max_v = {"edge_texture": 11355, "edge_occlusion": 11584, "depth_euclidean": 11.1, "depth_zbuffer": 11.1}
    min_v = {"edge_texture": 0, "edge_occlusion": 0, "depth_euclidean": 0, "depth_zbuffer": 0}
    img = np.array(arrays[domain]).astype(np.int32 if arrays[domain].dtype == np.uint16 else np.uint8)
    if len(img.shape) == 2:
        img = np.concatenate([img[:, :, np.newaxis]] * 3, 2)
    if "depth" in domain:
        img = np.log(1 + img)
    if domain in max_v:
        img = (img - min_v[domain]) * 255.0 / (max_v[domain] - min_v[domain])
    img = img.astype("uint8")
    return (img.astype(np.float32) / 255 - 0.5) / 0.5  # ToTensor, Normalize((0.5,) * 3, (0.5,) * 3), HWC


def test_taskonomy_reference_encoding_serves_what_the_reference_dataset_feeds(tmp_path):
    expected = write_taskonomy(tmp_path / "src", count=3)
    edges = {sample_id: rng.integers(0, 11356, (H, W)).astype(np.uint16) for sample_id in expected}
    for sample_id, array in edges.items():
        save_png(tmp_path / "src" / "edge_texture" / f"{sample_id}_domain_edge_texture.png", array)
        expected[sample_id]["edge_texture"] = array
    next(iter(expected.values()))["depth_zbuffer"][0, :3] = [0, 65535, 1]  # no depth, far, near
    for sample_id, arrays in expected.items():
        save_png(tmp_path / "src" / "depth_zbuffer" / f"{sample_id}_domain_depth_zbuffer.png",
                 arrays["depth_zbuffer"])
    manifest = convert("taskonomy", tmp_path / "src", tmp_path / "out", val_fraction=0.0)
    assert manifest.source["encoding"] == "reference"
    for domain in ("depth_zbuffer", "edge_texture", "reshading"):
        assert (manifest.modalities[domain].dtype, manifest.modalities[domain].channels) == ("uint8", 1), domain
    from fusionlab.data.torch_dataset import ShardDataset

    inputs = ["normal", "reshading", "depth_zbuffer", "edge_texture"]
    dataset = ShardDataset(tmp_path / "out", "train", inputs)
    for item, sample in zip(dataset, DatasetReader(tmp_path / "out").iter_samples("train"), strict=True):
        arrays = expected[sample.sample_id]
        for m, domain in enumerate(inputs):
            served = item["image"][m].permute(1, 2, 0).numpy()
            np.testing.assert_allclose(served, reference_dataset_item(arrays, domain), atol=1e-6, err_msg=domain)
        np.testing.assert_allclose(item["target"].permute(1, 2, 0).numpy(), reference_dataset_item(arrays, "rgb"),
                                   atol=1e-6)
    first = DatasetReader(tmp_path / "out").iter_samples("train").__next__().modalities["depth_zbuffer"]
    assert first.reshape(H, W)[0, :3].tolist() == [0, 254, 15]  # log(1 + x) * 255 / 11.1, truncated


def test_taskonomy_splits_from_the_reference_lists(tmp_path):
    write_taskonomy(tmp_path / "src", count=6)
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "train_domain.txt").write_text("".join(f"{{domain}}/point_{i}_view_{i % 2}_domain_{{domain}}.png\n"
                                                    for i in (0, 1, 2, 3)))
    (lists / "val_domain.txt").write_text("{domain}/point_4_view_0_domain_{domain}.png")
    split_lists = {"train": lists / "train_domain.txt", "test": lists / "val_domain.txt"}
    manifest = convert("taskonomy", tmp_path / "src", tmp_path / "out", split_lists=split_lists, val_fraction=0.0)
    samples = read_back(tmp_path / "out")
    assert {i: s.split for i, s in samples.items()} == {
        "point_0_view_0": "train", "point_1_view_1": "train", "point_2_view_0": "train", "point_3_view_1": "train",
        "point_4_view_0": "test"}, "point_5 is in no list"
    assert manifest.source["split_lists"]["test"].endswith("val_domain.txt")
    carved = convert("taskonomy", tmp_path / "src", tmp_path / "carved", split_lists=split_lists, val_fraction=0.5)
    assert set(carved.splits) <= {"train", "val", "test"} and carved.rows("test") == 1
    assert carved.rows("train") + carved.rows("val") == 4
    (lists / "val_domain.txt").write_text("{domain}/point_9_view_0_domain_{domain}.png\n")
    with pytest.raises(DatasetError, match=r"1 listed sample\(s\) in no domain folder, e.g. point_9_view_0"):
        convert("taskonomy", tmp_path / "src", tmp_path / "missing", split_lists=split_lists)
    (lists / "val_domain.txt").write_text("{domain}/point_0_view_0_domain_{domain}.png\n")
    with pytest.raises(DatasetError, match=r"val_domain\.txt:1: point_0_view_0 is listed in both 'train' and 'test'"):
        convert("taskonomy", tmp_path / "src", tmp_path / "twice", split_lists=split_lists)


def test_taskonomy_split_is_stable_when_samples_are_added(tmp_path):
    ids = [f"point_{i}_view_0" for i in range(200)]
    splits = [split_of(sample_id, 0.1) for sample_id in ids]
    assert 5 <= splits.count("val") <= 40
    assert [split_of(sample_id, 0.1) for sample_id in ids[:50]] == splits[:50]


def test_taskonomy_domains_option_and_target(tmp_path):
    write_taskonomy(tmp_path / "src", count=3)
    manifest = convert("taskonomy", tmp_path / "src", tmp_path / "out", domains=["rgb", "normal"], target="normal",
                       val_fraction=0.0)
    assert list(manifest.modalities) == ["rgb", "normal"] and list(manifest.splits) == ["train"]
    with pytest.raises(DatasetError, match="target domain 'edge_texture'"):
        convert("taskonomy", tmp_path / "src", tmp_path / "out2", target="edge_texture")


def test_taskonomy_incomplete_point_view(tmp_path):
    write_taskonomy(tmp_path / "src")
    (tmp_path / "src" / "normal" / "point_2_view_0_domain_normal.png").unlink()
    with pytest.raises(DatasetError, match=r"normal/point_2_view_0_domain_normal\.png: file not found"):
        convert("taskonomy", tmp_path / "src", tmp_path / "out")
    assert_nothing_left(tmp_path / "out")
    manifest = convert("taskonomy", tmp_path / "src", tmp_path / "out", skip_incomplete=True)
    assert "point_2_view_0" not in read_back(tmp_path / "out") and manifest.source["skipped_incomplete"] == 1


def test_taskonomy_file_mode_must_match_its_domain(tmp_path):
    write_taskonomy(tmp_path / "src")
    save_png(tmp_path / "src" / "reshading" / "point_3_view_1_domain_reshading.png", random_rgb())
    with pytest.raises(DatasetError, match=r"reshading/point_3_view_1_domain_reshading\.png: reshading image is "
                                           r"uint8 with 3 channels"):
        convert("taskonomy", tmp_path / "src", tmp_path / "out")
    assert_nothing_left(tmp_path / "out")


# -- dispatch --------------------------------------------------------------------------------------------------------
def test_unknown_kind_and_option(tmp_path):
    assert set(CONVERTERS) == {"nyudv2", "sunrgbd", "cityscapes", "taskonomy"}
    with pytest.raises(DatasetError, match=r"unknown dataset kind 'kitti'; known kinds: nyudv2, sunrgbd"):
        convert("kitti", tmp_path, tmp_path / "out")
    with pytest.raises(DatasetError, match=r"unknown options \['depth_bitshift'\]"):
        convert("cityscapes", tmp_path, tmp_path / "out", depth_bitshift=True)


def test_validation_split_is_carved_from_train_only(tmp_path):
    src = tmp_path / "src"
    write_nyu_prepared(src, np.uint16)
    line = "rgb/{0}.png\tmasks/{0}.png\tdepth/{0}.png\n".format
    for i in range(4, 24):  # more training images, copies of the first one's files
        for folder in ("rgb", "masks", "depth"):
            (src / folder / f"{i:04d}.png").write_bytes((src / folder / "0001.png").read_bytes())
    (src / "train.txt").write_text("".join(line(f"{i:04d}") for i in [1, 2, *range(4, 24)]))
    manifest = convert("nyudv2", src, tmp_path / "out", val_fraction=0.3)
    splits = {sid: s.split for sid, s in read_back(tmp_path / "out").items()}
    assert splits.pop("0003") == "test", "the test split is never carved"
    assert splits == {sid: split_of(sid, 0.3) for sid in splits}
    assert 0 < list(splits.values()).count("val") < len(splits)
    assert manifest.source["val_from_train"] == 0.3


def test_taskonomy_lists_and_encoding_from_the_command_line(tmp_path, capsys):
    from fusionlab.cli import main

    write_taskonomy(tmp_path / "src", count=3)
    (tmp_path / "train.txt").write_text("{domain}/point_0_view_0_domain_{domain}.png\n"
                                        "{domain}/point_1_view_1_domain_{domain}.png\n")
    (tmp_path / "test.txt").write_text("{domain}/point_2_view_0_domain_{domain}.png\n")
    assert main(["data", "convert", "taskonomy", str(tmp_path / "src"), "--out", str(tmp_path / "out"),
                 "--split-list", f"train={tmp_path / 'train.txt'}", "--split-list", f"test={tmp_path / 'test.txt'}",
                 "--encoding", "raw", "--val-fraction", "0"]) == 0
    manifest = Manifest.load(tmp_path / "out")
    assert manifest.source["encoding"] == "raw" and (manifest.rows("train"), manifest.rows("test")) == (2, 1)
    assert main(["data", "convert", "taskonomy", str(tmp_path / "src"), "--out", str(tmp_path / "bad"),
                 "--split-list", "train.txt"]) != 0
    assert "--split-list expects SPLIT=FILE" in capsys.readouterr().out
