import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("SYMGEN_CACHE", str(ROOT / ".pytest_cache" / "symgen-cache"))
# one thread: the models under test are tiny, and several tests start subprocesses of their own
torch.set_num_threads(1)


@pytest.fixture
def symgen_cmd():
    """Command prefix that runs the symgen CLI with this interpreter."""
    return [sys.executable, "-m", "symgen"]


@pytest.fixture
def subprocess_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.fixture
def torchrun_cmd():
    """Command prefix of a 2-process torchrun job on this machine (gloo, free rendezvous port)."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port=0",
        "--rdzv_backend=c10d",
        "--rdzv_endpoint=127.0.0.1:0",
    ]
