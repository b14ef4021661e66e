"""`freenet train`: learns the shipped digits, checkpoints, resumes, reloads through the registry."""

from __future__ import annotations

import torch
from typer.testing import CliRunner

from freenet import create_model
from freenet.cli import build_app
from freenet.data import load_digits_split
from freenet.train import TrainConfig, evaluate, train


def test_tiny_learns_digits_and_checkpoint_reloads(tmp_path):
    res = train(TrainConfig("freenet_tiny", out_dir=tmp_path, epochs=3, seed=0))
    assert res.best_acc > 0.5  # chance is 0.1
    model = create_model("freenet_tiny", checkpoint=res.checkpoint)
    data = load_digits_split(32)
    acc = evaluate(model, torch.utils.data.DataLoader(data.val, 256))
    assert abs(acc - res.best_acc) < 1e-6


def test_resume_continues_from_last_epoch(tmp_path):
    train(TrainConfig("freenet_tiny", out_dir=tmp_path, epochs=1, max_steps_per_epoch=3))
    first = torch.load(tmp_path / "last.ckpt", weights_only=True)
    res = train(TrainConfig("freenet_tiny", out_dir=tmp_path, epochs=2, max_steps_per_epoch=3, resume=True))
    assert res.epochs_run == 2 and [h["epoch"] for h in res.history] == [1, 2]
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["epoch"] == first["epoch"] + 1


def test_cli_models_and_train_errors(tmp_path):
    runner = CliRunner()
    app = build_app()
    r = runner.invoke(app, ["models", "freenet_tiny", "mobilenet_v2"])
    assert r.exit_code == 0, r.output
    assert "3.505" in r.output and "freenet_tiny" in r.output
    r = runner.invoke(app, ["models", "freenet_s9"])
    assert r.exit_code != 0 and "freenet_s" in r.output
    r = runner.invoke(app, ["train", "freenet_tiny", "--data", str(tmp_path / "nope"), "--out", str(tmp_path)])
    assert r.exit_code == 2 and "does not exist" in " ".join(r.output.split())  # rich wraps at 80 columns
