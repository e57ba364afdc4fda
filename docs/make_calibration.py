"""Regenerate ``docs/calibration.md``: size and power of latentcheck's tests, iid and conv.

Everything goes through the public API, ``latentcheck.analyze`` at its defaults (seed =
replicate), and reads p-values from ``Report.to_dict()``, so the table shows what users get.
Data, per replicate (each with its own seed):

- **iid**: ``IID_ROWS`` independent rows of ``DIMS`` dimensions.
- **conv**: ``CONV_ITEMS`` items of shape (``DIMS``, ``GRID``, ``GRID``): a white N(0, 1) field
  smoothed by a Gaussian kernel of ``SMOOTH`` px (cropped from a padded periodic grid, so not
  periodic itself), rescaled so that every value is
  exactly N(0, 1) (unit kernel norm), independent across items and channels: what a good
  latent-diffusion latent looks like.

Distributions: the null N(0, 1) (size), t(5) scaled to unit variance, and the mixture
½ N(−c, s²) + ½ N(c, s²) with c = 0.9, s = 0.44 (unit variance; power). For conv data t(5)
is the Gaussian field mapped through the t(5) quantile function, and the mixture takes its
sign from a second, independent smoothed field, so both keep the spatial correlation.

Columns: for each univariate test (``dims[i].tests``, and the conv reports' tests on
separated positions, ``spatial.separated_tests``) the per-dimension rejection rate at
p < α over replicates × dims, and the rate at which any dimension is rejected after Holm
(what the verdict reads); for each joint test (``joint.tests``) the rejection rate at
p < α. Every rate comes with its binomial standard error √(r(1 − r)/k) (k = trials;
per-dimension rates on conv data count dims as independent, which they are here). Test
names are read from the reports, so new tests appear without editing this script.

``docs/calibration.json`` keeps every replicate's p-values; ``tests/test_calibration_doc.py``
recomputes a few replicates and checks the table against the JSON.

Usage, from anywhere::

    python docs/make_calibration.py                   # rewrite docs/calibration.{md,json}
    python docs/make_calibration.py --replicates 400  # more precise (slower)
    python docs/make_calibration.py --check           # exit 1 if the files are stale
    python docs/make_calibration.py --from-json       # re-render the table only
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage, stats

import latentcheck as lc

REPO = Path(__file__).resolve().parent.parent
OUTPUT = REPO / "docs" / "calibration.md"
DATA = REPO / "docs" / "calibration.json"
ALPHA = 0.05
DIMS = 4
IID_ROWS = 1000
CONV_ITEMS = 24
GRID = 32
SMOOTH = 1.5
REPLICATES = 40
LAYOUTS = ("iid", "conv")
DISTRIBUTIONS = ("N(0,1)", "t(5)", "mixture")
MIX_C, MIX_S = 0.9, math.sqrt(1 - 0.9**2)


def _smoothed(rng: np.random.Generator, n: int) -> np.ndarray:
    """n items of DIMS exact-N(0, 1) fields, correlated in space only.

    Smoothed periodically on a grid padded by 5 kernel widths, then cropped: a periodic
    field of GRID x GRID would correlate opposite edges, which no encoder's latents do
    and which made positions the tool rightly takes as far apart correlated (mean_zero
    rejected 0.27 of exact N(0, 1) draws that way).
    """
    pad = math.ceil(5 * SMOOTH)
    size = GRID + 2 * pad
    white = rng.standard_normal((n, DIMS, size, size))
    field = ndimage.gaussian_filter(white, sigma=(0, 0, SMOOTH, SMOOTH), mode="wrap")
    # the kernel's squared norm is the field's variance: divide by its exact value
    impulse = np.zeros((size, size))
    impulse[0, 0] = 1.0
    kernel = ndimage.gaussian_filter(impulse, sigma=SMOOTH, mode="wrap")
    field = field[:, :, pad : pad + GRID, pad : pad + GRID]
    return field / math.sqrt(float(np.sum(kernel**2)))


def draw(layout: str, dist: str, seed: int) -> np.ndarray:
    """One replicate: (IID_ROWS, DIMS) rows or (CONV_ITEMS, DIMS, GRID, GRID) items."""
    rng = np.random.default_rng([15, LAYOUTS.index(layout), DISTRIBUTIONS.index(dist), seed])
    if layout == "iid":
        g = rng.standard_normal((IID_ROWS, DIMS))
        sign = np.where(rng.random((IID_ROWS, DIMS)) < 0.5, -1.0, 1.0)
    else:
        g = _smoothed(rng, CONV_ITEMS)
        sign = np.sign(_smoothed(rng, CONV_ITEMS))
    if dist == "N(0,1)":
        return g
    if dist == "t(5)":
        return np.asarray(stats.t.ppf(stats.norm.cdf(g), 5) / math.sqrt(5 / 3))
    return MIX_C * sign + MIX_S * g


def _pvalues(report: dict[str, Any]) -> dict[str, Any]:
    """Return {family: {test: p-values}} from a report dict (names as the report has them)."""
    uni: dict[str, list[float | None]] = {}
    holm: dict[str, list[float | None]] = {}
    for rec in report["dims"]:
        for name, t in rec.get("tests", {}).items():
            uni.setdefault(name, []).append(t.get("pvalue"))
            holm.setdefault(name, []).append(t.get("pvalue_holm"))
    joint = {
        name: t.get("pvalue")
        for name, t in ((report.get("joint") or {}).get("tests") or {}).items()
        if isinstance(t, dict)
    }
    out: dict[str, Any] = {"univariate": uni, "univariate_holm": holm, "joint": joint}
    sep = ((report.get("spatial") or {}).get("separated_tests") or {}).get("tests") or {}
    if sep:
        out["separated"] = {name: t.get("pvalue") for name, t in sep.items()}
        out["separated_holm"] = {name: t.get("pvalue_holm") for name, t in sep.items()}
    return out


def _round(value: Any) -> Any:
    """Round p-values to 8 significant digits (the JSON stays small; tests use rtol 1e-6)."""
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v) for v in value]
    if isinstance(value, float):
        return float(f"{value:.8g}")
    return value


def replicate(layout: str, dist: str, seed: int) -> dict[str, Any]:
    """Analyse one replicate and return its p-values."""
    x = draw(layout, dist, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-sample notes are part of what users get
        rep = lc.analyze(x, seed=seed)
    result: dict[str, Any] = _round(_pvalues(rep.to_dict()))
    return result


def run(replicates: int) -> dict[str, Any]:
    """Run every cell; return the JSON document."""
    cells: dict[str, list[dict[str, Any]]] = {}
    for layout in LAYOUTS:
        for dist in DISTRIBUTIONS:
            t0 = time.perf_counter()
            cells[f"{layout}/{dist}"] = [replicate(layout, dist, s) for s in range(replicates)]
            print(f"{layout}/{dist}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return {
        "alpha": ALPHA,
        "replicates": replicates,
        "design": {
            "dims": DIMS,
            "iid_rows": IID_ROWS,
            "conv_items": CONV_ITEMS,
            "grid": GRID,
            "smooth_px": SMOOTH,
            "mixture": [MIX_C, MIX_S],
        },
        "latentcheck_version": lc.__version__,
        "cells": cells,
    }


def _rate(hits: int, k: int) -> str:
    if k == 0:
        return "–"
    r = hits / k
    return f"{r:.3f} ± {math.sqrt(r * (1 - r) / k):.3f}"


def _reject(p: Any) -> bool:
    return p is not None and float(p) < ALPHA


def _row_rates(reps: list[dict[str, Any]], family: str, name: str) -> tuple[str, str]:
    """Per-dimension (or per-report) rate and the Holm 'any dimension' rate."""
    per, per_k, anyh, any_k = 0, 0, 0, 0
    for r in reps:
        ps = r.get(family, {}).get(name)
        if ps is None:
            continue
        if not isinstance(ps, list):
            per += _reject(ps)
            per_k += 1
            continue
        ok = [p for p in ps if p is not None]
        per += sum(_reject(p) for p in ok)
        per_k += len(ok)
        holm = [p for p in r.get(family + "_holm", {}).get(name, []) if p is not None]
        if holm:
            anyh += any(_reject(p) for p in holm)
            any_k += 1
    return _rate(per, per_k), _rate(anyh, any_k)


def render(doc: dict[str, Any]) -> str:
    """Return docs/calibration.md from the JSON document."""
    d = doc["design"]
    cells = doc["cells"]
    lines = [
        "# Calibration of latentcheck's tests",
        "",
        "Generated by `python docs/make_calibration.py` from `docs/calibration.json` (do not "
        "edit by hand; `tests/test_calibration_doc.py` recomputes replicates of it). "
        f"latentcheck {doc['latentcheck_version']}, {doc['replicates']} replicates per "
        f"column, α = {doc['alpha']}.",
        "",
        f"- **iid**: {d['iid_rows']} independent rows × {d['dims']} dims.",
        f"- **conv**: {d['conv_items']} items × {d['dims']} channels × {d['grid']}×"
        f"{d['grid']}, each channel a white N(0, 1) field smoothed by a Gaussian kernel of "
        f"{d['smooth_px']} px and rescaled to exact N(0, 1) values; items independent.",
        "- **N(0,1)** is the null: its column is the size and should read 0.05 (0.05 ± 2 se). "
        "**t(5)** (unit variance) and the **mixture** ½N(−c, s²) + ½N(c, s²) "
        f"(c = {d['mixture'][0]:g}, s = {d['mixture'][1]:.3f}) give the power.",
        "- Per-dim: share of (replicate, dimension) pairs with p < α; any (Holm): share of "
        "reports with at least one dimension rejected after Holm's correction (what the "
        "verdict reads). Joint tests: share of reports with p < α. ± is one binomial "
        "standard error.",
        "",
    ]
    families = (
        ("univariate", "Univariate tests (`dims[i].tests`)", True),
        ("separated", "Univariate tests on separated positions (`spatial.separated_tests`)", True),
        ("joint", "Joint tests (`joint.tests`)", False),
    )
    for family, title, per_dim in families:
        names: list[str] = []
        for reps in cells.values():
            for r in reps:
                for name in r.get(family, {}):
                    if name not in names:
                        names.append(name)
        if not names:
            continue
        names.sort()  # JSON round trips do not keep the reports' order
        lines += [f"## {title}", ""]
        for layout in LAYOUTS:
            keys = [f"{layout}/{dist}" for dist in DISTRIBUTIONS]
            if not any(cells[k] and family in cells[k][0] for k in keys if k in cells):
                continue
            head = ["test"]
            for dist in DISTRIBUTIONS:
                head += [f"{dist} per-dim", f"{dist} any (Holm)"] if per_dim else [dist]
            lines += [
                f"**{layout}**",
                "",
                "| " + " | ".join(head) + " |",
                "|---|" + "---:|" * (len(head) - 1),
            ]
            for name in names:
                row = [f"`{name}`"]
                for k in keys:
                    per, anyh = _row_rates(cells.get(k, []), family, name)
                    row += [per, anyh] if per_dim else [per]
                lines.append("| " + " | ".join(row) + " |")
            lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the files are stale")
    parser.add_argument("--replicates", type=int, default=REPLICATES)
    parser.add_argument(
        "--from-json", action="store_true", help="only re-render the table from the JSON"
    )
    args = parser.parse_args(argv)
    if args.from_json:
        OUTPUT.write_text(render(json.loads(DATA.read_text(encoding="utf-8"))), encoding="utf-8")
        print(f"wrote {OUTPUT}")
        return 0
    doc = run(args.replicates)
    text = render(doc)
    data = json.dumps(doc, indent=None, sort_keys=True, separators=(",", ":")) + "\n"
    if args.check:
        if OUTPUT.read_text(encoding="utf-8") != text or json.loads(
            DATA.read_text(encoding="utf-8")
        ) != json.loads(data):
            print(f"{OUTPUT} is stale: run python docs/make_calibration.py", file=sys.stderr)
            return 1
        return 0
    DATA.write_text(data, encoding="utf-8")
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT} and {DATA}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
