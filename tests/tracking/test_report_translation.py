"""`fusionlab report` for translation experiments: FID / KID×100 / L1, lower is better, and FIDs from the local
stand-in extractor kept apart from the published ones."""

import pandas as pd
import pytest
from report_store import (
    GRID_RUNS,
    PAPER_TRANSLATION,
    TRANSLATION_INCEPTION_RUNS,
    TRANSLATION_LOCAL_RUNS,
    FixtureRun,
    translation_scores,
    write_store,
)

from fusionlab.fid import INCEPTION_NAME, LOCAL_NAME
from fusionlab.tracking import default_tracking_uri
from fusionlab.tracking.report import ReportError, caption, collect, markdown, table_columns, table_rows, write_report

PNG = b"\x89PNG\r\n\x1a\n"
COLUMNS = ["FID", "KID×100", "L1"]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """One grid store per extractor, each reported once: (report, output folder, the runs written)."""
    out = {}
    for name, runs in (("local", TRANSLATION_LOCAL_RUNS), ("inception", TRANSLATION_INCEPTION_RUNS)):
        workdir = tmp_path_factory.mktemp(f"translation-{name}")
        write_store(workdir, f"translation-{name}", runs)
        report, folder, _ = write_report(default_tracking_uri(workdir), f"translation-{name}", workdir / "report")
        out[name] = report, folder, runs
    return out


def logged(runs: list[FixtureRun], cell: str, metric: str) -> float:
    (run,) = [run for run in runs if run.cell == cell]
    return run.scores[f"test/{metric}"]


def cells(report) -> dict[str, dict[str, str]]:
    columns = table_columns(report)
    return {row[0]: dict(zip(columns, row, strict=True)) for row in table_rows(report)}


def test_table_shows_fid_kid_l1_as_logged_and_each_row_against_the_best_unimodal_by_fid(stores):
    report, folder, runs = stores["local"]
    assert report.task_name == "translation" and report.split == "test"
    assert [row.label for row in report.rows] == ["Depth only", "Concat", "CEN"]  # the grid's order
    assert report.best_unimodal().label == "Depth only"
    table = cells(report)
    for label, row in table.items():
        assert row["FID"] == f"{logged(runs, label, 'fid'):.2f}"
        assert row["KID×100"] == f"{logged(runs, label, 'kid'):.2f}"  # logged ×100 already: shown as is
        assert row["L1"] == f"{logged(runs, label, 'l1'):.3f}"
    uni = logged(runs, "Depth only", "fid")
    cen, concat = logged(runs, "CEN", "fid") - uni, logged(runs, "Concat", "fid") - uni
    assert cen < 0 < concat  # the store's CEN beats the unimodal row, concat does not
    assert table["CEN"]["FID vs best unimodal"] == f"{cen:+.2f}" and table["CEN"]["FID vs best unimodal"][0] == "-"
    assert table["Concat"]["FID vs best unimodal"] == f"{concat:+.2f}"
    assert table["Depth only"]["FID vs best unimodal"] == "-"
    assert "a negative Δ is an improvement" in caption(report) and "lower is better" in caption(report)
    frame = pd.read_csv(folder / "report.csv").set_index("method")
    for label in table:
        for metric in ("fid", "kid", "l1"):
            assert frame.loc[label, metric] == pytest.approx(logged(runs, label, metric))
    assert frame.loc["CEN", "fid_vs_best_unimodal"] == pytest.approx(cen)
    assert "miou" not in frame.columns


def test_local_extractor_fids_are_flagged_and_get_no_paper_difference(stores):
    report, folder, _ = stores["local"]
    assert not report.comparable and report.fid_features == (LOCAL_NAME,)
    columns = table_columns(report)
    assert columns[3:6] == COLUMNS and not [c for c in columns if "paper" in c or c.startswith("Δ")]
    text = (folder / "report.md").read_text()
    assert text == markdown(report)
    assert "Not comparable to published figures" in text and f"local stand-in feature extractor `{LOCAL_NAME}`" in text
    assert text.index("Not comparable") < text.index("| Method")  # said before the table, not only under it
    frame = pd.read_csv(folder / "report.csv").set_index("method")
    assert frame.loc["CEN", "paper_fid"] == PAPER_TRANSLATION["fid"]  # the published figure is kept, for the record
    assert frame[["diff_fid", "diff_kid"]].isna().all().all()  # but no difference to it
    assert (frame.fid_features == LOCAL_NAME).all()


def test_inception_fids_sit_beside_the_published_figures(stores):
    report, folder, runs = stores["inception"]
    assert report.comparable and report.fid_features == (INCEPTION_NAME,)
    columns = table_columns(report)
    assert columns[3:10] == ["FID", "paper FID", "Δ FID", "KID×100", "paper KID×100", "Δ KID×100", "L1"]
    table = cells(report)
    fid, kid = logged(runs, "CEN", "fid"), logged(runs, "CEN", "kid")
    assert table["CEN"]["paper FID"] == f"{PAPER_TRANSLATION['fid']:.2f}"
    assert table["CEN"]["Δ FID"] == f"{fid - PAPER_TRANSLATION['fid']:+.2f}"
    assert table["CEN"]["Δ KID×100"] == f"{kid - PAPER_TRANSLATION['kid']:+.2f}"
    assert table["Concat"]["paper FID"] == "-" and table["Concat"]["Δ FID"] == "-"
    text = (folder / "report.md").read_text()
    assert "Not comparable" not in text and PAPER_TRANSLATION["source"] in text
    frame = pd.read_csv(folder / "report.csv").set_index("method")
    assert frame.loc["CEN", "diff_fid"] == pytest.approx(fid - PAPER_TRANSLATION["fid"])


def test_fid_plot_written_and_no_segmentation_plot(stores):
    for _, folder, _ in stores.values():
        pngs = {p.name for p in (folder / "plots").glob("*.png")}
        assert "fid_by_method.png" in pngs and "miou_by_method.png" not in pngs
        assert {"gamma_histograms.png", "exchange_by_layer.png"} <= pngs  # from the CEN generator
        assert all((folder / "plots" / name).read_bytes().startswith(PNG) for name in pngs)


def test_sweep_sorted_lowest_fid_first_on_val_with_the_fid_against_lambda_plot(tmp_path):
    tags = {"fusionlab.fid_features": LOCAL_NAME}
    trials = [FixtureRun(None, "cen", 0, translation_scores(None, fid), task="translation", tags=tags,
                         params={"model.cen.lambda": lam}) for fid, lam in ((140.0, 1e-4), (90.0, 1e-3), (110.0, 1e-2))]
    write_store(tmp_path, "translation-sweep", trials, parent_kind="sweep")
    report, out, _ = write_report(default_tracking_uri(tmp_path), "translation-sweep", tmp_path / "out")
    assert report.split == "val"  # no trial has test scores
    assert [row.mean("fid") for row in report.rows] == pytest.approx([90.0, 110.0, 140.0])
    assert table_rows(report)[0][table_columns(report).index("λ")] == "0.001"
    assert {"fid_by_method.png", "fid_vs_lambda.png"} <= {p.name for p in (out / "plots").glob("*.png")}


def test_an_experiment_mixing_tasks_is_a_clear_error(tmp_path):
    unimodal = [run for run in TRANSLATION_LOCAL_RUNS if run.model == "unimodal"]
    write_store(tmp_path, "mixed-tasks", [GRID_RUNS[0], *unimodal], parent_kind=None)
    with pytest.raises(ReportError, match=r"'mixed-tasks' mixes tasks \['segmentation', 'translation'\]"):
        collect(default_tracking_uri(tmp_path), "mixed-tasks")
