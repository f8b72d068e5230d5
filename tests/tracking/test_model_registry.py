"""`fusionlab promote` / `fusionlab registry`: the best run under an alias, the guard, the history as version tags.

Named test_model_registry.py, not test_registry.py: tests/models/test_registry.py exists and the test directories
are not packages, so two modules named ``test_registry`` cannot be collected in one session.
"""

import json
import re

import pytest
import torch
from registry_runs import VAL_MIOU, build_store

from fusionlab.cli import main
from fusionlab.tracking import load_model
from fusionlab.tracking import registry as reg
from fusionlab.tracking import registry_history as history
from fusionlab.tracking.tags import PromotionTags as Promotion

DEFAULT_NAME = "synthetic-rgbd-segmentation"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return build_store(tmp_path_factory.mktemp("registry"))


@pytest.fixture(scope="module")
def champion(store):
    """The default promotion: the experiments of a1 and a2 (a2 is a sweep trial), default name and alias."""
    return reg.promote(store.uri, ["reg-a1", "reg-a2"])


def cli(store, *args):
    return main(["--workdir", str(store.workdir), *args])


def version_tags(store, name, version):
    return reg.registry_client(store.uri).get_model_version(name, version).tags


def test_model_name_is_a_slug_of_dataset_and_task():
    assert reg.model_name("synthetic-rgbd", "segmentation") == "synthetic-rgbd-segmentation"
    assert reg.model_name("NYU Depth v2", "segmentation") == "nyu-depth-v2-segmentation"


def test_an_overlong_config_is_truncated_with_a_marker(monkeypatch):
    monkeypatch.setattr(reg, "TAG_VALUE_LIMIT", 40)
    fitted = reg._fit("x" * 100)
    assert len(fitted) == 40 and fitted.endswith(reg.TRUNCATED)
    assert reg._fit("short") == "short"


def test_the_best_finished_training_run_is_promoted_with_its_record(store, champion):
    # The sweep parent (0.99), the FAILED run (0.95) and the run without val/miou are not candidates.
    assert champion.candidates == 2
    assert champion.name == DEFAULT_NAME and champion.alias == "champion" and champion.version == "1"
    assert champion.candidate.run_id == store.runs["a2"] and champion.previous is None
    client = reg.registry_client(store.uri)
    assert str(client.get_model_version_by_alias(DEFAULT_NAME, "champion").version) == "1"
    tags = version_tags(store, DEFAULT_NAME, "1")
    run = client.get_run(store.runs["a2"])
    assert tags[Promotion.PREVIOUS_VERSION] == "none" and tags[Promotion.PREVIOUS_VALUE] == "none"
    assert tags[Promotion.METRIC] == "val/miou" and float(tags[Promotion.VALUE]) == VAL_MIOU["a2"]
    assert tags[Promotion.MODE] == "max" and tags[Promotion.ALIAS] == "champion" and tags[Promotion.FORCED] == "false"
    assert tags[Promotion.RUN_ID] == store.runs["a2"] and tags[Promotion.RUN_NAME] == "a2"
    assert tags[Promotion.EXPERIMENT] == "reg-a2"
    assert tags[Promotion.MODEL_URI] == f"runs:/{store.runs['a2']}/model"
    assert json.loads(tags[Promotion.CONFIG]) == run.data.params
    assert tags[Promotion.MANIFEST] == run.data.tags["fusionlab.manifest_sha256"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", tags[Promotion.PROMOTED_AT])
    assert Promotion.OVERRIDDEN not in tags
    model = client.get_registered_model(DEFAULT_NAME)
    assert model.tags == {"fusionlab.dataset": "synthetic-rgbd", "fusionlab.task": "segmentation"}
    assert model.description


def test_predict_on_the_champion(store, champion, capsys):
    batch = torch.rand(2, 2, 3, 48, 64)  # [B, M, 3, H, W]
    registered = load_model(f"models:/{DEFAULT_NAME}@champion", store.uri).eval()
    logged = load_model(f"runs:/{champion.candidate.run_id}/model", store.uri).eval()
    with torch.no_grad():
        out = registered(batch)
        assert out.shape == (2, registered.num_classes, 48, 64)
        assert torch.equal(out, logged(batch))

    capsys.readouterr()
    assert cli(store, "evaluate", "--model", f"models:/{DEFAULT_NAME}@champion", "--data", str(store.data_a),
               "--split", "test") == 0
    shown = float(re.findall(r"(\d+\.\d\d)", capsys.readouterr().out.split("mIoU")[-1])[-1])
    test_miou = reg.registry_client(store.uri).get_run(champion.candidate.run_id).data.metrics["test/miou"]
    assert shown == round(100 * test_miou, 2)


def test_a_worse_candidate_is_refused_unless_forced(store, capsys):
    name = "guard"
    assert reg.promote(store.uri, ["reg-a2"], name=name).version == "1"
    with pytest.raises(reg.PromotionRefused) as refused:
        reg.promote(store.uri, ["reg-a1"], name=name)
    assert "version 1" in str(refused.value) and store.runs["a2"] in str(refused.value)
    assert "0.5" in str(refused.value) and "0.3" in str(refused.value)

    capsys.readouterr()
    assert cli(store, "promote", "--experiment", "reg-a1", "--name", name) == 1
    out = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert out.startswith("refused:") and "better (max)" in out and "--force" in out
    client = reg.registry_client(store.uri)
    assert len(client.search_model_versions(f"name = '{name}'")) == 1  # nothing registered, the alias stays
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"

    assert cli(store, "promote", "--experiment", "reg-a1", "--name", name, "--force") == 0
    assert "forced" in capsys.readouterr().out
    assert str(client.get_model_version_by_alias(name, "champion").version) == "2"
    tags = version_tags(store, name, "2")
    assert tags[Promotion.FORCED] == "true" and tags[Promotion.PREVIOUS_VERSION] == "1"
    assert tags[Promotion.PREVIOUS_RUN_ID] == store.runs["a2"]
    assert float(tags[Promotion.PREVIOUS_VALUE]) == VAL_MIOU["a2"]
    assert float(tags[Promotion.VALUE]) == VAL_MIOU["a1"] and "better" in tags[Promotion.OVERRIDDEN]


def test_history_is_kept_newest_first_and_a_repeat_changes_nothing(store, capsys):
    name = "history"
    assert reg.promote(store.uri, ["reg-a1"], name=name).version == "1"
    assert reg.promote(store.uri, ["reg-a2"], name=name).version == "2"
    capsys.readouterr()
    assert cli(store, "promote", "--experiment", "reg-a2", "--name", name) == 0  # a2 already holds the alias
    assert "already version 2" in capsys.readouterr().out
    assert reg.promote(store.uri, ["reg-a1"], name=name, force=True).version == "3"

    records = history.promotion_history(store.uri, name)
    assert [r.version for r in records] == ["3", "2", "1"]
    assert [r.aliases for r in records] == [["champion"], [], []]
    assert [r.run_name for r in records] == ["a1", "a2", "a1"]
    assert [r.previous_version for r in records] == ["2", "1", "none"]
    assert [r.forced for r in records] == ["true", "false", "false"]

    assert cli(store, "registry", name) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if re.match(r"^\W*\d+ \W", line)]
    assert [int(re.search(r"\d+", row).group()) for row in rows] == [3, 2, 1]
    assert "champion" in rows[0] and "true" in rows[0] and "2 (0.5000)" in rows[0]

    assert cli(store, "registry") == 0
    listing = capsys.readouterr().out
    assert re.search(rf"{name}\s.*champion -> 3", listing)


