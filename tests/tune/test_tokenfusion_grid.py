"""TokenFusion on a Mix Transformer beside CEN on a ResNet in one grid, and its λ and θ searched as CEN's are: the grid
trains and tracks both (TokenFusion's exchanged tokens logged per stage), the report puts them in one table, and a
sweep's sampled ``model.params`` reach the TokenFusion model a trial builds."""

import re

from fusionlab.cli import main
from fusionlab.config import set_dotted
from fusionlab.data import Manifest
from fusionlab.data.synthetic import write_synthetic
from fusionlab.train.prepare import parse_config
from fusionlab.train.segmentation_task import build_model
from fusionlab.tune.search_space import apply_sample
from tiny_grids import grid_runs, write_grid


def test_a_grid_trains_tokenfusion_beside_cen_and_reports_both(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    data = tmp_path / "synthetic"
    write_synthetic(data, train=8, val=4, test=4, size=(48, 64), seed=0)
    cells = [("CEN", {"model.name": "cen"}),
             ("TokenFusion", {"model.name": "tokenfusion", "model.backbone": "mit_mini",
                              "model.params.threshold": 0.5})]  # above the untrained scores (about 0.5): some swap
    grid = write_grid(tmp_path / "grid.yaml", "tokens-and-channels", data, cells,
                      base={"train": {"epochs": 1, "batch_size": 4, "optimizer": "adam", "lr_encoder": 1e-3,
                                      "lr_decoder": 1e-3}})
    workdir = tmp_path / "runs"
    assert main(["--workdir", str(workdir), "grid", str(grid), "--local"]) == 0, capsys.readouterr().out
    _, _, children = grid_runs(workdir, "tokens-and-channels")
    assert sorted(children) == ["cen-seed0", "tokenfusion-seed0"]
    for run in children.values():
        assert run.info.status == "FINISHED" and "test/miou" in run.data.metrics
    tokens = children["tokenfusion-seed0"].data
    assert tokens.params["model.backbone"] == "mit_mini" and float(tokens.params["model.params.threshold"]) == 0.5
    stages = {key for key in tokens.metrics if re.fullmatch(r"exchange/fraction/stage[1-4]", key)}
    assert len(stages) == 4 and 0.0 < tokens.metrics["exchange/fraction"] < 1.0, tokens.metrics

    capsys.readouterr()
    assert main(["--workdir", str(workdir), "report", "--experiment", "tokens-and-channels"]) == 0
    report = capsys.readouterr().out
    assert "TokenFusion" in report and "CEN" in report


def test_a_sweep_searches_tokenfusions_lambda_and_threshold(tmp_path):
    data = tmp_path / "synthetic"
    write_synthetic(data, train=4, val=2, test=2, size=(48, 64), seed=0)
    tree = {"data": {"path": str(data), "modalities": ["rgb", "depth"], "crop": [48, 64]},
            "model": {"name": "tokenfusion", "backbone": "mit_mini"},
            "search": {"space": {"model.params.lambda": {"type": "loguniform", "low": 1e-6, "high": 1e-2},
                                 "model.params.threshold": {"type": "uniform", "low": 0.005, "high": 0.1}}}}
    parse_config(tree)  # the search space is valid for TokenFusion's parameters
    sample = {"model.params.lambda": 3e-4, "model.params.threshold": 0.07}  # what the searcher would suggest
    trial = parse_config(set_dotted(apply_sample(tree, sample), "search", None))  # as sweep.trial_fn builds it
    model = build_model(trial, Manifest.load(data))
    assert model.l1_lambda == 3e-4 and model.encoder.threshold == 0.07
