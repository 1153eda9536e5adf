"""The run directory: everything a run leaves behind so it can be resumed, sampled and evaluated later.

Layout::

    RUN/
      config.yaml            resolved config
      metrics.jsonl          one JSON object per logged step / evaluation
      checkpoints/           step-000200.pt ... and latest.txt naming the newest
      images/                sample grids and task pictures
      plots/                 curves and diagnostics
      report.md              a short report linking the above

Only the main process of a data-parallel job writes (``enabled=False`` elsewhere). Opening a
``RunDir`` creates nothing: a writer calls :meth:`RunDir.create` (a fresh run; the directory must be new
or empty) or :meth:`RunDir.open_existing` (resume / evaluation), each taking the directory's exclusive
lock (:mod:`symgen.runlock`) for the writer's life.

``metrics.jsonl`` is append-only; a torn last line (a crash in mid-write) is skipped with a warning, and a
resumed run first cuts the log back to its checkpoint's step so that every step appears once.
Checkpoints are written atomically; a checkpoint written at step N is *pending* until the next step's loss
is known to be finite (:meth:`RunDir.promote`), so a diverging run never keeps parameters whose loss was
non-finite as its latest checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

from symgen.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from symgen.config import dump_yaml, load_yaml
from symgen.runlock import LOCK_NAME, RunLock

__all__ = ["RunDir", "RunDirError", "read_jsonl"]

SUBDIRS = ("checkpoints", "images", "plots")


class RunDirError(ValueError):
    """A run directory that cannot be used as asked (not a run, not empty, no checkpoint)."""


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The JSON records of ``path``, one per line; a torn (partial) last line is skipped with a warning.

    A malformed line anywhere else raises :class:`RunDirError` naming the file and the line.
    """
    path = Path(path)
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        if not isinstance(rec, dict):
            if i == len(lines) - 1:
                warnings.warn(
                    f"{path}: skipped a torn last line {i + 1} (a crash in mid-write)", stacklevel=2
                )
                continue
            raise RunDirError(f"{path}: line {i + 1} is not a JSON record: {line[:80]!r}")
        records.append(rec)
    return records


