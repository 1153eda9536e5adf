"""A real 2-process gloo data-parallel job launched with torchrun in a subprocess."""

import subprocess
import textwrap

import torch

SCRIPT = textwrap.dedent(
    """
    import os, sys, torch
    from symgen.config import resolve_config
    from symgen.runs import train

    rank = int(os.environ["RANK"])
    base = sys.argv[1]
    cfg = resolve_config("flow", overrides=["data.name=spiral", "train.steps=6", "train.log_every=2",
                                            "train.ckpt_every=3", "data.batch_size=32"])
    trainer = train(cfg, os.path.join(base, f"run-rank{rank}"), progress=False)
    torch.save({k: v.detach().clone() for k, v in trainer.model.state_dict().items()},
               os.path.join(base, f"params-rank{rank}.pt"))
    torch.save(trainer.stream.state_dict(), os.path.join(base, f"stream-rank{rank}.pt"))
    """
)


def test_two_process_gloo_ddp(tmp_path, subprocess_env, torchrun_cmd):
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    cmd = [*torchrun_cmd, str(script), str(tmp_path)]
    proc = subprocess.run(cmd, env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    p0 = torch.load(tmp_path / "params-rank0.pt", weights_only=True)
    p1 = torch.load(tmp_path / "params-rank1.pt", weights_only=True)
    assert p0.keys() == p1.keys()
    for k in p0:
        torch.testing.assert_close(p0[k], p1[k], rtol=0, atol=0)
    # ranks trained on different data (otherwise the test could pass without any averaging)
    s0 = torch.load(tmp_path / "stream-rank0.pt", weights_only=True)
    s1 = torch.load(tmp_path / "stream-rank1.pt", weights_only=True)
    assert not torch.equal(s0["generator"], s1["generator"])
    # only rank 0 writes a run directory
    assert (tmp_path / "run-rank0" / "checkpoints").is_dir()
    assert (tmp_path / "run-rank0" / "metrics.jsonl").is_file()
    assert not (tmp_path / "run-rank1").exists()


def test_ranks_meet_before_leaving_the_group_only_after_a_finished_run(tmp_path, monkeypatch):
    """``train`` calls the barrier once, after the report is written; a failing run never waits on it
    (a rank that crashed would leave its peers hanging in a barrier)."""
    import pytest

    import symgen.runs as runs
    from symgen.config import resolve_config

    calls: list[bool] = []
    out = tmp_path / "ok"
    monkeypatch.setattr(runs, "barrier", lambda info: calls.append((out / "report.md").is_file()))
    cfg = resolve_config("flow", overrides=["data.name=spiral", "train.steps=2", "data.batch_size=16"])
    runs.train(cfg, out, progress=False)
    assert calls == [True]

    calls.clear()
    out = tmp_path / "bad"
    monkeypatch.setattr(runs, "write_run_report", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("x")))
    with pytest.raises(RuntimeError):
        runs.train(cfg, out, progress=False)
    assert calls == []
