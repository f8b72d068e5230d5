"""The report's budgets and seed statistics: FLOPs per sample beside #params, the champion's budget against the
runner-up's, and paired differences over shared seeds with a Student-t interval (CEN − CEN without exchange by
default, any two rows with --pair)."""

import math
import re
import statistics

import pytest
from report_store import FixtureRun, scores, write_store
from scipy.stats import t as student_t

from fusionlab.cli import main
from fusionlab.models import build
from fusionlab.models.flops import model_sample_flops
from fusionlab.tracking import default_tracking_uri
from fusionlab.tracking.report import ReportError, caption, collect, frame, table_columns, table_rows

MIOU = {  # cell -> seed -> test mIoU (fractions): exchange ahead on every seed; random exchange within noise
    "CEN": {0: 0.61, 1: 0.58, 2: 0.64},
    "CEN without exchange": {0: 0.57, 1: 0.55, 2: 0.60},
    "Random exchange": {0: 0.58, 1: 0.57, 2: 0.58},
    "Late fusion": {0: 0.66, 1: 0.69},
}
MODELS = {"CEN": "cen", "CEN without exchange": "cen_no_exchange", "Random exchange": "cen_random_exchange",
          "Late fusion": "late_fusion"}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("paired-store")
    runs = [FixtureRun(cell, MODELS[cell], seed, scores(miou)) for cell, seeds in MIOU.items()
            for seed, miou in seeds.items()]
    write_store(workdir, "ablation", runs)
    return workdir


def by_hand(first: str, second: str) -> tuple[float, float, float]:
    seeds = sorted(set(MIOU[first]) & set(MIOU[second]))
    differences = [100 * (MIOU[first][s] - MIOU[second][s]) for s in seeds]
    mean = statistics.fmean(differences)
    half = student_t.ppf(0.975, len(seeds) - 1) * statistics.stdev(differences) / math.sqrt(len(seeds))
    return mean, mean - half, mean + half


def test_by_default_each_exchanging_cen_row_is_paired_with_cen_without_exchange(store):
    report = collect(default_tracking_uri(store), "ablation")
    pairs = {(pair.first, pair.second): pair for pair in report.paired}
    assert sorted(pairs) == [("CEN", "CEN without exchange"), ("Random exchange", "CEN without exchange")]
    for (first, second), pair in pairs.items():
        assert pair.seeds == ("0", "1", "2")
        assert (pair.mean, pair.low, pair.high) == pytest.approx(by_hand(first, second))
    assert pairs["CEN", "CEN without exchange"].excludes_zero()
    assert not pairs["Random exchange", "CEN without exchange"].excludes_zero()
    text = caption(report)
    mean, low, high = by_hand("CEN", "CEN without exchange")
    assert (f"Paired over seeds 0, 1, 2: CEN − CEN without exchange = {mean:+.1f} mIoU points (95% CI {low:+.1f} to "
            f"{high:+.1f}, Student t over 3 seeds; the interval excludes 0)") in text
    assert "Random exchange − CEN without exchange" in text and "not separable from seed noise" in text


def test_named_pairs_replace_the_default_and_bad_ones_are_refused(store):
    uri = default_tracking_uri(store)
    report = collect(uri, "ablation", pairs=[("Late fusion", "CEN")])
    assert [(p.first, p.second, p.seeds) for p in report.paired] == [("Late fusion", "CEN", ("0", "1"))]
    assert (report.paired[0].mean, report.paired[0].low) == pytest.approx(by_hand("Late fusion", "CEN")[:2])
    with pytest.raises(ReportError, match=r"no row labelled \['CEM'\]; the rows are \['CEN', "):
        collect(uri, "ablation", pairs=[("CEM", "Late fusion")])


def test_flops_per_sample_beside_params_and_the_champions_budget_in_the_caption(store):
    report = collect(default_tracking_uri(store), "ablation")
    columns = table_columns(report)
    assert columns.index("GFLOPs / sample") == columns.index("#Params (M)") + 1
    rows = {cells[0]: dict(zip(columns, cells, strict=True)) for cells in table_rows(report)}
    flops = {}
    for cell, name in MODELS.items():
        model = build(name, backbone="resnet_mini", num_classes=5, modalities=["rgb", "depth"])
        flops[cell] = model_sample_flops(model, (32, 32))
        assert rows[cell]["GFLOPs / sample"] == f"{flops[cell] / 1e9:.3g}"
    assert frame(report).set_index("method").loc["CEN", "flops"] == round(flops["CEN"])
    late = next(row for row in report.rows if row.label == "Late fusion")
    cen = next(row for row in report.rows if row.label == "CEN")
    line = next(line for line in caption(report).splitlines() if line.startswith("Best mIoU"))
    assert line == (f"Best mIoU: Late fusion ({late.mean('miou'):.1f}), ahead of CEN ({cen.mean('miou'):.1f}) with "
                    f"{late.parameters / cen.parameters:.2g}× the parameters and {late.flops / cen.flops:.2g}× the "
                    f"FLOPs per sample of it.")
    assert late.parameters / cen.parameters > 1.9, "late fusion: a network per modality"


def test_cli_pair_option(store, capsys):
    rc = main(["--workdir", str(store), "report", "--experiment", "ablation", "--pair", "Late fusion", "CEN"])
    out = " ".join(capsys.readouterr().out.split())
    assert rc == 0 and re.search(r"Late fusion − CEN = \+\d+\.\d mIoU points", out), out
