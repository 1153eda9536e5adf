import subprocess
from pathlib import Path

import yaml

from symgen.cli import main, markdown_help

ROOT = Path(__file__).resolve().parents[1]


def test_dry_run_prints_resolved_config(capsys):
    assert main(["train", "flow", "--data", "moons", "--set", "train.steps=7", "--dry-run"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["data"]["name"] == "moons" and cfg["train"]["steps"] == 7 and cfg["model"]["name"] == "flow"


def test_typo_suggests_closest_key(capsys):
    assert main(["train", "flow", "--set", "train.stepz=3", "--dry-run"]) == 2
    assert "did you mean 'train.steps'" in capsys.readouterr().err


def test_unknown_model_suggests(capsys):
    assert main(["train", "flwo", "--dry-run"]) == 2
    assert "did you mean 'flow'" in capsys.readouterr().err


def test_list_shows_registries(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("models:", "flow", "datasets:", "spiral", "digits", "evaluations:", "experiments"):
        assert word in out


def test_cli_doc_is_current():
    assert (ROOT / "docs" / "cli.md").read_text().strip() == markdown_help().strip(), "run `make docs`"


def test_existing_run_needs_resume(tmp_path, symgen_cmd, subprocess_env):
    out = tmp_path / "r"
    base = symgen_cmd + [
        "train",
        "flow",
        "--data",
        "moons",
        "--quiet",
        "--out",
        str(out),
        "--set",
        "train.steps=5",
    ]
    subprocess.run(base, check=True, env=subprocess_env)
    again = subprocess.run(base, env=subprocess_env, capture_output=True, text=True)
    assert again.returncode != 0 and "--resume" in again.stderr


def test_sample_and_eval_commands(tmp_path, symgen_cmd, subprocess_env):
    out = tmp_path / "r"
    subprocess.run(
        symgen_cmd
        + ["train", "flow", "--data", "8gaussians", "--quiet", "--out", str(out), "--set", "train.steps=20"],
        check=True,
        env=subprocess_env,
    )
    png = tmp_path / "s.png"
    subprocess.run(
        symgen_cmd + ["sample", str(out), "-n", "100", "--out", str(png)], check=True, env=subprocess_env
    )
    assert png.stat().st_size > 1000
    pt = tmp_path / "s.pt"
    subprocess.run(
        symgen_cmd + ["sample", str(out), "-n", "33", "--out", str(pt)], check=True, env=subprocess_env
    )
    import torch

    assert torch.load(pt, weights_only=True).shape == (33, 2)
    before = (out / "metrics.jsonl").read_text().count("\n")
    subprocess.run(symgen_cmd + ["eval", str(out), "--metrics", "test_nll"], check=True, env=subprocess_env)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == before + 1 and '"test_nll"' in lines[-1]
