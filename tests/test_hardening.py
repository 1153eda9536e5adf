"""Run directories, resume semantics, data splits, divergence and bad input (issue: hardening).

Each test reproduces a way a run used to lose or corrupt results, or a bad input that used to end in a
traceback, and checks the fixed behaviour.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from symgen.checkpoint import load_checkpoint
from symgen.cli import main
from symgen.config import ConfigError, resolve_config
from symgen.rundir import RunDir, read_jsonl
from symgen.runlock import RunLock, RunLockedError
from symgen.runs import load_data, train
from symgen.trainer import DivergenceError

TINY = ["--data", "spiral", "--quiet", "--set", "data.batch_size=32", "--set", "train.log_every=1"]
FLOW = ["model.flow=realnvp", "model.flow_args={transforms: 2, hidden: [16]}"]


def _train(argv: list[str]) -> int:
    return main(["train", "flow", *TINY, *argv])


def _tiny_cfg(*extra: str) -> dict:
    return resolve_config(
        "flow", overrides=["data.name=spiral", "data.batch_size=32", "train.log_every=1", *extra]
    )


# ------------------------------------------------------------------ 1. one writer per run directory


def test_second_writer_is_refused_and_names_the_holder(tmp_path, capsys):
    run = tmp_path / "r"
    assert _train(["--out", str(run), "--set", "train.steps=3"]) == 0
    with RunLock(run):
        code = _train(["--out", str(run), "--resume", "--set", "train.steps=6"])
        assert code == 4
        assert f"process {os.getpid()}" in capsys.readouterr().err
        assert main(["eval", str(run), "--metrics", "test_nll"]) == 4
    assert RunDir(run).load_latest()["step"] == 3
    # released: now it works
    assert _train(["--out", str(run), "--resume", "--set", "train.steps=6"]) == 0


def test_stale_lock_of_a_dead_process_is_reported_and_taken_over(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / ".lock").write_text(json.dumps({"pid": 999999, "host": "elsewhere", "started": "yesterday"}))
    with pytest.warns(RuntimeWarning, match="stale lock left by process 999999"):
        lock = RunLock(run).acquire()
    assert json.loads((run / ".lock").read_text())["pid"] == os.getpid()
    with pytest.raises(RunLockedError, match=f"in use by process {os.getpid()}"):
        RunLock(run).acquire()
    lock.release()
    assert not (run / ".lock").exists()


def test_concurrent_default_run_directories_are_unique(tmp_path, symgen_cmd, subprocess_env):
    """Two runs started in the same second (a sweep) get two directories."""
    cmd = symgen_cmd + ["train", "flow", "--data", "spiral", "--quiet", "--set", "train.steps=2"]
    procs = [
        subprocess.Popen(cmd + ["--seed", str(s)], cwd=tmp_path, env=subprocess_env, stderr=subprocess.PIPE)
        for s in (1, 2)
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read().decode()[-2000:]
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2
    seeds = sorted(RunDir(r).load_config()["seed"] for r in runs)
    assert seeds == [1, 2]


# ------------------------------------------------------------------ 2. never overwrite a directory


def test_fresh_run_refuses_a_directory_with_files(tmp_path, capsys):
    run = tmp_path / "mine"
    run.mkdir()
    (run / "report.md").write_text("my notes")
    assert _train(["--out", str(run), "--set", "train.steps=2"]) == 2
    assert "report.md" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == ["report.md"]
    assert (run / "report.md").read_text() == "my notes"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _train(["--out", str(empty), "--set", "train.steps=2"]) == 0


# ------------------------------------------------------------------ 3. settings changed on resume


def test_resume_applies_learning_rate_steps_and_config_file(tmp_path):
    run = tmp_path / "r"
    assert _train(["--out", str(run), "--set", "train.steps=10", "--set", "model.lr_decay=0.9"]) == 0
    cfg_file = tmp_path / "more.yaml"
    cfg_file.write_text("train:\n  steps: 14\n  ckpt_every: 4\n")
    assert _train(["--out", str(run), "--resume", "--config", str(cfg_file), "--set", "model.lr=5e-4"]) == 0
    state = RunDir(run).load_latest()
    assert state["step"] == 14
    group = state["optimizers"]["flow"]["param_groups"][0]
    # the schedule keeps its progress (14 decays), scaled to the new base rate
    assert group["lr"] == pytest.approx(5e-4 * 0.9**14, rel=1e-9)
    assert state["config"]["model"]["lr"] == 5e-4 and state["config"]["train"]["ckpt_every"] == 4
    stored = RunDir(run).load_config()
    assert stored["model"]["lr"] == 5e-4 and stored["train"]["steps"] == 14
    resume = [r for r in RunDir(run).read_metrics() if r["kind"] == "resume"][-1]
    assert set(resume["changed"]) == {"model.lr", "train.steps", "train.ckpt_every"}
    # a changed decay rate is applied too (not silently restored from the checkpoint)
    assert (
        _train(["--out", str(run), "--resume", "--set", "train.steps=15", "--set", "model.lr_decay=0.5"]) == 0
    )
    group = RunDir(run).load_latest()["optimizers"]["flow"]["param_groups"][0]
    assert group["lr"] == pytest.approx(5e-4 * 0.9**14 * 0.5, rel=1e-9)


def test_resume_refuses_keys_fixed_by_the_checkpoint(tmp_path, capsys):
    run = tmp_path / "r"
    assert _train(["--out", str(run), "--set", "train.steps=3"]) == 0
    before = (run / "config.yaml").read_text()
    assert _train(["--out", str(run), "--resume", "--seed", "5"]) == 2
    err = capsys.readouterr().err
    assert "cannot change seed" in err
    assert (
        _train(["--out", str(run), "--resume", "--set", "model.flow=nsf", "--set", "data.batch_size=8"]) == 2
    )
    err = capsys.readouterr().err
    assert "model.flow" in err and "data.batch_size" in err and "state_dict" not in err
    assert (run / "config.yaml").read_text() == before


# ------------------------------------------------------------------ 4. disjoint train/test splits


def _rows(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x.reshape(len(x), -1)}


def _image_sources(tmp_path: Path) -> dict[str, dict]:
    from PIL import Image

    rng = np.random.default_rng(0)
    folder = tmp_path / "folder"
    for c in ("a", "b"):
        (folder / c).mkdir(parents=True)
        for i in range(15):
            Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).save(folder / c / f"{i}.png")
    npz = tmp_path / "x.npz"
    np.savez(npz, x=rng.integers(0, 256, (40, 6, 6), dtype=np.uint8), y=np.arange(40) % 4)
    sys.path.insert(0, str(Path(__file__).parent))
    from test_data import _fake_cifar, _fake_mnist

    _fake_mnist(tmp_path / "mnist", rng)
    _fake_cifar(tmp_path / "cifar" / "cifar-10-batches-py", rng)
    return {
        "folder (path)": {"name": str(folder)},
        "npz (path)": {"name": str(npz)},
        "folder (registered)": {"name": "folder", "root": str(folder)},
        "npz (registered)": {"name": "npz", "root": str(npz)},
        "digits": {"name": "digits"},
        "mnist": {"name": "mnist", "root": str(tmp_path / "mnist")},
        "cifar10": {"name": "cifar10", "root": str(tmp_path / "cifar")},
    }


def test_every_image_source_has_disjoint_seeded_splits(tmp_path):
    for kind, data in _image_sources(tmp_path).items():
        cfg = resolve_config("flow", overrides=[f"data.{k}={json.dumps(v)}" for k, v in data.items()])
        splits = load_data(cfg)
        train_rows, test_rows = _rows(splits.train.x), _rows(splits.test.x)
        assert len(splits.test.x) > 0, kind
        assert not train_rows & test_rows, f"{kind}: train and test share images"
        again = load_data(cfg)
        assert torch.equal(again.test.x, splits.test.x), f"{kind}: split not deterministic"


def test_toy_test_points_are_not_training_points():
    cfg = resolve_config("flow", overrides=["data.name=spiral", "data.batch_size=256"])
    splits = load_data(cfg)
    from symgen.batches import make_stream

    stream = make_stream(splits.train, 256, 0)
    seen = torch.cat([next(stream) for _ in range(20)])
    assert not _rows(seen) & _rows(splits.test)


# ------------------------------------------------------------------ 5. data-parallel resume

DDP_SCRIPT = """
import os, sys, torch
from symgen.config import resolve_config
from symgen.runs import train
rank, base, steps, resume = int(os.environ["RANK"]), sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
name = sys.argv[4]
cfg = resolve_config("flow", overrides=["data.name=spiral", f"train.steps={steps}", "train.log_every=1",
                                        "train.ckpt_every=3", "data.batch_size=16"])
