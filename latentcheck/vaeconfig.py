"""A VAE's own normalisation config checked against its latents (issue 18).

Reads the constants a pipeline keeps with its VAE — a diffusers ``config.json`` or any JSON
or YAML file with ``scaling_factor``, ``shift_factor``, ``latents_mean``, ``latents_std`` (at
the top level or in one nested mapping such as ``vae:``) — and checks them against a
report:

- global constants only (Stable Diffusion, SD3, FLUX): ``(z − shift_factor) ·
  scaling_factor``, with exactly the check of ``--assume-scale/--assume-shift``
  (:func:`latentcheck.stats.normalization.check_normalization`);
- per-channel constants (SDXL-style pipelines and video VAEs such as Wan): diffusers applies
  ``(z − latents_mean) · scaling_factor / latents_std`` (``scaling_factor`` 1 when absent);
  every channel's normalised mean m'_j = (m_j − μ_j)·s/σ_j and std s'_j = std_j·s/σ_j are
  exact (the map is affine), with the same tolerances (|m'_j| < 0.1, |s'_j − 1| ≤ 0.1) and
  KL(N(m'_j, s'_j²) ‖ N(0, 1)) = ½(m'² + s'² − 1 − ln s'²).

:func:`fitted_config` gives the constants the data needs in the same vocabulary.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from .errors import InputError

if TYPE_CHECKING:
    from .model.report import Report

__all__ = [
    "KEYS",
    "VaeConfig",
    "check_vae_config",
    "emit_config",
    "fitted_config",
    "load_vae_config",
    "parse_vae_config",
]

KEYS = ("scaling_factor", "shift_factor", "latents_mean", "latents_std")


@dataclasses.dataclass(frozen=True)
class VaeConfig:
    """The normalisation constants of a VAE config (None where the config has none)."""

    scaling_factor: float | None = None
    shift_factor: float | None = None
    latents_mean: NDArray[np.float64] | None = None
    latents_std: NDArray[np.float64] | None = None
    source: str = "config"


def _find(data: Any) -> Mapping[str, Any] | None:
    """Return the mapping holding the keys: the top level or one nested mapping."""
    if not isinstance(data, Mapping):
        return None
    if any(k in data for k in KEYS):
        return data
    for value in data.values():
        if isinstance(value, Mapping) and any(k in value for k in KEYS):
            return value
    return None


def _number(value: Any, key: str, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{where}: `{key}` must be a number, got {value!r}")
    x = float(value)
    if not math.isfinite(x):
        raise InputError(f"{where}: `{key}` must be finite, got {value!r}")
    return x


def _vector(value: Any, key: str, where: str) -> NDArray[np.float64] | None:
    if value is None:
        return None
    try:
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"{where}: `{key}` must be a list of numbers") from None
    if arr.size == 0 or not np.isfinite(arr).all():
        raise InputError(f"{where}: `{key}` must be a non-empty list of finite numbers")
    return arr


def parse_vae_config(data: Any, where: str = "config") -> VaeConfig:
    """Return the constants of an already loaded config mapping."""
    found = _find(data)
    if found is None:
        raise InputError(f"{where} has none of the keys {', '.join(KEYS)}")
    cfg = VaeConfig(
        scaling_factor=_number(found.get("scaling_factor"), "scaling_factor", where),
        shift_factor=_number(found.get("shift_factor"), "shift_factor", where),
        latents_mean=_vector(found.get("latents_mean"), "latents_mean", where),
        latents_std=_vector(found.get("latents_std"), "latents_std", where),
        source=where,
    )
    if cfg.scaling_factor is not None and cfg.scaling_factor <= 0:
        raise InputError(f"{where}: `scaling_factor` must be > 0, got {cfg.scaling_factor}")
    if (cfg.latents_mean is None) != (cfg.latents_std is None):
        raise InputError(f"{where}: `latents_mean` and `latents_std` go together; give both")
    if cfg.latents_mean is not None and cfg.latents_std is not None:
        if cfg.latents_mean.size != cfg.latents_std.size:
            raise InputError(
                f"{where}: `latents_mean` has {cfg.latents_mean.size} values but "
                f"`latents_std` has {cfg.latents_std.size}"
            )
        if np.any(cfg.latents_std <= 0):
            raise InputError(f"{where}: every `latents_std` value must be > 0")
    if cfg.scaling_factor is None and cfg.latents_mean is None:
        raise InputError(f"{where} has neither `scaling_factor` nor `latents_mean`/`latents_std`")
    return cfg


def load_vae_config(path: str | os.PathLike[str]) -> VaeConfig:
    """Read a JSON or YAML config file (YAML needs PyYAML, an optional dependency)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"VAE config not found: {path}")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"Cannot read the VAE config {path} ({exc})") from None
    if p.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml  # type: ignore[import-untyped, unused-ignore]
        except ImportError:
            raise InputError(
                f"{path} is YAML, which needs PyYAML (pip install pyyaml); or convert it to JSON"
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InputError(f"{path} is not valid YAML ({exc})") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path} is not valid JSON ({exc})") from None
    return parse_vae_config(data, str(path))


