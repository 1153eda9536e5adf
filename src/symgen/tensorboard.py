"""Opt-in TensorBoard logging (``train.tensorboard: true`` or ``symgen train --tensorboard``).

:class:`TensorBoardWriter` has the ``log(record)`` shape of :meth:`symgen.rundir.RunDir.log`: attached to
a run (:func:`attach_tensorboard`), it receives every record the run appends to ``metrics.jsonl`` and
writes its numbers as scalars ``<kind>/<key>`` (``train/loss``, ``eval/fd_clf``, ...) at the record's
step, and the sample grids the trainer saves as images. Event files go to ``RUN/tensorboard/``; watch
them with ``tensorboard --logdir runs``. Only the main process writes.

``tensorboard`` is an optional dependency (``pip install symgen[tensorboard]``);
:func:`require_tensorboard` fails with that advice before anything trains.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from symgen.curves import scalar_value

__all__ = [
    "TensorBoardWriter",
    "TensorBoardMissing",
    "require_tensorboard",
    "attach_tensorboard",
    "LOG_SUBDIR",
]

LOG_SUBDIR = "tensorboard"
"""Folder of a run's event files."""

_KINDS = ("train", "eval")
_META_KEYS = frozenset({"kind", "step", "time"})


class TensorBoardMissing(ImportError):
    """TensorBoard logging was asked for but the ``tensorboard`` package is not installed."""


def require_tensorboard() -> Any:
    """Return ``torch.utils.tensorboard.SummaryWriter``, or raise :class:`TensorBoardMissing` saying what
    to install."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise TensorBoardMissing(
            "train.tensorboard is true (or --tensorboard was given) but the 'tensorboard' package is not "
            "installed: pip install 'symgen[tensorboard]' (or pip install tensorboard), or set "
            f"train.tensorboard=false ({exc})"
        ) from None
    return SummaryWriter


class TensorBoardWriter:
    """Writes run records and pictures as TensorBoard events in ``log_dir``.

    Arguments:
        log_dir: folder of the event files (created).
        purge_step: on resume, the step after the checkpoint's: events from this step on that the
            interrupted run left are hidden, as the resumed run logs those steps again (the records
            :meth:`~symgen.rundir.RunDir.truncate_metrics` cuts from ``metrics.jsonl``).
        flush_secs: how often pending events reach the disk (they also do on :meth:`close`).
    """

    def __init__(
        self, log_dir: str | os.PathLike[str], purge_step: int | None = None, flush_secs: int = 10
    ) -> None:
        summary_writer = require_tensorboard()
        self.log_dir = Path(log_dir)
        self.writer = summary_writer(log_dir=str(self.log_dir), purge_step=purge_step, flush_secs=flush_secs)

    def log(self, record: dict[str, Any]) -> None:
        """Write the numeric values of a ``train`` or ``eval`` record as scalars ``<kind>/<key>``
        (other kinds, records without a step and non-numeric values are skipped)."""
        kind, step = record.get("kind", "train"), record.get("step")
        if kind not in _KINDS or isinstance(step, bool) or not isinstance(step, int):
            return
        wall = record.get("time")
        for key, raw in record.items():
            value = scalar_value(raw)
            if key not in _META_KEYS and value is not None:
                self.writer.add_scalar(f"{kind}/{key}", value, step, walltime=wall, new_style=False)

    def log_image(self, tag: str, path: str | os.PathLike[str], step: int) -> None:
        """Write a PNG the run saved (a sample grid, a scatter plot) as the image ``tag`` at ``step``."""
        import numpy as np
        from PIL import Image

        with Image.open(path) as img:
            pixels = np.asarray(img.convert("RGB"))
        self.writer.add_image(tag, pixels, step, dataformats="HWC")

    def flush(self) -> None:
        """Write pending events now (they also reach the disk every ``flush_secs``)."""
        self.writer.flush()

    def close(self) -> None:
        """Write pending events and close the event file."""
        self.writer.close()


def attach_tensorboard(
    run: Any, cfg: dict[str, Any], purge_step: int | None = None
) -> TensorBoardWriter | None:
    """If ``cfg['train']['tensorboard']``, add a :class:`TensorBoardWriter` on ``run.path/tensorboard`` to
    the sinks of ``run`` (a :class:`~symgen.rundir.RunDir`) and return it; ``None`` otherwise.

    Every rank checks that TensorBoard is installed (so a job fails the same way everywhere); only the
    main rank (``run.enabled``) writes.
    """
    if not cfg["train"].get("tensorboard"):
        return None
    require_tensorboard()
    if not run.enabled:
        return None
    writer = TensorBoardWriter(run.path / LOG_SUBDIR, purge_step=purge_step)
    run.sinks.append(writer)
    return writer
