"""A PyTorch Lightning callback that logs latentcheck metrics every validation epoch (#18).

Lightning is optional: it is imported when :func:`LatentcheckCallback` is called (the
``lightning`` package, else the older ``pytorch_lightning``). Usage::

    cb = LatentcheckCallback(lambda module, batch, outputs: outputs["latents"])
    trainer = lightning.Trainer(callbacks=[cb])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import InputError

__all__ = ["LatentcheckCallback"]

Hook = Callable[[Any, Any, Any], Any]


def _callback_base() -> type:
    try:
        from lightning.pytorch import Callback  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        try:
            from pytorch_lightning import (  # type: ignore[import-not-found, assignment, unused-ignore]
                Callback,
            )
        except ImportError:
            raise InputError(
                "LatentcheckCallback needs PyTorch Lightning (pip install lightning)"
            ) from None
    base: type = Callback
    return base


def LatentcheckCallback(  # a class factory, used like a class
    hook: Hook,
    *,
    prefix: str = "val/latents/",
    every_n_epochs: int = 1,
    report_options: dict[str, Any] | None = None,
    **stream_options: Any,
) -> Any:
    """Return a Lightning callback that analyses the latents of each validation epoch.

    Parameters
    ----------
    hook : callable (pl_module, batch, outputs) -> latents or None
        Returns the latents of one validation batch (a tensor or array; None skips it),
        e.g. ``lambda m, batch, out: m.vae.encode(batch[0]).latent_dist.mean``.
    prefix : str
        Prefix of the logged metric names (see ``Report.to_metrics``).
    every_n_epochs : int
        Analyse every n-th validation epoch.
    report_options : dict, optional
        Options of :meth:`Stream.report` (``alpha``, ``joint_samples`` ...).
    **stream_options
        Options of :class:`~latentcheck.stream.Stream` (``channel_axis``, ``seed`` ...).

    On several ranks each rank streams its own batches (``rank`` = ``trainer.global_rank``)
    and :func:`latentcheck.stream.gather` merges them before the report; every rank then
    logs the same metrics with ``pl_module.log_dict``. The last report is kept as
    ``callback.report``.
    """
    from .stream import Stream, gather

    base = _callback_base()

    class _Callback(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.stream: Stream | None = None
            self.report: Any = None

        def _active(self, trainer: Any) -> bool:
            return int(getattr(trainer, "current_epoch", 0)) % every_n_epochs == 0 and not bool(
                getattr(trainer, "sanity_checking", False)
            )

        def on_validation_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            self.stream = None
            if self._active(trainer):
                self.stream = Stream(
                    rank=int(getattr(trainer, "global_rank", 0)),
                    world_size=int(getattr(trainer, "world_size", 1)),
                    **stream_options,
                )

        def on_validation_batch_end(
            self,
            trainer: Any,
            pl_module: Any,
            outputs: Any,
            batch: Any,
            batch_idx: int,
            dataloader_idx: int = 0,
        ) -> None:
            if self.stream is None:
                return
            latents = hook(pl_module, batch, outputs)
            if latents is not None:
                self.stream.update(latents)

        def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            stream, self.stream = self.stream, None
            if stream is None:
                return
            if int(getattr(trainer, "world_size", 1)) > 1:
                stream = gather(stream)
            if stream.n_rows < 2:
                return
            self.report = stream.report(**(report_options or {}))
            pl_module.log_dict(self.report.to_metrics(prefix=prefix))

    _Callback.__name__ = _Callback.__qualname__ = "LatentcheckCallback"
    return _Callback()
