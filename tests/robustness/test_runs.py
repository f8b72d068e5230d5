"""Training runs through the CLI: a resume that would train something else, a diverged run, a grid whose cell
fails: a refusal or an error that names the key or the cause, never a traceback, and no run left RUNNING."""

from mlflow.tracking import MlflowClient

from fusionlab.tracking import default_tracking_uri

TRAIN = ["--local", "--set", "model.backbone=resnet_mini", "--set", "train.epochs=1", "--set", "data.crop=[32,40]",
         "--set", "tracking.experiment=robust", "--set", "tracking.run_name=the-run"]


def statuses(workdir):
    client = MlflowClient(default_tracking_uri(workdir))
    experiment = client.get_experiment_by_name("robust")
    return sorted(run.info.status for run in client.search_runs([experiment.experiment_id])) if experiment else []


def test_resuming_a_run_with_another_model_or_lambda_is_refused(cli, tiny_synthetic, tmp_path):
    config = "experiments/synthetic_cen.yaml"
    first = cli("train", config, *TRAIN, "--set", f"data.path={tiny_synthetic}")
    assert first.rc == 0, first.output
    cli("train", config, *TRAIN, "--set", f"data.path={tiny_synthetic}", "--set", "model.name=asymfusion",
        "--set", "model.params={}").refused(
        "run 'the-run' already exists", "model.name: cen -> asymfusion", "tracking.run_name=NEW_NAME")
    cli("train", config, *TRAIN, "--set", f"data.path={tiny_synthetic}", "--set", "model.params.lambda=0.01").refused(
        "model.params.lambda:", "-> 0.01")
    cli("train", config, *TRAIN, "--set", f"data.path={tiny_synthetic}", "--set", "model.name=asymfusion").refused(
        "model.params.lambda: unknown key")  # CEN's parameters left behind: named, before anything runs
    assert statuses(tmp_path / "runs") == ["FINISHED"]


def test_a_diverged_run_is_an_error_and_ends_failed(cli, tiny_synthetic, tmp_path):
    cli("train", "experiments/synthetic_cen.yaml", *TRAIN, "--set", f"data.path={tiny_synthetic}",
        "--set", "train.optimizer=sgd", "--set", "train.lr_encoder=1e6", "--set", "train.lr_decoder=1e6",
        "--set", "train.batch_size=2").refused(
        "training loss was not finite", "epoch 0", "lower train.lr_encoder")
    assert statuses(tmp_path / "runs") == ["FAILED"]
