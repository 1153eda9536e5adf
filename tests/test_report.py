"""Run reports: training curves from metrics.jsonl, comparison pages, ``symgen report``, TensorBoard."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from symgen.cli import main
from symgen.config import resolve_config
from symgen.curves import collect_curves, curve_group, plot_curves, smooth
from symgen.report import final_metrics, write_comparison, write_run_report
from symgen.rundir import read_jsonl
from symgen.runs import train
from symgen.tensorboard import TensorBoardMissing, require_tensorboard

TINY = ["data.name=moons", "data.batch_size=32", "train.steps=6", "train.log_every=2", "train.n_samples=20"]


def _records(loss_scale: float = 1.0) -> list[dict]:
    recs = []
    for step in range(10, 110, 10):
        recs.append(
            {
                "kind": "train",
                "step": step,
                "loss": loss_scale * 100.0 / step,
                "prior_nll": 3.0 - step / 100,
                "grad_norm": 1.0 + step / 1000,
                "accept_rate": 0.6,
                "step_size": 0.1,
                "recon_mse": 0.05,
                "examples_per_s": 1500.0,
                "time": 1.0e9 + step,
            }
        )
    recs[3]["loss"] = "nan"  # RunDir.log writes non-finite floats as strings
    recs.insert(5, {"kind": "resume", "step": 50, "time": 1.0e9})
    recs.append({"kind": "eval", "step": 50, "fd_clf": 9.0 * loss_scale, "note": "not a number"})
    recs.append({"kind": "eval", "step": 100, "fd_clf": 4.0 * loss_scale})
    return recs


def _write_run(path: Path, records: list[dict], torn: str | None = None, data: str = "digits") -> Path:
    path.mkdir(parents=True)
    cfg = {"model": {"name": "lfbm"}, "data": {"name": data}, "train": {"steps": 100}}
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    text = "".join(json.dumps(r) + "\n" for r in records)
    (path / "metrics.jsonl").write_text(text + (torn or ""))
    return path


def test_curve_groups():
    assert curve_group("loss") == "losses" and curve_group("prior_nll") == "losses"
    assert curve_group("kl") == "losses" and curve_group("bpd") == "losses"
    assert curve_group("grad_norm") == "gradients"
    assert curve_group("accept_rate") == "sampler" and curve_group("step_size") == "sampler"
    assert curve_group("ess_min") == "sampler" and curve_group("progress") != "sampler"
    assert curve_group("examples_per_s") == "throughput"
    assert curve_group("generator/grad_norm") == "generator"  # one figure per optimizer prefix
    assert curve_group("recon_mse") == "other"
    assert curve_group("loss", kind="eval") == "eval"


def test_smooth_is_debiased_and_skips_nonfinite():
    x = np.array([5.0, 5.0, 5.0, np.nan, 5.0])
    np.testing.assert_allclose(smooth(x, 0.9)[[0, 1, 2, 4]], 5.0)  # no pull towards zero
    assert np.isnan(smooth(x, 0.9)[3])
    y = np.arange(20.0)
    np.testing.assert_array_equal(smooth(y, 0.0), y)
    s = smooth(y, 0.5)
    assert s[0] == 0.0 and np.all(s[1:] < y[1:])  # an average of the past lags a rising curve
    with pytest.raises(ValueError, match="smoothing weight"):
        smooth(y, 1.0)


def test_curves_from_metrics_with_torn_last_line(tmp_path):
    run = _write_run(tmp_path / "r", _records(), torn='{"kind": "train", "step": 110, "loss": 0.')
    with pytest.warns(UserWarning, match="torn last line"):
        records = read_jsonl(run / "metrics.jsonl")
    series = collect_curves(records)
    assert list(series) == ["losses", "gradients", "sampler", "eval", "other", "throughput"]
    steps, values = series["losses"]["loss"]
    assert steps.tolist() == list(range(10, 110, 10))  # torn step 110 skipped; resume record ignored
    assert np.isnan(values[3]) and values[0] == pytest.approx(10.0)
    assert series["eval"]["fd_clf"][0].tolist() == [50, 100] and "note" not in series["eval"]

    (run / "plots").mkdir()
    (run / "plots" / "curves-stale.png").write_bytes(b"old")
    paths = plot_curves({"r": records}, run / "plots")
    names = sorted(p.name for p in (run / "plots").glob("curves-*.png"))
    assert names == sorted(f"curves-{g}.png" for g in series) == sorted(p.name for p in paths)
    for p in paths:
        with Image.open(p) as img:
            assert img.width > 200 and img.height > 100


def test_run_report_has_training_curves(tmp_path):
    run = _write_run(tmp_path / "r", _records())
    report = write_run_report(run)
    text = report.read_text()
    assert text.startswith("# lfbm on digits")
    assert "## Training curves" in text and "(plots/curves-losses.png)" in text
    assert "| examples_per_s | 1500 |" in text.replace("1500.0", "1500")  # summary: the last train record
    assert "### curves-" not in text  # curves are not listed again among the plots


def test_final_metrics_take_latest_eval_and_train_losses():
    final = final_metrics(_records())
    assert final["step"] == 100 and final["fd_clf"] == 4.0
    assert final["train loss"] == pytest.approx(1.0) and "train accept_rate" not in final


def test_cli_report_compares_two_runs(tmp_path, capsys):
    a = _write_run(tmp_path / "runs" / "alpha", _records(1.0))
    b = _write_run(tmp_path / "runs" / "beta", _records(2.0), data="mnist")
    (a / "report.md").write_text("# alpha\n")
    assert main(["report", str(a), str(b)]) == 0
    page = tmp_path / "runs" / "comparison.md"
    assert str(page) in capsys.readouterr().out
    text = page.read_text()
    assert "[alpha](alpha/report.md)" in text and "| beta | lfbm on mnist |" in text
    assert "| 4 |" in text and "| 8 |" in text  # fd_clf of each run at its last evaluation
    figures = sorted((tmp_path / "runs" / "comparison-curves").glob("curves-*.png"))
    assert len(figures) == 6 and all(f"comparison-curves/{f.name}" in text for f in figures)


def test_cli_report_rebuilds_one_run(tmp_path, capsys):
    run = _write_run(tmp_path / "r", _records())
    assert main(["report", str(run)]) == 0
    assert "report.md" in capsys.readouterr().out
    assert "## Training curves" in (run / "report.md").read_text()


def test_report_errors_are_clear(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    a = _write_run(tmp_path / "x" / "r", _records())
    b = _write_run(tmp_path / "y" / "r", _records())
    with pytest.raises(ValueError, match="labels"):
        write_comparison([a, b], tmp_path / "c.md", labels=["one"])
    page = write_comparison([a, b], tmp_path / "c.md")  # same folder names: labels from the paths
    assert "x/r" in page.read_text() and "y/r" in page.read_text()


def test_tensorboard_flag_sets_config(capsys):
    assert main(["train", "flow", "--tensorboard", "--dry-run"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["train"]["tensorboard"] is True


def test_missing_tensorboard_fails_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    with pytest.raises(TensorBoardMissing, match=r"pip install 'symgen\[tensorboard\]'"):
        require_tensorboard()
    cfg = resolve_config("flow", overrides=TINY + ["train.tensorboard=true"])
    with pytest.raises(TensorBoardMissing):
        train(cfg, tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()
    out = str(tmp_path / "cli")
    assert main(["train", "flow", "--data", "moons", "--tensorboard", "--quiet", "--out", out]) == 2
    assert "pip install 'symgen[tensorboard]'" in capsys.readouterr().err
    assert not (tmp_path / "cli").exists()


def _scalars_and_records(run):
    """TensorBoard's ``{tag: [(step, value)]}`` of ``run`` and the same built from its ``metrics.jsonl``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    got = {tag: sorted((e.step, e.value) for e in acc.Scalars(tag)) for tag in acc.Tags()["scalars"]}
    expected: dict[str, list] = {}
    for rec in read_jsonl(run / "metrics.jsonl"):
        if rec["kind"] in ("train", "eval"):
            for k, v in rec.items():
                if k not in ("kind", "step", "time"):  # TensorBoard stores scalars as float32
                    expected.setdefault(f"{rec['kind']}/{k}", []).append((rec["step"], float(np.float32(v))))
    return got, {tag: sorted(v) for tag, v in expected.items()}, acc.Tags()["images"]


