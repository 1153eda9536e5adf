"""The README's Python tour runs as written (with fewer training steps)."""

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_tour_runs(tmp_path, capsys):
    text = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    assert "train.steps=500" in code
    code = code.replace("train.steps=500", "train.steps=20")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        scope: dict = {}
        exec(compile(code, "README.md", "exec"), scope)
    finally:
        os.chdir(cwd)
    assert scope["x"].shape == (1000, 2)
    assert scope["z"].shape == (64, 2)
    assert "test_nll" in capsys.readouterr().out
    assert (tmp_path / "runs" / "flow-8g" / "report.md").is_file()
