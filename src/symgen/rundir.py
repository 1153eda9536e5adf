"""The run directory: everything a run leaves behind so it can be resumed, sampled and evaluated later.

Layout::

    RUN/
      config.yaml            resolved config
      metrics.jsonl          one JSON object per logged step / evaluation
      checkpoints/           step-000200.pt ... and latest.txt naming the newest
      images/                sample grids and task pictures
      plots/                 curves and diagnostics
      report.md              a short report linking the above

Only the main process of a data-parallel job writes (``enabled=False`` elsewhere).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from symgen.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from symgen.config import dump_yaml, load_yaml

__all__ = ["RunDir"]


class RunDir:
    """A run directory at ``path``; writes are no-ops when ``enabled`` is false (non-zero ranks)."""

    def __init__(self, path: str | Path, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled
        if enabled:
            for sub in ("checkpoints", "images", "plots"):
                (self.path / sub).mkdir(parents=True, exist_ok=True)

    # config -----------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    def save_config(self, cfg: dict[str, Any]) -> None:
        if self.enabled:
            dump_yaml(cfg, self.config_path)

    def load_config(self) -> dict[str, Any]:
        if not self.config_path.is_file():
            raise FileNotFoundError(f"{self.path} is not a run directory (no config.yaml)")
        return load_yaml(self.config_path)

    # metrics ----------------------------------------------------------------
    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def log(self, record: dict[str, Any]) -> None:
        """Append one JSON line (non-finite floats are written as strings so the file stays JSON)."""
        if not self.enabled:
            return
        clean = {
            k: (v if not isinstance(v, float) or math.isfinite(v) else str(v)) for k, v in record.items()
        }
        clean.setdefault("time", round(time.time(), 3))
        with self.metrics_path.open("a") as fh:
            fh.write(json.dumps(clean) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.is_file():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]

    # checkpoints ------------------------------------------------------------
    def checkpoint_path(self, step: int) -> Path:
        return self.path / "checkpoints" / f"step-{step:07d}.pt"

    def save_checkpoint(self, step: int, state: dict[str, Any], keep: int = 2) -> Path | None:
        """Atomically write the checkpoint of ``step``, point ``latest.txt`` at it, prune old ones."""
        if not self.enabled:
            return None
        path = save_checkpoint(self.checkpoint_path(step), state)
        latest = self.path / "checkpoints" / "latest.txt"
        tmp = latest.with_suffix(".tmp")
        tmp.write_text(path.name + "\n")
        tmp.replace(latest)
        if keep > 0:
            for old in self.checkpoints()[:-keep]:
                old.unlink(missing_ok=True)
        return path

    def checkpoints(self) -> list[Path]:
        return sorted((self.path / "checkpoints").glob("step-*.pt"))

    def latest_checkpoint(self) -> Path | None:
        latest = self.path / "checkpoints" / "latest.txt"
        if latest.is_file():
            candidate = latest.parent / latest.read_text().strip()
            if candidate.is_file():
                return candidate
        found = self.checkpoints()
        return found[-1] if found else None

    def load_latest(self, map_location: Any = "cpu") -> dict[str, Any]:
        path = self.latest_checkpoint()
        if path is None:
            raise CheckpointError(f"no checkpoint in {self.path / 'checkpoints'}")
        return load_checkpoint(path, map_location=map_location)

    # artefacts --------------------------------------------------------------
    def image_path(self, name: str) -> Path:
        return self.path / "images" / (name if name.endswith(".png") else f"{name}.png")

    def plot_path(self, name: str) -> Path:
        return self.path / "plots" / (name if name.endswith(".png") else f"{name}.png")

    def write_report(self, title: str, summary: dict[str, Any] | None = None) -> Path | None:
        """Write ``report.md``: config summary, last metrics, links to checkpoints, images and plots."""
        if not self.enabled:
            return None
        lines = [
            f"# {title}",
            "",
            "- config: [config.yaml](config.yaml)",
            "- metrics: [metrics.jsonl](metrics.jsonl)",
        ]
        ckpt = self.latest_checkpoint()
        if ckpt is not None:
            lines.append(f"- latest checkpoint: [{ckpt.name}](checkpoints/{ckpt.name})")
        if summary:
            lines += ["", "## Summary", "", "| key | value |", "|---|---|"]
            lines += [f"| {k} | {_fmt(v)} |" for k, v in summary.items()]
        last_eval = [r for r in self.read_metrics() if r.get("kind") == "eval"]
        if last_eval:
            lines += ["", "## Evaluations", "", "| step | metric | value |", "|---|---|---|"]
            for rec in last_eval[-20:]:
                for k, v in rec.items():
                    if k not in ("kind", "step", "time"):
                        lines.append(f"| {rec.get('step', '')} | {k} | {_fmt(v)} |")
        for folder in ("images", "plots"):
            files = sorted((self.path / folder).glob("*.png"))
            if files:
                lines += ["", f"## {folder.capitalize()}", ""]
                lines += [f"### {f.stem}\n\n![{f.stem}]({folder}/{f.name})\n" for f in files]
        report = self.path / "report.md"
        report.write_text("\n".join(lines) + "\n")
        return report


def _fmt(v: Any) -> str:
    return f"{v:.5g}" if isinstance(v, float) else str(v)
