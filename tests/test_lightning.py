"""Issue 18: the Lightning callback, driven by a stand-in trainer (and by Lightning if present)."""

from __future__ import annotations

import sys
import types
from typing import Any

import numpy as np
import pytest

import latentcheck as lc
from latentcheck.lightning import LatentcheckCallback


class _Module:
    def __init__(self) -> None:
        self.logged: list[dict[str, float]] = []

    def log_dict(self, metrics: dict[str, float]) -> None:
        self.logged.append(metrics)


def test_issue_18_lightning_callback_logs_metrics_each_epoch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = types.ModuleType("lightning")
    fake_pl = types.ModuleType("lightning.pytorch")
    fake_pl.Callback = object  # type: ignore[attr-defined]
    fake.pytorch = fake_pl  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "lightning", fake)
    monkeypatch.setitem(sys.modules, "lightning.pytorch", fake_pl)
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((int(rng.integers(1, 90)), 3)) for _ in range(30)]
    cb = LatentcheckCallback(
        lambda module, batch, outputs: outputs["z"],
        seed=0,
        test_samples=100,
        every_n_epochs=2,
        report_options={"energy_resamples": 0},
    )
    module = _Module()
    for epoch in range(3):
        trainer = types.SimpleNamespace(
            current_epoch=epoch, sanity_checking=False, global_rank=0, world_size=1
        )
        cb.on_validation_epoch_start(trainer, module)
        for i, b in enumerate(batches):
            cb.on_validation_batch_end(trainer, module, {"z": b}, None, i)
        cb.on_validation_epoch_end(trainer, module)
    assert len(module.logged) == 2  # epochs 0 and 2
    ref = lc.analyze(np.concatenate(batches), seed=0, test_samples=100, energy_resamples=0)
    got = module.logged[-1]
    assert got["val/latents/n_samples"] == ref.input.n_samples
    assert got["val/latents/kl_gauss_sum"] == pytest.approx(ref.summary.kl_gauss_sum, rel=1e-12)
    assert cb.report.settings.mode == "single-pass"


def test_issue_18_lightning_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "lightning", None)
    monkeypatch.setitem(sys.modules, "lightning.pytorch", None)
    monkeypatch.setitem(sys.modules, "pytorch_lightning", None)
    with pytest.raises(lc.InputError, match="pip install lightning"):
        LatentcheckCallback(lambda m, b, o: None)


def test_issue_18_lightning_callback_with_real_lightning() -> None:
    lightning = pytest.importorskip("lightning")
    cb: Any = LatentcheckCallback(lambda m, b, o: None)
    assert isinstance(cb, lightning.pytorch.Callback)


@pytest.mark.slow
def test_issue_18_lightning_trainer_end_to_end() -> None:
    """A real Trainer: validation latents of two epochs are analysed and logged.

    The logged figure is checked against ``lc.analyze`` of the same latents (Lightning
    stores logged values as float32 tensors, hence rel 1e-6).
    """
    pl = pytest.importorskip("lightning.pytorch")
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    x = torch.randn(300, 5)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=64)

    class Tiny(pl.LightningModule):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.enc = torch.nn.Linear(5, 3)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return self.enc(batch[0]).pow(2).mean()

        def validation_step(self, batch: Any, batch_idx: int) -> Any:
            return {"z": self.enc(batch[0]).detach()}

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    cb: Any = LatentcheckCallback(
        lambda module, batch, outputs: outputs["z"],
        seed=0,
        report_options={"energy_resamples": 0},
    )
    model = Tiny()
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        callbacks=[cb],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's own advice (workers, logging) is not ours
        trainer.fit(model, loader, loader)
    with torch.no_grad():
        z = model.enc(x).numpy().astype(np.float64)
    ref = lc.analyze(z, seed=0, energy_resamples=0)
    logged = trainer.callback_metrics
    assert float(logged["val/latents/n_samples"]) == 300
    assert float(logged["val/latents/kl_gauss_sum"]) == pytest.approx(
        ref.summary.kl_gauss_sum, rel=1e-5
    )
    assert cb.report.input.n_samples == 300
