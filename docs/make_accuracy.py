"""Regenerate ``docs/accuracy.md``: bias and sd of negentropy and kl_marginal by sample size.

For each shape (standardised to mean 0 and variance 1, so that KL(q ‖ N(0, 1)) equals the
negentropy) and each n in 10³, 10⁴, 10⁵, the script draws seeded replicate samples, runs
``latentcheck.stats.divergence.negentropy`` and ``kl_marginal`` on them (the functions
``analyze`` calls for ``dims[i].negentropy`` and ``dims[i].kl_marginal``), and compares
them with the true value: J = ½ ln(2πe) − H(q), with the differential entropy H(q)
integrated numerically (``scipy.integrate.quad``; ``tests/test_accuracy_doc.py`` checks the
integrals against scipy's closed forms where they exist). Every cell has its own seed, so a
test can recompute any cell alone.

Usage, from anywhere::

    python docs/make_accuracy.py            # rewrite docs/accuracy.md (about 1-2 minutes)
    python docs/make_accuracy.py --check    # exit 1 if the file differs from a fresh run
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import integrate, stats

from latentcheck.stats import divergence

REPO = Path(__file__).resolve().parent.parent
OUTPUT = REPO / "docs" / "accuracy.md"
SIZES = (1000, 10_000, 100_000)
#: replicates per size: enough for a standard error of the bias well below the bias itself
REPLICATES = {1000: 1600, 10_000: 400, 100_000: 40}
BLOCK = 2_000_000  # values per negentropy call (memory)


@dataclass(frozen=True)
class Shape:
    """A distribution standardised to mean 0 and variance 1."""

    name: str
    pdf: Callable[[np.ndarray], np.ndarray]
    draw: Callable[[np.random.Generator, tuple[int, int]], np.ndarray]
    support: tuple[float, float]
    breaks: tuple[float, ...] = ()


def _scipy_shape(name: str, dist: stats.rv_continuous) -> Shape:
    m, v = float(dist.mean()), float(dist.var())
    s = math.sqrt(v)

    def pdf(x: np.ndarray) -> np.ndarray:
        return np.asarray(dist.pdf(np.asarray(x) * s + m) * s, dtype=np.float64)

    def draw(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
        return (np.asarray(dist.rvs(size=size, random_state=rng)) - m) / s

    lo, hi = dist.support()
    return Shape(name, pdf, draw, ((lo - m) / s, (hi - m) / s))


def _bimodal(name: str, centre: float, sd: float) -> Shape:
    """½ N(−c, σ²) + ½ N(c, σ²), scaled to unit variance."""
    total = math.sqrt(centre**2 + sd**2)
    c, s = centre / total, sd / total

    def pdf(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return 0.5 * (stats.norm.pdf(x, -c, s) + stats.norm.pdf(x, c, s))

    def draw(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
        sign = np.where(rng.random(size) < 0.5, -1.0, 1.0)
        return sign * c + s * rng.standard_normal(size)

    return Shape(name, pdf, draw, (-math.inf, math.inf), (-c, 0.0, c))


SHAPES: tuple[Shape, ...] = (
    _scipy_shape("Gaussian", stats.norm()),
    _scipy_shape("t(10)", stats.t(10)),
    _scipy_shape("t(5)", stats.t(5)),
    _scipy_shape("Laplace", stats.laplace()),
    _scipy_shape("uniform", stats.uniform()),
    _scipy_shape("lognormal(0.5)", stats.lognorm(0.5)),
    _scipy_shape("gamma(2)", stats.gamma(2.0)),
    _bimodal("bimodal wide (±1, sd 0.5)", 1.0, 0.5),
    _bimodal("bimodal narrow (±1, sd 0.25)", 1.0, 0.25),
    _bimodal("bimodal very narrow (±1, sd 0.15)", 1.0, 0.15),
)


def true_negentropy(shape: Shape) -> float:
    """J = ½ ln(2πe) − H(q), H by adaptive quadrature of −q ln q."""

    def integrand(x: float) -> float:
        p = float(shape.pdf(np.array([x]))[0])
        return -p * math.log(p) if p > 0 else 0.0

    lo, hi = shape.support
    pts = [lo, *shape.breaks, hi]
    h = 0.0
    for a, b in itertools.pairwise(pts):
        h += integrate.quad(integrand, a, b, limit=400, epsabs=1e-12, epsrel=1e-12)[0]
    return 0.5 * math.log(2 * math.pi * math.e) - h


@dataclass(frozen=True)
class Cell:
    """Bias and sd of the two estimates over replicates, in nats."""

    neg_bias: float
    neg_sd: float
    kl_bias: float
    kl_sd: float
    reps: int


def cell(index: int, n: int, truth: float) -> Cell:
    """Estimate one (shape, n) cell from its own seed."""
    shape = SHAPES[index]
    reps = REPLICATES[n]
    rng = np.random.default_rng([15, index, n])
    neg: list[np.ndarray] = []
    klm: list[np.ndarray] = []
    per_call = max(1, BLOCK // n)
    for start in range(0, reps, per_call):
        k = min(per_call, reps - start)
        x = shape.draw(rng, (n, k))
        neg.append(divergence.negentropy(x, seed=0))
        klm.append(divergence.kl_marginal(x.mean(axis=0), x.std(axis=0), x, seed=0))
    j = np.concatenate(neg)
    kl = np.concatenate(klm)
    # the truth of kl_marginal is J too: the shapes have mean 0 and variance 1
    return Cell(
        float(j.mean() - truth),
        float(j.std(ddof=1)),
        float(kl.mean() - truth),
        float(kl.std(ddof=1)),
        reps,
    )


def _f(x: float) -> str:
    return f"{x:+.4f}"


def build_accuracy() -> str:
    """Return the text of docs/accuracy.md."""
    truths = [true_negentropy(s) for s in SHAPES]
    cells = {(i, n): cell(i, n, truths[i]) for i in range(len(SHAPES)) for n in SIZES}
    lines = [
        "# Accuracy of `negentropy` and `kl_marginal` by sample size",
        "",
        "Generated by `python docs/make_accuracy.py` (do not edit by hand; "
        "`tests/test_accuracy_doc.py` recomputes cells of this table).",
        "",
        "Every shape is standardised to mean 0 and variance 1, so its true KL to N(0, 1) "
        "equals its negentropy J = ½ ln(2πe) − H(q), with H(q) integrated numerically "
        "(`scipy.integrate.quad`). Each cell gives the bias (mean estimate − truth) and the "
        "sd of one estimate over seeded replicates "
        f"({', '.join(f'{REPLICATES[n]} at n = {n:,}' for n in SIZES)}); the standard "
        "error of a bias is its sd / √replicates. `negentropy` is `dims[i].negentropy`, "
        "`kl_marginal` is `dims[i].kl_marginal` (= kl_gauss of the sample's mean and std + "
        f"negentropy). Estimator: {divergence.ENTROPY_ESTIMATOR}.",
        "",
        "| shape | true J (nats) | n | negentropy bias | sd | kl_marginal bias | sd |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for i, shape in enumerate(SHAPES):
        for n in SIZES:
            c = cells[(i, n)]
            lines.append(
                f"| {shape.name} | {abs(truths[i]) if abs(truths[i]) < 5e-5 else truths[i]:.4f} "
                f"| {n:,} | {_f(c.neg_bias)} | "
                f"{c.neg_sd:.4f} | {_f(c.kl_bias)} | {c.kl_sd:.4f} |"
            )
    worst = {n: max(abs(cells[(i, n)].kl_bias) for i in range(len(SHAPES))) for n in SIZES}
    sds = {n: max(cells[(i, n)].kl_sd for i in range(len(SHAPES))) for n in SIZES}
    lines += [
        "",
        "Largest |bias| of `kl_marginal` over these shapes, and largest sd: "
        + "; ".join(f"n = {n:,}: {worst[n]:.3f} and {sds[n]:.3f} nats" for n in SIZES)
        + ". The bias is largest, and negative, on shapes with sharp narrow modes (the "
        "narrow bimodals), whose density the m-spacing estimator smooths over; it shrinks "
        "with n. On near-Gaussian data the Gaussian rows apply: a small positive bias from "
        "kl_gauss's sampling error.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args(argv)
    text = build_accuracy()
    if args.check:
        if OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT} is stale: run python docs/make_accuracy.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