def test_tensorboard_scalars_equal_metrics_jsonl(tmp_path):
    pytest.importorskip(
        "tensorboard", reason="tensorboard is not installed (pip install 'symgen[tensorboard]')"
    )
    cfg = resolve_config("flow", overrides=TINY + ["train.tensorboard=true", "train.eval_metrics=[test_nll]"])
    train(cfg, tmp_path / "r", progress=False)
    assert list((tmp_path / "r" / "tensorboard").glob("events.out.tfevents.*"))
    got, expected, images = _scalars_and_records(tmp_path / "r")
    assert "train/nll" in expected and "eval/test_nll" in expected and len(expected["train/nll"]) == 3
    assert got == expected
    assert "samples" in images


def test_tensorboard_resume_logs_every_step_once(tmp_path):
    """A run that died after step 4's checkpoint and logged steps 5-8 is resumed from step 4: TensorBoard
    hides the first attempt's steps 5-8, as metrics.jsonl drops them."""
    pytest.importorskip(
        "tensorboard", reason="tensorboard is not installed (pip install 'symgen[tensorboard]')"
    )
    sets = ["train.steps=8", "train.log_every=1", "train.ckpt_every=4", "train.tensorboard=true"]
    cfg = resolve_config("flow", overrides=TINY + sets)
    run = tmp_path / "r"
    train(cfg, run, progress=False)
    (run / "checkpoints" / "step-0000008.pt").unlink()  # as if killed before the last checkpoint
    (run / "checkpoints" / "latest.txt").write_text("step-0000004.pt\n")
    train(cfg, run, resume=True, progress=False)
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 2
    got, expected, _ = _scalars_and_records(run)
    assert [s for s, _ in expected["train/nll"]] == list(range(1, 9))
    assert got == expected
