"""`fusionlab report` on single- and multi-scale scores: which it reads, how the caption names them, and published
figures scored the other way called out."""

import pytest
from report_store import FixtureRun, scores, write_store

from fusionlab.cli import main
from fusionlab.models.multiscale import protocol_label
from fusionlab.tracking import default_tracking_uri
from fusionlab.tracking.report import ReportError, caption, collect

MULTI = protocol_label([0.5, 1.0, 1.5], True)
SINGLE_PAPER = {"miou": 51.1, "source": "fixture, single-scale", "protocol": "single-scale"}
UNSTATED_PAPER = {"miou": 40.0, "source": "fixture, protocol not stated"}


def multi_scale(test_miou: float) -> dict[str, float]:
    """A run that also logged the selected model's multi-scale scores (model.eval_scales)."""
    return {**scores(test_miou - 0.05), **{f"test_ms/{key.split('/')[1]}": value
                                            for key, value in scores(test_miou).items()}}


def test_multi_scale_scores_are_read_when_every_run_has_them_and_the_caption_names_the_protocol(tmp_path):
    runs = [FixtureRun("RGB", "unimodal", 0, multi_scale(0.40), modality="rgb", paper=UNSTATED_PAPER,
                       tags={"fusionlab.eval_protocol": MULTI}),
            FixtureRun("CEN", "cen", 0, multi_scale(0.55), paper=SINGLE_PAPER, tags={"fusionlab.eval_protocol": MULTI})]
    write_store(tmp_path, "ms", runs)
    uri = default_tracking_uri(tmp_path)

    report = collect(uri, "ms")
    assert report.protocol == MULTI
    assert [row.mean("miou") for row in report.rows] == pytest.approx([40.0, 55.0])
    text = caption(report)
    assert f"test split ({MULTI})" in text
    assert "scored otherwise than ours (multi-scale)" in text and "CEN (single-scale)" in text
    assert "does not say whether they are single- or multi-scale: RGB" in text

    single = collect(uri, "ms", protocol="single")
    assert single.protocol == "single-scale"
    assert [row.mean("miou") for row in single.rows] == pytest.approx([35.0, 50.0])
    text = caption(single)
    assert "test split (single-scale)" in text and "scored otherwise" not in text


def test_auto_falls_back_to_single_scale_when_a_run_has_no_multi_scale_scores_and_multi_names_it(tmp_path):
    runs = [FixtureRun("A", "unimodal", 0, multi_scale(0.40), modality="rgb"),
            FixtureRun("B", "unimodal", 0, scores(0.30), modality="depth")]
    write_store(tmp_path, "mixed", runs)
    uri = default_tracking_uri(tmp_path)
    assert collect(uri, "mixed").protocol == "single-scale"
    with pytest.raises(ReportError, match=r"runs \['b-1-seed0'\] have no multi-scale test scores"):
        collect(uri, "mixed", protocol="multi")


def test_cli_protocol_option(tmp_path, capsys):
    write_store(tmp_path, "cli-ms", [FixtureRun("A", "unimodal", 0, multi_scale(0.40), modality="rgb",
                                                tags={"fusionlab.eval_protocol": MULTI})])
    assert main(["--workdir", str(tmp_path), "report", "--experiment", "cli-ms", "--protocol", "single"]) == 0
    assert "(single-scale)" in capsys.readouterr().out
    assert main(["--workdir", str(tmp_path), "report", "--experiment", "cli-ms", "--overwrite"]) == 0
    assert MULTI.split(" + ")[0] in capsys.readouterr().out