def test_an_unknown_registered_model_lists_the_known_ones(store, capsys):
    reg.promote(store.uri, ["reg-a1"], name="listed")
    capsys.readouterr()
    assert cli(store, "registry", "no-such-model") == 1
    out = capsys.readouterr().out
    assert "no-such-model" in out and "listed" in out


def test_a_holder_trained_on_another_dataset_is_not_compared(store, capsys):
    name = "datasets"
    reg.promote(store.uri, ["reg-a1"], name=name)
    with pytest.raises(reg.PromotionRefused, match="another version of the dataset"):
        reg.promote(store.uri, ["reg-b"], name=name)  # b scores better, on other data
    capsys.readouterr()
    assert cli(store, "promote", "--experiment", "reg-b", "--name", name) == 1
    assert "the scores are not comparable" in " ".join(capsys.readouterr().out.split())
    forced = reg.promote(store.uri, ["reg-b"], name=name, force=True)
    assert forced.version == "2" and forced.forced
    assert "manifest" in version_tags(store, name, "2")[Promotion.OVERRIDDEN]


def test_candidates_from_different_datasets_are_an_error(store, capsys):
    with pytest.raises(reg.RegistryError, match="manifest sha256") as versions:
        reg.promote(store.uri, ["reg-a1", "reg-b"], name="mixed")
    assert "a1" in str(versions.value) and "'b'" in str(versions.value)
    with pytest.raises(reg.RegistryError, match="datasets/tasks") as datasets:
        reg.promote(store.uri, ["reg-a1", "reg-other"])
    assert "other-rgbd" in str(datasets.value) and "synthetic-rgbd" in str(datasets.value)
    capsys.readouterr()
    assert cli(store, "promote", "--experiment", "reg-a1", "--experiment", "reg-other") == 1
    assert "other-rgbd" in capsys.readouterr().out
    assert "mixed" not in [m.name for m in history.registered_models(store.uri)]


def test_a_holder_without_the_metric_is_not_compared(store):
    name = "metric"
    reg.promote(store.uri, ["reg-a1"], name=name)  # by val/miou; a1 has no custom/score
    with pytest.raises(reg.PromotionRefused, match="has no custom/score"):
        reg.promote(store.uri, ["reg-a2"], metric="custom/score", name=name)
    forced = reg.promote(store.uri, ["reg-a2"], metric="custom/score", name=name, force=True)
    assert forced.version == "2" and version_tags(store, name, "2")[Promotion.PREVIOUS_VALUE] == "none"


def test_no_candidates_or_an_unknown_experiment_exit_1(store, capsys):
    capsys.readouterr()
    assert cli(store, "promote", "--experiment", "reg-a2", "--metric", "val/nothing") == 1
    assert "no finished training run with val/nothing" in capsys.readouterr().out
    assert cli(store, "promote", "--experiment", "no-such-experiment") == 1
    assert "reg-a1" in capsys.readouterr().out  # the known experiments are listed
