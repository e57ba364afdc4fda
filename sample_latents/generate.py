"""Train the small autoencoders behind ``sample_latents/`` and export their latents.

Six models are trained on scikit-learn's ``load_digits`` (1797 grey-scale 8x8 digits, shipped
inside scikit-learn, no download): five MLP autoencoders with a 16-dimensional latent that
differ only in the KL weight beta (1, 1e-2, 1e-4, 1e-6, and a plain autoencoder with
beta = 0 and a deterministic encoder), and one convolutional model whose latents have the
shape ``(N, 4, 4, 4)``. For each model one ``.npz`` holds ``mu``, ``logvar`` (stochastic
models only) and ``z`` for all 1797 digits, in ``load_digits`` order.

torch is needed only here, never by latentcheck itself::

    pip install -e '.[generate]'        # or any venv with torch==2.13.0 numpy scikit-learn
    python sample_latents/generate.py   # writes into sample_latents/, prints the tables

Every source of randomness is seeded and torch runs single-threaded with deterministic
algorithms, so a rerun on the same machine and torch version reproduces the arrays bit for
bit (see README.md for what was checked).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional as F

OUT_DIR = Path(__file__).resolve().parent

DATA_SEED = 0  # train / held-out split
N_HELD_OUT = 360  # 20 % of 1797; used only to report reconstruction error
N_THREADS = 1  # fixed, so results do not depend on the number of cores
LATENT_DIM = 16  # MLP models
CONV_CHANNELS = 4  # conv model: (C, H, W) = (4, 4, 4)
HIDDEN = (256, 128)
# Held-out NLL of the MLPs is lowest at 100-200 epochs and rises after (they overfit the
# 1437 training digits); the conv model does not overfit and still improves at 300.
MLP_EPOCHS = 150
CONV_EPOCHS = 300
BATCH_SIZE = 64
LEARNING_RATE = 1e-3
N_TRIALS = 16  # pixel values are counts 0..16
NPY_MODEL = "kl_beta1e-4"  # its z is also shipped as a plain .npy


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model to train.

    Attributes
    ----------
    name : str
        File stem of the exported latents.
    beta : float
        Weight of the KL term; 0 means a plain autoencoder with a deterministic encoder.
    conv : bool
        Convolutional encoder/decoder with latents of shape (C, H, W) instead of an MLP.
    seed : int
        Seed for weight initialisation, mini-batch order, the reparameterisation noise
        during training and the exported draw of z.
    """

    name: str
    beta: float
    conv: bool
    seed: int

    @property
    def stochastic(self) -> bool:
        return self.beta > 0


SPECS = (
    ModelSpec("vae_beta1", 1.0, conv=False, seed=1),
    ModelSpec("kl_beta1e-2", 1e-2, conv=False, seed=2),
    ModelSpec("kl_beta1e-4", 1e-4, conv=False, seed=3),
    ModelSpec("kl_beta1e-6", 1e-6, conv=False, seed=4),
    ModelSpec("ae_beta0", 0.0, conv=False, seed=5),
    ModelSpec("conv_kl_beta1e-4", 1e-4, conv=True, seed=6),
)


