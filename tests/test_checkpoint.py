import pickle

import pytest
import torch

from symgen.checkpoint import CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from symgen.rundir import RunDir


def test_roundtrip_and_atomic(tmp_path):
    state = {"w": torch.randn(3), "step": 5, "nested": {"a": [1, 2]}}
    path = save_checkpoint(tmp_path / "c.pt", state)
    back = load_checkpoint(path)
    assert torch.equal(back["w"], state["w"]) and back["step"] == 5 and back["nested"] == {"a": [1, 2]}
    assert not list(tmp_path.glob("*.tmp"))


def test_corrupted_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"w": torch.randn(100)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable symgen checkpoint"):
        load_checkpoint(path)


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_foreign_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with path.open("wb") as fh:
        pickle.dump({"x": Evil()}, fh)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_foreign_torch_file_without_tag(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"model": {}}, path)
    with pytest.raises(CheckpointError, match="format tag"):
        load_checkpoint(path)


def test_rng_state_restores_all_generators():
    import random

    import numpy as np

    state = rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(state)
    b = (random.random(), np.random.rand(), torch.rand(1).item())
    assert a == b


def test_rundir_keeps_latest_and_prunes(tmp_path):
    run = RunDir(tmp_path)
    for step in (1, 2, 3):
        run.save_checkpoint(step, {"step": step}, keep=2)
    assert [p.name for p in run.checkpoints()] == ["step-0000002.pt", "step-0000003.pt"]
    assert run.load_latest()["step"] == 3


def test_disabled_rundir_writes_nothing(tmp_path):
    run = RunDir(tmp_path / "r", enabled=False)
    run.log({"a": 1.0})
    run.save_checkpoint(1, {"step": 1})
    assert not (tmp_path / "r").exists()
