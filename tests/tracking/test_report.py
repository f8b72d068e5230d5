"""`fusionlab report` against a small fixture store: the table, the paper columns, the files, the parent-run logging."""

import statistics

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from report_store import GRID_RUNS, PAPER, FixtureRun, scores, write_store

from fusionlab.cli import main
from fusionlab.tracking import default_tracking_uri
from fusionlab.tracking.report import (
    REPORT_MARKER,
    ReportError,
    collect,
    frame,
    markdown,
    table_columns,
    table_rows,
    write_report,
)

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def grid_store(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("grid-store")
    ids = write_store(workdir, "fixture-grid", GRID_RUNS)
    return workdir, ids


def expected(cell: str, key: str) -> list[float]:
    return [100 * run.scores[key] for run in GRID_RUNS if run.cell == cell]


def test_rows_are_cells_with_seeds_averaged_on_the_test_split(grid_store):
    workdir, _ = grid_store
    report = collect(default_tracking_uri(workdir), "fixture-grid")
    assert report.split == "test"
    assert [row.label for row in report.rows] == ["RGB only", "Depth only", "CEN"]  # the grid's order
    for row in report.rows:
        for metric in ("pixel_acc", "mean_acc", "miou"):
            values = expected(row.label, f"test/{metric}")
            assert row.mean(metric) == pytest.approx(statistics.fmean(values))
            assert row.std(metric) == pytest.approx(statistics.stdev(values))
    assert report.rows[0].method == "unimodal (rgb)" and report.rows[2].modalities == "rgb,depth"
    assert report.best_unimodal().label == "Depth only"


def test_table_has_paper_figures_differences_and_the_gap_to_the_best_unimodal(grid_store):
    workdir, _ = grid_store
    report = collect(default_tracking_uri(workdir), "fixture-grid")
    columns = table_columns(report)
    rows = {cells[0]: dict(zip(columns, cells, strict=True)) for cells in table_rows(report)}
    cen_miou = statistics.fmean(expected("CEN", "test/miou"))
    assert rows["CEN"]["paper mIoU"] == f"{PAPER['miou']:.1f}"
    assert rows["CEN"]["Δ mIoU"] == f"{cen_miou - PAPER['miou']:+.1f}"
    assert rows["RGB only"]["paper mIoU"] == "-" and rows["RGB only"]["Δ mIoU"] == "-"
    depth = statistics.fmean(expected("Depth only", "test/miou"))
    assert rows["CEN"]["mIoU vs best unimodal"] == f"{cen_miou - depth:+.1f}"
    assert rows["Depth only"]["mIoU vs best unimodal"] == "-"
    assert rows["CEN"]["seeds"] == "2"
    assert float(rows["CEN"]["#Params (M)"]) > float(rows["RGB only"]["#Params (M)"])
    text = markdown(report)
    assert "| Method | Modalities | Backbone |" in text and PAPER["source"] in text


def test_report_files_plots_and_parent_run_logging(grid_store, tmp_path):
    workdir, ids = grid_store
    uri = default_tracking_uri(workdir)
    out = tmp_path / "report"
    (out / "plots").mkdir(parents=True)  # an earlier report, with a plot this one does not draw
    (out / REPORT_MARKER).write_text("")
    (out / "plots" / "stale.png").write_bytes(PNG)
    report, written, parents = write_report(uri, "fixture-grid", out)
    assert written == out and not (out / "plots" / "stale.png").exists()  # replaced as a whole
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind
    frame = pd.read_csv(out / "report.csv")
    cen = frame[frame.method == "CEN"].iloc[0]
    assert cen.miou == pytest.approx(statistics.fmean(expected("CEN", "test/miou")))
    assert cen.diff_miou == pytest.approx(cen.miou - PAPER["miou"])
    assert cen.paper_source == PAPER["source"]
    assert set(cen.run_ids.split()) == {ids[("CEN", 0)], ids[("CEN", 1)]}
    pngs = {p.name for p in (out / "plots").glob("*.png")}
    assert {"miou_by_method.png", "gamma_histograms.png", "exchange_by_layer.png"} <= pngs
    assert all((out / "plots" / name).read_bytes().startswith(PNG) for name in pngs)
    assert parents == [ids["parent"]]
    logged = {a.path for a in MlflowClient(uri).list_artifacts(ids["parent"], "report")}
    assert {"report/report.md", "report/report.csv", "report/plots"} <= logged


def test_falls_back_to_val_when_a_run_has_no_test_scores_and_skips_unfinished(tmp_path):
    runs = [FixtureRun("A", "unimodal", 0, scores(0.3, 0.2), modality="rgb"),
            FixtureRun("B", "unimodal", 0, {"val/miou": 0.25, "val/pixel_acc": 0.5, "val/mean_acc": 0.3},
                       modality="depth"),
            FixtureRun("C", "unimodal", 0, scores(0.9, 0.9), modality="rgb", status="FAILED")]
    write_store(tmp_path, "mixed", runs)
    report = collect(default_tracking_uri(tmp_path), "mixed")
    assert report.split == "val"
    assert [row.label for row in report.rows] == ["A", "B"]
    assert report.rows[0].mean("miou") == pytest.approx(20.0)
    explicit = collect(default_tracking_uri(tmp_path), "mixed", split="test")
    assert explicit.rows[1].mean("miou") is None  # B has no test scores: shown as "-"
    assert table_rows(explicit)[1][table_columns(explicit).index("mIoU (%)")] == "-"


@pytest.mark.parametrize("prefix", ["model.params", "model.cen"], ids=["today", "runs-logged-before-model-params"])
def test_sweep_trials_sorted_best_first_with_the_searched_parameters_and_their_plots(tmp_path, prefix):
    # the last trial was stopped by the scheduler: listed, marked, with the epochs it ran
    trials = [FixtureRun(None, "cen", 0, scores(miou), params={f"{prefix}.lambda": lam, f"{prefix}.threshold": th})
              for miou, lam, th in ((0.40, 1e-4, 0.01), (0.60, 1e-3, 0.02), (0.50, 1e-2, 0.03))]
    trials.append(FixtureRun(None, "cen", 0, scores(0.1), params={f"{prefix}.lambda": 0.5, f"{prefix}.threshold": 0.5},
                             status="KILLED", tags={"fusionlab.stopped_early": "true"}))
    write_store(tmp_path, "sweep", trials, parent_kind="sweep")
    report, out, parents = write_report(default_tracking_uri(tmp_path), "sweep", tmp_path / "out")
    assert report.split == "test"  # every listed trial has test scores
    assert [row.mean("miou") for row in report.rows] == pytest.approx([60.0, 50.0, 40.0, 10.0])
    assert report.stopped_early == 1 and "1 trial(s) were stopped early" in markdown(report)
    assert report.rows[-1].label.endswith("(stopped at epoch 1)")
    columns = table_columns(report)
    assert "λ" in columns and table_rows(report)[0][columns.index("λ")] == "0.001"
    assert {"miou_vs_lambda.png", "miou_vs_threshold.png"} <= {p.name for p in (out / "plots").glob("*.png")}
    assert len(parents) == 1


def test_unknown_experiment_names_the_ones_there(grid_store):
    workdir, _ = grid_store
    with pytest.raises(ReportError, match=r"no experiment 'nope'.*fixture-grid"):
        collect(default_tracking_uri(workdir), "nope")


def test_cli_prints_the_table_and_writes_under_the_workdir(grid_store, capsys):
    workdir, _ = grid_store
    assert main(["--workdir", str(workdir), "report", "--experiment", "fixture-grid"]) == 0
    printed = capsys.readouterr().out
    assert "CEN" in printed and "Depth only" in printed and "vs best uni" in printed
    assert (workdir / "reports" / "fixture-grid" / "report.md").is_file()
    assert main(["--workdir", str(workdir), "report", "--experiment", "missing"]) == 1
    assert "no experiment 'missing'" in capsys.readouterr().out


def test_a_model_uri_that_does_not_resolve_is_a_clear_error_not_a_traceback(grid_store, capsys):
    workdir, _ = grid_store
    data = workdir / "no-data"
    for uri in ("runs:/0123456789abcdef0123456789abcdef/model", "models:/no-such-model@champion"):
        assert main(["--workdir", str(workdir), "evaluate", "--model", uri, "--data", str(data)]) == 1
        assert f"cannot load model '{uri}'" in capsys.readouterr().out


def test_caption_says_which_recipe_and_selection_produced_each_row(tmp_path):
    reference = {"fusionlab.recipe": "reference", "fusionlab.selection": "best_test"}
    ours = {"fusionlab.recipe": "fusionlab", "fusionlab.selection": "best_val"}
    runs = [FixtureRun("RGB only", "unimodal", 0, scores(0.30, 0.31), modality="rgb", tags=reference),
            FixtureRun("CEN", "cen", 0, scores(0.55, 0.50), paper=PAPER, tags=reference)]
    write_store(tmp_path, "fixture-reference", runs)
    text = markdown(collect(default_tracking_uri(tmp_path), "fixture-reference"))
    assert "Recipe: reference (every row)." in text
    assert "Selected: the best epoch on the test split (the references' protocol: selected on test" in text

    mixed = [runs[0], FixtureRun("CEN", "cen", 0, scores(0.55, 0.50), paper=PAPER, tags=ours)]
    write_store(tmp_path / "mixed", "fixture-mixed", mixed)
    report = collect(default_tracking_uri(tmp_path / "mixed"), "fixture-mixed")
    text = markdown(report)
    assert "Recipe: reference (RGB only); fusionlab (CEN)." in text
    assert "the best epoch on the val split, test scored once with it (CEN)" in text
    csv = frame(report)
    assert list(csv["recipe"]) == ["reference", "fusionlab"] and list(csv["selection"]) == ["best_test", "best_val"]


def test_each_backbones_fusion_rows_are_measured_against_its_own_unimodal_row():
    """A grid with two networks (the synthetic grid's ResNet and Mix Transformer rows): a fusion row's gap is to the
    best unimodal row on its backbone, and a backbone with no unimodal row shows none."""
    from fusionlab.tracking.report_rows import Report
    from fusionlab.tracking.report_scores import Row, RunScores
    from fusionlab.tracking.report_table import caption

    def row(label, model, backbone, miou):
        run = RunScores(label, label, label, model, {}, {}, {"miou": miou}, 0)
        return Row(label, model, "rgb,depth", backbone, [run], None, None)

    rows = [row("RGB (CNN)", "unimodal", "resnet_mini", 0.50), row("Depth (CNN)", "unimodal", "resnet_mini", 0.30),
            row("CEN", "cen", "resnet_mini", 0.55), row("RGB (MiT)", "unimodal", "mit_mini", 0.40),
            row("TokenFusion", "tokenfusion", "mit_mini", 0.45), row("CEN (R101)", "cen", "resnet101", 0.60)]
    report = Report("two-networks", "test", rows, 0)
    columns = table_columns(report)
    table = {cells[0]: dict(zip(columns, cells, strict=True)) for cells in table_rows(report)}
    gaps = {label: cells["mIoU vs best unimodal"] for label, cells in table.items()}
    assert gaps == {"RGB (CNN)": "-", "Depth (CNN)": "-20.0", "CEN": "+5.0", "RGB (MiT)": "-", "TokenFusion": "+5.0",
                    "CEN (R101)": "-"}
    csv_gaps = frame(report).set_index("method")["miou_vs_best_unimodal"]
    assert csv_gaps.isna().to_dict() == {label: gap == "-" for label, gap in gaps.items()}
    assert csv_gaps.dropna().to_dict() == pytest.approx({"Depth (CNN)": -20.0, "CEN": 5.0, "TokenFusion": 5.0})
    assert "same backbone (resnet_mini: RGB (CNN) (50.0); mit_mini: RGB (MiT) (40.0))" in caption(report)
