"""MLflow search filters quote their values (tracking/filters.py): a name with a quote in it is found as itself, a
crafted name matches nothing but itself, and no filter in tracking/ is built from an unquoted value (issue 34)."""

import re
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils.search_utils import SearchModelVersionUtils, SearchUtils

from fusionlab.errors import FusionlabError
from fusionlab.tracking import default_tracking_uri, ensure_experiment
from fusionlab.tracking.filters import attribute_equals, quoted, tag_equals
from fusionlab.tracking.lifecycle import find_run
from fusionlab.tracking.registry_history import _versions
from fusionlab.tracking.sweeps import child_runs, open_parent_run
from fusionlab.tracking.tags import PARENT_RUN_ID_TAG, RUN_KEY_TAG

VALUES = ["plain", "it's", 'say "hi"', "a\\", "a\\'b", "x' AND tags.`k` = 'y", "-- ;", "it's \\", "100%_"]
# Matches run "b" too where the value is pasted in unquoted: tags.`k` = 'b' AND tags.`mlflow.runName` != 'zzz'
CRAFTED = "b' AND tags.`mlflow.runName` != 'zzz"


def test_a_value_is_quoted_with_the_quote_it_does_not_hold():
    assert quoted("plain") == "'plain'"
    assert quoted("it's") == '"it\'s"'
    assert quoted('say "hi"') == "'say \"hi\"'"
    with pytest.raises(FusionlabError, match="both ' and \""):
        quoted("it's \"x\"")


@pytest.mark.parametrize("value", VALUES)
def test_mlflow_parses_a_quoted_value_back_as_itself(value):
    [clause] = SearchUtils.parse_search_filter(tag_equals("k", value))
    assert (clause["key"], clause["value"]) == ("k", value)
    [clause] = SearchModelVersionUtils.parse_search_filter(attribute_equals("name", value))
    assert clause["value"] == value


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("filters")
    uri = default_tracking_uri(workdir)
    experiment_id = ensure_experiment(uri, "E")
    client = MlflowClient(uri)
    runs = {key: client.create_run(experiment_id, run_name=key, tags={RUN_KEY_TAG: key}).info.run_id
            for key in ["a", "b", "it's", 'say "hi"']}
    return uri, client, experiment_id, runs


@pytest.mark.parametrize("key", ["a", "b", "it's", 'say "hi"'])
def test_find_run_finds_the_run_of_exactly_that_name(store, key):
    _, client, experiment_id, runs = store
    assert find_run(client, experiment_id, key).info.run_id == runs[key]


@pytest.mark.parametrize("key", [CRAFTED, "it", "it''s", "it\\'s"])
def test_a_crafted_or_near_name_matches_no_run(store, key):
    _, client, experiment_id, _ = store
    assert find_run(client, experiment_id, key) is None


def test_a_sweep_parent_named_with_a_quote_is_found_again_with_its_children(store):
    uri, client, experiment_id, _ = store
    parent = open_parent_run(uri, "E", "it's sweep", {})
    assert open_parent_run(uri, "E", "it's sweep", {}) == parent  # found by its key, not opened twice
    child = client.create_run(experiment_id, run_name="child", tags={PARENT_RUN_ID_TAG: parent}).info.run_id
    assert [run.info.run_id for run in child_runs(uri, parent)] == [child]


def test_a_registered_model_named_with_a_quote_lists_its_versions(store, tmp_path):
    uri, client, _, _ = store
    client.create_registered_model("it's a model")
    client.create_model_version("it's a model", source=tmp_path.as_uri())
    assert [str(version.version) for version in _versions(client, "it's a model")] == ["1"]
    assert _versions(client, "it") == []


def test_no_filter_in_tracking_pastes_a_value_between_quotes():
    """Every filter string goes through filters.py: none is an f-string with a value between quotes."""
    package = Path(__file__).resolve().parents[2] / "platform" / "fusionlab" / "tracking"
    pasted = re.compile(r"""f["'][^"'\n]*(?:=|!=|LIKE)\s*\\?['"]\{""", re.IGNORECASE)
    found = {str(path.relative_to(package)): pasted.findall(path.read_text()) for path in package.glob("*.py")}
    assert {path: hits for path, hits in found.items() if hits} == {}