def _per_channel(report: Report, cfg: VaeConfig) -> dict[str, Any]:
    """Return the per-channel check of ``(z − latents_mean) · s / latents_std``."""
    from .stats.normalization import MEAN_TOL, STD_TOL

    assert cfg.latents_mean is not None and cfg.latents_std is not None
    d = report.input.n_dims
    if cfg.latents_mean.size != d:
        raise InputError(
            f"{cfg.source}: `latents_mean` has {cfg.latents_mean.size} values but the latents "
            f"have {d} dimensions (channels)"
        )
    s = 1.0 if cfg.scaling_factor is None else cfg.scaling_factor
    ok = ~np.asarray(report.dims.degenerate, dtype=bool)
    mean = np.asarray(report.dims.mean, dtype=np.float64)
    std = np.asarray(report.dims.std, dtype=np.float64)
    m1 = (mean - cfg.latents_mean) * s / cfg.latents_std
    s1 = std * s / cfg.latents_std
    with np.errstate(divide="ignore"):
        kl = 0.5 * (m1**2 + s1**2 - 1.0 - np.log(s1**2))
    off = ok & ((np.abs(m1) >= MEAN_TOL) | (np.abs(s1 - 1.0) > STD_TOL))
    fits = not bool(off.any())
    bad = np.flatnonzero(off)
    shown = ", ".join(str(int(j)) for j in bad[:10]) + (" ..." if bad.size > 10 else "")
    if fits:
        text = (
            f"The VAE config's per-channel latents_mean/latents_std fit the latents: every "
            f"normalised channel has |mean| < {MEAN_TOL:g} and std within {STD_TOL:g} of 1 "
            f"(worst std {float(s1[ok][np.argmax(np.abs(s1[ok] - 1))]):.3g})."
        )
    else:
        text = (
            f"The VAE config's per-channel latents_mean/latents_std do not fit the latents: "
            f"{bad.size} of {int(ok.sum())} channels ({shown}) normalise to |mean| >= "
            f"{MEAN_TOL:g} or a std more than {STD_TOL:g} from 1 (normalised std "
            f"{float(np.min(s1[ok])):.3g}..{float(np.max(s1[ok])):.3g}); fitted latents_mean "
            f"and latents_std are in `latentcheck report --emit-config`."
        )
    return {
        "formula": "(z - latents_mean) * scaling_factor / latents_std",
        "scaling_factor": s,
        "normalized_mean": m1.tolist(),
        "normalized_std": s1.tolist(),
        "kl_gauss_dims": float(np.mean(kl[ok])),
        "channels_off": [int(j) for j in bad],
        "fits": fits,
        "fitted_latents_mean": mean.tolist(),
        "fitted_latents_std": (std * s).tolist(),
        "text": text,
    }