trainer = train(cfg, os.path.join(base, name), resume=resume, progress=False)
torch.save({"params": trainer.model.state_dict(), "stream": trainer.stream.state_dict(),
            "rng": torch.get_rng_state()}, os.path.join(base, f"{name}-rank{rank}.pt"))
"""


def test_data_parallel_resume_restores_each_ranks_state(tmp_path, subprocess_env, torchrun_cmd):
    script = tmp_path / "job.py"
    script.write_text(DDP_SCRIPT)

    def launch(steps: int, resume: bool, name: str) -> None:
        cmd = [
            *torchrun_cmd,
            str(script),
            str(tmp_path),
            str(steps),
            "1" if resume else "0",
            name,
        ]
        proc = subprocess.run(cmd, env=subprocess_env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    launch(6, False, "straight")
    launch(3, False, "resumed")
    launch(6, True, "resumed")
    load = lambda f: torch.load(tmp_path / f, weights_only=True)  # noqa: E731
    for rank in (0, 1):
        a, b = load(f"straight-rank{rank}.pt"), load(f"resumed-rank{rank}.pt")
        for k in a["params"]:
            torch.testing.assert_close(a["params"][k], b["params"][k], rtol=0, atol=0)
        assert torch.equal(a["stream"]["generator"], b["stream"]["generator"])
        assert torch.equal(a["rng"], b["rng"])
    r0, r1 = load("resumed-rank0.pt"), load("resumed-rank1.pt")
    assert not torch.equal(r0["stream"]["generator"], r1["stream"]["generator"])


# ------------------------------------------------------------------ 6. divergence in flows


def test_diverging_flow_stops_cleanly_with_last_good_checkpoint(tmp_path, capsys):
    run = tmp_path / "r"
    code = _train(
        [
            "--out",
            str(run),
            "--set",
            "train.steps=200",
            "--set",
            "train.ckpt_every=1",
            "--set",
            "model.lr=1",
            "--set",
            "train.keep_checkpoints=3",
        ]
    )
    assert code == 3, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "diverged" in err and "Traceback" not in err
    state = RunDir(run).load_latest()
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    # the kept parameters give a finite loss
    from symgen.runs import load_run

    loaded = load_run(run, use_ema=False)
    x = loaded.data.test[:256] if isinstance(loaded.data.test, torch.Tensor) else loaded.data.test
    with torch.no_grad():
        nll = -loaded.model.flow().log_prob(torch.as_tensor(x)[:256]).mean()
    assert torch.isfinite(nll)


def test_flow_nonfinite_error_becomes_divergence(tmp_path, monkeypatch):
    from symgen.flows.base import NonFiniteError
    from symgen.models.flow import FlowModel

    calls = {"n": 0}
    original = FlowModel.training_step

    def step(self, batch, ctx):
        calls["n"] += 1
        if calls["n"] == 4:
            raise NonFiniteError("layer 3 produced NaN")
        return original(self, batch, ctx)

    monkeypatch.setattr(FlowModel, "training_step", step)
    with pytest.raises(DivergenceError, match="layer 3"):
        train(_tiny_cfg("train.steps=10", "train.ckpt_every=1"), tmp_path / "r", progress=False)
    assert RunDir(tmp_path / "r").load_latest()["step"] == 2


# ------------------------------------------------------------------ 7. metrics.jsonl


def test_torn_metrics_line_is_tolerated_and_cut_on_resume(tmp_path):
    run = tmp_path / "r"
    assert _train(["--out", str(run), "--set", "train.steps=6", "--set", "train.ckpt_every=3"]) == 0
    with (run / "metrics.jsonl").open("a") as fh:
        fh.write('{"kind": "train", "step": 7, "lo')
    with pytest.warns(UserWarning, match="torn last line"):
        assert len(read_jsonl(run / "metrics.jsonl")) > 0
    assert main(["eval", str(run), "--metrics", "test_nll"]) == 0
    # simulate a kill after the checkpoint of step 6: steps 7-8 logged, no checkpoint for them
    with (run / "metrics.jsonl").open("a") as fh:
        fh.write('\n{"kind": "train", "step": 7}\n{"kind": "train", "step": 8}\n{"kind": "train", "st')
    assert _train(["--out", str(run), "--resume", "--set", "train.steps=9"]) == 0
    steps = [r["step"] for r in RunDir(run).read_metrics() if r["kind"] == "train"]
    assert steps == list(range(1, 10))


def test_malformed_metrics_line_in_the_middle_names_the_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl: line 2"):
        read_jsonl(path)


# ------------------------------------------------------------------ fault injection: kill -9


def test_kill_9_at_random_moments_then_resume_equals_uninterrupted(tmp_path, symgen_cmd, subprocess_env):
    rng = np.random.default_rng(1)
    sets = [
        "--set",
        "train.steps=400",
        "--set",
        "train.ckpt_every=7",
        "--set",
        "train.keep_checkpoints=2",
        "--set",
        "train.log_every=1",
        "--set",
        "data.batch_size=32",
    ]
    base = symgen_cmd + ["train", "flow", "--data", "spiral", "--quiet", *sets]
    a, b = tmp_path / "killed", tmp_path / "straight"
    kills = 0
    for _ in range(6):
        cmd = base + ["--out", str(a)] + (["--resume"] if (a / "checkpoints" / "latest.txt").exists() else [])
        proc = subprocess.Popen(cmd, env=subprocess_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        target = int(rng.integers(10, 60))  # kill after this many more logged steps
        start = len(read_jsonl(a / "metrics.jsonl")) if (a / "metrics.jsonl").exists() else 0
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline:
            n = len((a / "metrics.jsonl").read_text().splitlines()) if (a / "metrics.jsonl").exists() else 0
            if n >= start + target and kills < 3:
                time.sleep(float(rng.uniform(0, 0.05)))
                proc.kill()
                kills += 1
                break
            time.sleep(0.005)
        code = proc.wait(timeout=120)
        if code == 0:
            break
        assert code == -9, proc.stderr.read().decode()[-2000:]
    assert kills == 3
    subprocess.run(base + ["--out", str(b)], env=subprocess_env, check=True, stderr=subprocess.DEVNULL)
    ra, rb = RunDir(a), RunDir(b)
    sa, sb = ra.load_latest(), rb.load_latest()
    assert sa["step"] == sb["step"] == 400
    for k in sb["model"]:
        torch.testing.assert_close(sa["model"][k], sb["model"][k], rtol=0, atol=0)
    steps = [r["step"] for r in ra.read_metrics() if r["kind"] == "train"]
    assert steps == list(range(1, 401))
    assert not list((a / "checkpoints").glob(".*.tmp"))
    assert len(ra.checkpoints()) <= 2
    assert not (a / ".lock").exists()


# ------------------------------------------------------------------ bad input: one line, no traceback


def _fails(argv: list[str], capsys, *words: str, code: int = 2) -> str:
    assert main(argv) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") <= 2, err
    for w in words:
        assert w in err, (w, err)
    return err


def test_yaml_syntax_errors_name_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  steps: 10\n  log_every: [1\n")
    _fails(["train", "flow", "--config", str(bad), "--dry-run"], capsys, str(bad), "line")
    _fails(["train", "flow", "--set", "train.steps=[1", "--dry-run"], capsys, "--set", "train.steps")


@pytest.mark.parametrize(
    "setting, words",
    [
        ("train.log_every=0", ["train.log_every", "positive"]),
        ("train.steps=-5", ["train.steps", ">= 0"]),
        ("train.eval_metrics=[test_nll, fid_typo]", ["fid_typo", "train.eval_metrics"]),
    ],
)
def test_bad_train_settings_fail_before_training(tmp_path, capsys, setting, words):
    run = tmp_path / "r"
    _fails(["train", "flow", "--data", "spiral", "--out", str(run), "--set", setting], capsys, *words)
    assert not run.exists()


def test_bad_data_files_are_named(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(folder / "ok.png")
    (folder / "broken.png").write_bytes(b"not an image at all")
    _fails(["train", "flow", "--data", str(folder), "--out", str(tmp_path / "a")], capsys, "broken.png")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(os.urandom(2000))
    _fails(["train", "flow", "--data", str(junk), "--out", str(tmp_path / "b")], capsys, "junk.npz")
    strings = tmp_path / "strings.npz"
    np.savez(strings, x=np.array([["a", "b"], ["c", "d"]]))
    _fails(
        ["train", "flow", "--data", str(strings), "--out", str(tmp_path / "c")],
        capsys,
        "strings.npz",
        "dtype",
    )


def test_devices_are_checked(tmp_path, capsys):
    _fails(
        ["train", "flow", "--data", "spiral", "--device", "tpu", "--out", str(tmp_path / "a")],
        capsys,
        "--device",
        "tpu",
    )
    run = tmp_path / "r"
    assert _train(["--out", str(run), "--set", "train.steps=2"]) == 0
    if not torch.cuda.is_available():
        err = _fails(["sample", str(run), "--device", "cuda"], capsys, "CUDA")
        assert "corrupt" not in err
        _fails(
            ["train", "flow", "--data", "spiral", "--device", "cuda", "--out", str(tmp_path / "c")],
            capsys,
            "CUDA",
        )


def test_sample_and_eval_paths(tmp_path, capsys):
    run = tmp_path / "r"
    assert _train(["--out", str(run), "--set", "train.steps=2"]) == 0
    _fails(["sample", str(run), "--out", str(tmp_path / "missing_dir" / "x.pt")], capsys, "missing_dir")
    typo = tmp_path / "rnu"
    _fails(["sample", str(typo)], capsys, "rnu", "does not exist")
    _fails(["eval", str(typo), "--metrics", "test_nll"], capsys, "rnu")
    assert not typo.exists()
    _fails(["eval", str(run), "--metrics", "nope"], capsys, "nope")


def test_reproduce_names_stay_inside_the_experiments_folder(tmp_path, capsys):
    outside = tmp_path / "evil.yaml"
    outside.write_text("runs: []\nevals: []\n")
    rel = os.path.relpath(outside.with_suffix(""), Path("configs/experiments"))
    _fails(["reproduce", rel, "--results", str(tmp_path)], capsys, "unknown experiment")


def test_unsafe_checkpoint_refusal_gives_no_unsafe_advice(tmp_path, capsys):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    run = tmp_path / "r"
    assert _train(["--out", str(run), "--set", "train.steps=2"]) == 0
    ckpt = RunDir(run).latest_checkpoint()
    torch.save({"format": "symgen-checkpoint-v1", "x": Evil()}, ckpt)
    err = _fails(["sample", str(run)], capsys, str(ckpt.name))
    assert "weights_only" not in err and "pwned" not in err


def test_run_keeps_absolute_data_path_and_samples_from_anywhere(tmp_path, capsys, monkeypatch):
    data = tmp_path / "d"
    data.mkdir()
    np.savez(data / "x.npz", x=np.random.default_rng(0).integers(0, 256, (30, 4, 4), dtype=np.uint8))
    monkeypatch.chdir(data)
    run = tmp_path / "r"
    assert (
        main(
            [
                "train",
                "flow",
                "--data",
                "x.npz",
                "--quiet",
                "--out",
                str(run),
                "--set",
                "train.steps=2",
                "--set",
                "data.batch_size=8",
                "--set",
                "model.flow=glow",
                "--set",
                "model.flow_args={levels: 1, depth: 1, width: 8}",
            ]
        )
        == 0
    )
    assert RunDir(run).load_config()["data"]["name"] == str(data / "x.npz")
    monkeypatch.chdir(tmp_path)
    assert main(["sample", str(run), "-n", "4", "--out", str(tmp_path / "s.pt")]) == 0


def test_python_api_validates_too(tmp_path):
    with pytest.raises(ConfigError, match="train.log_every"):
        train(
            _tiny_cfg("train.steps=2") | {"train": {**_tiny_cfg()["train"], "log_every": 0}}, tmp_path / "r"
        )
    assert load_checkpoint is not None


def test_run_directories_written_before_new_config_keys_still_load(tmp_path):
    """A config.yaml without a key added later (here flow standardisation) gets the value that reproduces
    the old run (``legacy_defaults``), not today's default that would change the architecture."""
    import yaml

    from symgen.runs import load_run

    run = tmp_path / "old"
    assert _train(["--out", str(run), "--set", "train.steps=2", "--set", "model.standardize=false"]) == 0
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    del cfg["model"]["standardize"]
    (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    loaded = load_run(run)
    assert loaded.cfg["model"]["standardize"] is False
    assert _train(["--out", str(run), "--resume", "--set", "train.steps=3"]) == 0


def test_reproduce_refuses_a_run_trained_with_another_config(tmp_path):
    """`symgen reproduce` reuses a finished run only if the experiment still resolves to its config: an edited
    YAML (or a changed default) must not have the old run's numbers reported as the new config's."""
    from symgen.reproduce import _check_same_config

    run = tmp_path / "r"
    assert _train(["--out", str(run), "--set", "train.steps=2"]) == 0
    from symgen.runs import stored_config

    same = stored_config(RunDir(run, enabled=False))
    _check_same_config(run, same)  # unchanged: reused
    _check_same_config(run, {**same, "device": "cuda"})  # the device may differ
    edited = {**same, "model": {**same["model"], "lr": 0.5}}
    with pytest.raises(ValueError, match=r"model\.lr differ"):
        _check_same_config(run, edited)