class RunDir:
    """A run directory at ``path``; writes are no-ops when ``enabled`` is false (non-zero ranks)."""

    def __init__(self, path: str | Path, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self.lock = RunLock(self.path)
        self._pending: Path | None = None
        self.sinks: list[Any] = []  # more loggers with log(record) / log_image(tag, path, step) (TensorBoard)

    # opening for writing ----------------------------------------------------
    def create(self) -> RunDir:
        """Start a fresh run here: the directory must be new or empty; lock it and lay out the skeleton."""
        if not self.enabled:
            return self
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"run directory {self.path} exists and is not a directory")
        self.lock.acquire()
        others = [p.name for p in self.path.iterdir() if p.name != LOCK_NAME]
        if others:
            self.lock.release()
            held = self.latest_checkpoint() is not None
            advice = "pass --resume to continue it" if held else "it is not an empty directory"
            raise RunDirError(
                f"{self.path} already holds {', '.join(sorted(others)[:5])}"
                f"{' ...' if len(others) > 5 else ''}; {advice}, or choose another --out"
            )
        for sub in SUBDIRS:
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        return self

    def open_existing(self, lock: bool = True) -> RunDir:
        """Open a run written earlier (resume, evaluation): it must have a ``config.yaml``; lock it."""
        if not self.config_path.is_file():
            why = "does not exist" if not self.path.exists() else "is not a run directory (no config.yaml)"
            raise RunDirError(f"{self.path} {why}")
        if self.enabled:
            for sub in SUBDIRS:
                (self.path / sub).mkdir(parents=True, exist_ok=True)
            if lock:
                self.lock.acquire()
                self.remove_orphans()
        return self

    def close(self) -> None:
        """Release the directory lock (a pending checkpoint stays unpromoted: it was never confirmed) and
        close the sinks."""
        self.lock.release()
        while self.sinks:
            self.sinks.pop().close()

    def remove_orphans(self) -> list[Path]:
        """Delete what a writer killed in mid-run leaves: temporary checkpoint files, and checkpoints
        newer than the latest confirmed one (written but never promoted, see :meth:`promote`)."""
        folder = self.path / "checkpoints"
        found = list(folder.glob(".step-*.tmp"))
        latest = folder / "latest.txt"
        if latest.is_file():
            name = latest.read_text().strip()
            found += [p for p in self.checkpoints() if p.name > name]
        for f in found:
            f.unlink(missing_ok=True)
        return found

    # config -----------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    def save_config(self, cfg: dict[str, Any]) -> None:
        if self.enabled:
            dump_yaml(cfg, self.config_path)

    def load_config(self) -> dict[str, Any]:
        if not self.config_path.is_file():
            why = "does not exist" if not self.path.exists() else "is not a run directory (no config.yaml)"
            raise RunDirError(f"{self.path} {why}")
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
        with self.metrics_path.open("a+b") as fh:
            if fh.tell() > 0:  # drop a torn last line (a crash in mid-write) before appending
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    fh.seek(0)
                    data = fh.read()
                    fh.truncate(data.rfind(b"\n") + 1)
                    warnings.warn(f"{self.metrics_path}: dropped a torn last line", stacklevel=2)
            fh.write((json.dumps(clean) + "\n").encode())
        for sink in self.sinks:
            sink.log(clean)

    def log_image(self, tag: str, path: str | Path, step: int) -> None:
        """Hand a picture the run wrote (e.g. a sample grid) to the sinks that show images."""
        if self.enabled:
            for sink in self.sinks:
                sink.log_image(tag, path, step)

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every record of ``metrics.jsonl`` (a torn last line is skipped, see :func:`read_jsonl`)."""
        return read_jsonl(self.metrics_path)

    def truncate_metrics(self, step: int) -> int:
        """Cut ``metrics.jsonl`` back to the records of steps ``<= step`` (resume from a checkpoint of
        ``step``: the steps logged after it will be logged again) and drop a torn last line.

        Returns the number of records removed."""
        if not self.enabled or not self.metrics_path.is_file():
            return 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            records = self.read_metrics()
        kept = [r for r in records if not isinstance(r.get("step"), int) or r["step"] <= step]
        text = "".join(json.dumps(r) + "\n" for r in kept)
        if text == self.metrics_path.read_text():
            return 0
        tmp = self.metrics_path.with_suffix(".jsonl.tmp")
        tmp.write_text(text)
        os.replace(tmp, self.metrics_path)
        return len(records) - len(kept)

    # checkpoints ------------------------------------------------------------
    def checkpoint_path(self, step: int) -> Path:
        return self.path / "checkpoints" / f"step-{step:07d}.pt"

    def save_checkpoint(
        self, step: int, state: dict[str, Any], keep: int = 2, pending: bool = False
    ) -> Path | None:
        """Atomically write the checkpoint of ``step``; unless ``pending``, point ``latest.txt`` at it and
        prune all but the newest ``keep`` (``pending``: wait for :meth:`promote` or :meth:`discard`)."""
        if not self.enabled:
            return None
        self.promote(keep)
        path = save_checkpoint(self.checkpoint_path(step), state)
        self._pending = path
        if not pending:
            self.promote(keep)
        return path

    def promote(self, keep: int = 2) -> None:
        """Make the pending checkpoint the latest one and prune old ones."""
        path, self._pending = self._pending, None
        if path is None or not self.enabled:
            return
        latest = self.path / "checkpoints" / "latest.txt"
        tmp = latest.with_suffix(".tmp")
        tmp.write_text(path.name + "\n")
        tmp.replace(latest)
        if keep > 0:
            for old in [p for p in self.checkpoints() if p <= path][:-keep]:
                old.unlink(missing_ok=True)

    def discard(self) -> Path | None:
        """Delete the pending checkpoint (its parameters gave a non-finite loss); returns its path."""
        path, self._pending = self._pending, None
        if path is not None:
            path.unlink(missing_ok=True)
        return path

    def checkpoints(self) -> list[Path]:
        return sorted((self.path / "checkpoints").glob("step-*.pt"))

    def latest_checkpoint(self) -> Path | None:
        """The checkpoint ``latest.txt`` names (the newest confirmed one), else the newest file."""
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
            raise CheckpointError(f"no checkpoint in {self.path / 'checkpoints'} (nothing to resume or load)")
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
        from symgen.curves import CURVE_PREFIX, group_rank  # figures drawn by symgen.report

        n = len(CURVE_PREFIX)
        curves = sorted(
            (self.path / "plots").glob(f"{CURVE_PREFIX}*.png"), key=lambda f: group_rank(f.stem[n:])
        )
        if curves:
            lines += ["", "## Training curves", ""]
            lines += [f"![{f.stem[n:]}](plots/{f.name})\n" for f in curves]
        for folder in ("images", "plots"):
            files = [f for f in sorted((self.path / folder).glob("*.png")) if f not in curves]
            if files:
                lines += ["", f"## {folder.capitalize()}", ""]
                lines += [f"### {f.stem}\n\n![{f.stem}]({folder}/{f.name})\n" for f in files]
        report = self.path / "report.md"
        report.write_text("\n".join(lines) + "\n")
        return report


def _fmt(v: Any) -> str:
    return f"{v:.5g}" if isinstance(v, float) else str(v)