def check_vae_config(report: Report, config: VaeConfig | Mapping[str, Any] | str) -> Report:
    """Return `report` with the config checked: ``summary.normalization_check`` and a finding.

    `config` is a path, a loaded mapping or a :class:`VaeConfig`. Global constants go
    through the check of ``assume_scale``/``assume_shift``; per-channel ones through the
    exact per-channel check (see the module docstring). The result is the report's
    ``summary.normalization_check`` with a ``vae_config`` block (source, constants, whether
    they fit, the fitted values) and one finding (aspect "scale") in the verdict.
    """
    from .model.checks import NormalizationCheckBlock, VaeConfigBlock
    from .model.report import Finding
    from .stats.normalization import check_normalization

    if isinstance(config, (str, os.PathLike)):
        cfg = load_vae_config(config)
    elif isinstance(config, VaeConfig):
        cfg = config
    else:
        cfg = parse_vae_config(config)
    sm = report.summary
    norm = sm.normalization
    check = sm.normalization_check or NormalizationCheckBlock()
    per: dict[str, Any] | None = None
    if cfg.latents_mean is not None:
        per = _per_channel(report, cfg)
        fits = bool(per["fits"])
        text = per["text"]
    else:
        assert cfg.scaling_factor is not None
        from .model.report import to_jsonable

        ok = ~np.asarray(report.dims.degenerate, dtype=bool)
        with np.errstate(divide="ignore"):
            per_std = 1.0 / norm.per_dim_scale
        res = check_normalization(
            norm.n_rows,
            norm.shift,
            1.0 / norm.scale,
            assume_scale=cfg.scaling_factor,
            assume_shift=cfg.shift_factor or 0.0,
            per_dim_mean=norm.per_dim_shift[ok],
            per_dim_std=per_std[ok],
        )
        # through the JSON form, so that non-finite figures are None as in a saved report
        check = NormalizationCheckBlock.from_dict(to_jsonable(res))
        # fits: the global mean and std normalise to within tolerance; a recognised
        # mistake beside that (per-channel spread) makes the finding a note
        fits = bool(res.within_tolerance)
        text = (
            f"The VAE config's scaling_factor {cfg.scaling_factor:g}"
            + (f" and shift_factor {cfg.shift_factor:g}" if cfg.shift_factor else "")
            + (" fit the latents" if fits else " do not fit the latents")
            + f" (normalised mean {res.normalized_mean:.3g}, std {res.normalized_std:.3g}); "
            + f"fitted: scaling_factor {res.needed_scale:.6g}, shift_factor {res.needed_shift:.6g}."
        )
        if res.mistakes:
            text += " " + " ".join(res.messages)
    block = VaeConfigBlock(
        source=cfg.source,
        scaling_factor=cfg.scaling_factor,
        shift_factor=cfg.shift_factor,
        latents_mean=cfg.latents_mean,
        latents_std=cfg.latents_std,
        per_channel=per,
        fits=fits,
        text=text,
        fitted=fitted_config(report),
    )
    check = dataclasses.replace(check, vae_config=block)
    status = "warn" if not fits else ("note" if check.mistakes else "ok")
    finding = Finding(aspect="scale", status=status, text=text, code="vae_config", dims=())
    summary = dataclasses.replace(
        sm,
        normalization_check=check,
        findings=(*sm.findings, finding),
        verdict=f"{sm.verdict} {text}".strip(),
    )
    return dataclasses.replace(report, summary=summary)


def fitted_config(report: Report) -> dict[str, Any]:
    """Return the constants the latents need, in the vocabulary of diffusers configs.

    ``scaling_factor`` = 1/std and ``shift_factor`` = mean over all values (use as
    ``(z − shift_factor) · scaling_factor``); ``latents_mean`` is the per-channel mean and
    ``latents_std`` the per-channel std times ``scaling_factor``, so that diffusers'
    ``(z − latents_mean) · scaling_factor / latents_std`` has mean 0 and std 1 in every
    channel (pipelines that divide by ``latents_std`` alone want ``latentcheck.channel_std``).
    ``latentcheck`` also holds the rows and the 95% intervals behind the global constants.
    """
    norm = report.summary.normalization
    with np.errstate(divide="ignore"):
        per_std = 1.0 / np.asarray(norm.per_dim_scale, dtype=np.float64)
    return {
        "scaling_factor": float(norm.scale),
        "shift_factor": float(norm.shift),
        "latents_mean": [float(x) for x in norm.per_dim_shift],
        "latents_std": [float(x) * float(norm.scale) for x in per_std],
        "latentcheck": {
            "channel_std": [float(x) for x in per_std],
            "n_rows": int(norm.n_rows),
            "scaling_factor_ci": [float(x) for x in norm.scale_ci],
            "shift_factor_ci": [float(x) for x in norm.shift_ci],
            "usage": "(z - shift_factor) * scaling_factor, or per channel "
            "(z - latents_mean) * scaling_factor / latents_std",
        },
    }


def emit_config(report: Report) -> str:
    """Return :func:`fitted_config` as JSON text (degenerate channels' values as null)."""
    from .model.report import to_jsonable

    return json.dumps(to_jsonable(fitted_config(report)), indent=2, allow_nan=False) + "\n"