class MLPAutoencoder(nn.Module):
    """64 -> 256 -> 128 -> (mu, logvar) of size 16; mirror-image decoder to 64 logits."""

    def __init__(self, stochastic: bool) -> None:
        super().__init__()
        self.stochastic = stochastic
        h1, h2 = HIDDEN
        n_out = 2 * LATENT_DIM if stochastic else LATENT_DIM
        self.encoder = nn.Sequential(
            nn.Linear(64, h1), nn.SiLU(), nn.Linear(h1, h2), nn.SiLU(), nn.Linear(h2, n_out)
        )
        self.decoder = nn.Sequential(
            nn.Linear(LATENT_DIM, h2), nn.SiLU(), nn.Linear(h2, h1), nn.SiLU(), nn.Linear(h1, 64)
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.encoder(x.reshape(-1, 64))
        if not self.stochastic:
            return out, None
        mu, logvar = out.chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


class ConvAutoencoder(nn.Module):
    """8x8x1 -> 4x4x(2C) with one stride-2 convolution; nearest upsampling back to 8x8."""

    def __init__(self, stochastic: bool) -> None:
        super().__init__()
        self.stochastic = stochastic
        c = CONV_CHANNELS
        n_out = 2 * c if stochastic else c
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(32, n_out, 1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(c, 32, 3, padding=1),
            nn.SiLU(),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(32, 16, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(16, 1, 3, padding=1),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.encoder(x.reshape(-1, 1, 8, 8))
        if not self.stochastic:
            return out, None
        mu, logvar = out.chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).reshape(-1, 64)


Model = MLPAutoencoder | ConvAutoencoder


def kl_per_element(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) for every latent element (Kingma & Welling 2014)."""
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar)


def recon_nats(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Binomial(16, sigmoid(logits)) negative log-likelihood, summed over the 64 pixels.

    Each digits pixel counts the "on" pixels in a 4x4 block of the original 32x32 bitmap, an
    integer k = 16 x in 0..16, so -log P(k) = 16 BCE(x, p) - log C(16, k): a normalised
    likelihood of the data, in nats per image, one value per row.
    """
    k = x * N_TRIALS
    log_binom = math.lgamma(N_TRIALS + 1) - torch.lgamma(k + 1) - torch.lgamma(N_TRIALS + 1 - k)
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    return (N_TRIALS * bce - log_binom).sum(dim=1)


def load_data() -> tuple[torch.Tensor, NDArray[np.int64], NDArray[np.int64]]:
    """All 1797 digits as x = k / 16 in [0, 1], and the seeded train / held-out row indices."""
    x = load_digits().data.astype(np.float32) / N_TRIALS
    perm = np.random.default_rng(DATA_SEED).permutation(len(x))
    held_out = np.sort(perm[:N_HELD_OUT])
    train = np.sort(perm[N_HELD_OUT:])
    return torch.from_numpy(x), train, held_out


def train_model(
    spec: ModelSpec,
    x: torch.Tensor,
    train: NDArray[np.int64],
    held_out: NDArray[np.int64],
    log_every: int,
) -> Model:
    """Adam on recon + beta * KL over the training rows, seeded batch order, fixed epochs."""
    torch.manual_seed(spec.seed)
    model: Model = (ConvAutoencoder if spec.conv else MLPAutoencoder)(spec.stochastic)
    optimiser = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    gen = torch.Generator().manual_seed(spec.seed)
    x_train = x[torch.from_numpy(train)]
    n = len(x_train)
    epochs = CONV_EPOCHS if spec.conv else MLP_EPOCHS
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, BATCH_SIZE):
            xb = x_train[order[start : start + BATCH_SIZE]]
            mu, logvar = model.encode(xb)
            if logvar is None:
                z = mu
                kl = torch.zeros(())
            else:
                eps = torch.randn(mu.shape, generator=gen)
                z = mu + (0.5 * logvar).exp() * eps
                kl = kl_per_element(mu, logvar).flatten(1).sum(dim=1).mean()
            loss = recon_nats(model.decode(z), xb).mean() + spec.beta * kl
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        if log_every and epoch % log_every == 0:
            model.eval()
            with torch.no_grad():
                tr = recon_nats(model.decode(model.encode(x_train)[0]), x_train).mean()
                xh = x[torch.from_numpy(held_out)]
                ho = recon_nats(model.decode(model.encode(xh)[0]), xh).mean()
            print(f"  epoch {epoch:4d}  NLL(mu) train {float(tr):7.2f}  held-out {float(ho):7.2f}")
    model.eval()
    return model


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Latents of all rows and the figures reported in README.md.

    Attributes
    ----------
    arrays : dict of str to ndarray
        ``mu``, ``logvar`` (stochastic models) and ``z``, float32, rows in load_digits order.
    nll_train, nll_held_out : float
        Binomial NLL in nats per image decoding ``mu``, on the training and held-out rows.
    nll_z_held_out : float
        The same on the held-out rows decoding the exported draw ``z``.
    mse_train, mse_held_out : float
        Mean squared error per pixel on the [0, 1] scale decoding ``mu`` (the decoder mean
        16 p against k).
    rate : float
        Mean over all rows of the summed analytic KL, in nats (NaN for beta = 0).
    """

    arrays: dict[str, NDArray[np.float32]]
    nll_train: float
    nll_held_out: float
    nll_z_held_out: float
    mse_train: float
    mse_held_out: float
    rate: float


@torch.no_grad()
def evaluate(
    spec: ModelSpec,
    model: Model,
    x: torch.Tensor,
    train: NDArray[np.int64],
    held_out: NDArray[np.int64],
) -> Evaluation:
    """Encode every row, draw z once with a seeded numpy Generator, score both splits."""
    mu_t, logvar_t = model.encode(x)
    mu = mu_t.numpy().astype(np.float32)
    arrays: dict[str, NDArray[np.float32]] = {"mu": mu}
    if logvar_t is None:
        z = mu.copy()
        rate = float("nan")
    else:
        logvar = logvar_t.numpy().astype(np.float32)
        eps = np.random.default_rng(spec.seed).standard_normal(mu.shape, dtype=np.float32)
        z = (mu + np.exp(0.5 * logvar) * eps).astype(np.float32)
        arrays["logvar"] = logvar
        rate = float(kl_per_element(mu_t, logvar_t).flatten(1).sum(dim=1).mean())
    arrays["z"] = z
    logits_mu = model.decode(mu_t)
    logits_z = model.decode(torch.from_numpy(z))
    nll_mu = recon_nats(logits_mu, x)
    nll_z = recon_nats(logits_z, x)
    se = (torch.sigmoid(logits_mu) - x).square().mean(dim=1)
    tr, ho = torch.from_numpy(train), torch.from_numpy(held_out)
    return Evaluation(
        arrays=arrays,
        nll_train=float(nll_mu[tr].mean()),
        nll_held_out=float(nll_mu[ho].mean()),
        nll_z_held_out=float(nll_z[ho].mean()),
        mse_train=float(se[tr].mean()),
        mse_held_out=float(se[ho].mean()),
        rate=rate,
    )


def pca_baseline(
    x: NDArray[np.float32], train: NDArray[np.int64], held_out: NDArray[np.int64], k: int
) -> float:
    """Held-out MSE per pixel of a k-component PCA fitted on the training rows."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=k).fit(x[train])
    rec = pca.inverse_transform(pca.transform(x[held_out]))
    return float(np.mean((rec - x[held_out]) ** 2))


def array_digest(arrays: dict[str, NDArray[np.float32]]) -> str:
    """SHA-256 of the raw array bytes, to compare reruns independently of zip metadata."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        h.update(key.encode())
        h.update(np.ascontiguousarray(arrays[key]).tobytes())
    return h.hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output folder")
    parser.add_argument("--only", nargs="*", default=None, help="train only these models")
    parser.add_argument("--log-every", type=int, default=0, help="print losses every N epochs")
    args = parser.parse_args()

    torch.set_num_threads(N_THREADS)
    torch.use_deterministic_algorithms(True)
    print(
        f"torch {torch.__version__}, numpy {np.__version__}, python {platform.python_version()}, "
        f"{platform.machine()}, {N_THREADS} thread(s)"
    )

    x, train, held_out = load_data()
    xn = x.numpy()
    print(f"data: load_digits, {len(x)} rows; train {len(train)}, held-out {len(held_out)}")
    mean_mse = float(np.mean((xn[held_out] - xn[train].mean(axis=0)) ** 2))
    pca = {k: pca_baseline(xn, train, held_out, k) for k in (2, 4, 8, 16)}
    print(
        f"baselines, held-out MSE/pixel: mean image {mean_mse:.5f}, "
        + ", ".join(f"PCA-{k} {v:.5f}" for k, v in pca.items())
    )

    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    t_all = time.perf_counter()
    for spec in SPECS:
        if args.only and spec.name not in args.only:
            continue
        t0 = time.perf_counter()
        model = train_model(spec, x, train, held_out, args.log_every)
        ev = evaluate(spec, model, x, train, held_out)
        seconds = time.perf_counter() - t0
        path = args.out / f"{spec.name}.npz"
        np.savez_compressed(path, **ev.arrays)
        files = [path]
        if spec.name == NPY_MODEL:
            npy = args.out / f"{spec.name}_z.npy"
            np.save(npy, ev.arrays["z"])
            files.append(npy)
        print(
            f"{spec.name:17s} beta={spec.beta:<6g} rate {ev.rate:7.2f} nats | NLL(mu) train "
            f"{ev.nll_train:6.2f} held-out {ev.nll_held_out:6.2f} | NLL(z) held-out "
            f"{ev.nll_z_held_out:6.2f} | MSE train {ev.mse_train:.5f} held-out "
            f"{ev.mse_held_out:.5f} | {seconds:5.1f} s | sha256 {array_digest(ev.arrays)}"
        )
        for f in files:
            keys = ", ".join(ev.arrays) if f.suffix == ".npz" else "(array)"
            shape = "(" + ", ".join(str(s) for s in ev.arrays["z"].shape) + ")"
            z_kind = "sampled" if spec.stochastic else "= mu"
            size = f.stat().st_size
            rows.append(f"| `{f.name}` | {keys} | {shape} | float32 | {z_kind} | {size:,} |")
    print(f"total {time.perf_counter() - t_all:.1f} s")
    print("\n| file | keys | shape | dtype | z | bytes |\n| --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
