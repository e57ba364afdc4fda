"""Check of a claimed normalisation: exact moment algebra and the named mistakes."""

from __future__ import annotations

import numpy as np
import pytest

from latentcheck.errors import DegenerateDimensionWarning, InputError, SmallSampleWarning
from latentcheck.stats.normalization import (
    KNOWN_CONSTANTS,
    MISTAKES,
    check_normalization,
)

# published constants, (scale, shift), as in the sources below:
#   SD 1.x: CompVis/stable-diffusion configs/stable-diffusion/v1-inference.yaml scale_factor
#   SDXL: Stability-AI/generative-models configs/inference/sd_xl_base.yaml scale_factor
#   SD3: huggingface/diffusers scripts/convert_sd3_to_diffusers.py scaling/shift_factor
#   FLUX.1: black-forest-labs/flux src/flux/util.py ae_params scale/shift_factor
SD1 = (0.18215, 0.0)
SDXL = (0.13025, 0.0)
SD3 = (1.5305, 0.0609)
FLUX = (0.3611, 0.1159)


def pooled(z: np.ndarray) -> tuple[float, float]:
    return float(z.mean()), float(z.std())


def data_for(scale: float, shift: float) -> tuple[float, float]:
    """Pooled (mean, std) of latents that (z − shift) * scale maps exactly to N(0, 1)."""
    return shift, 1.0 / scale


def test_known_constants_are_the_published_values() -> None:
    table = {k.model: (k.scale, k.shift) for k in KNOWN_CONSTANTS}
    assert table["Stable Diffusion 1.x/2.x"] == SD1
    assert table["SDXL"] == SDXL
    assert table["Stable Diffusion 3/3.5"] == SD3
    assert table["FLUX.1"] == FLUX
    assert all(k.source for k in KNOWN_CONSTANTS)


@pytest.mark.parametrize(
    ("scale", "shift"), [(0.18215, 0.0), (0.3611, 0.1159), (2.5, -1.0), (1.0, 0.0)]
)
def test_moment_algebra_equals_numpy(scale: float, shift: float) -> None:
    rng = np.random.default_rng(0)
    z = rng.normal([0.3, -1.0, 2.0, 0.0], [5.0, 3.0, 4.0, 6.0], size=(3000, 4))
    mean, std = pooled(z)
    res = check_normalization(
        z.shape[0],
        mean,
        std,
        assume_scale=scale,
        assume_shift=shift,
        per_dim_mean=z.mean(axis=0),
        per_dim_std=z.std(axis=0),
    )
    zn = (z - shift) * scale
    # affine maps of float64 moments: agreement to rounding of the 12,000-value sums
    np.testing.assert_allclose(res.normalized_mean, zn.mean(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res.normalized_std, zn.std(), rtol=1e-10)
    np.testing.assert_allclose(res.normalized_rms, np.sqrt(np.mean(zn**2)), rtol=1e-10)
    m, s = zn.mean(), zn.std()
    np.testing.assert_allclose(res.kl_gauss, 0.5 * (m**2 + s**2 - 1 - np.log(s**2)), rtol=1e-10)
    np.testing.assert_allclose(((z - res.needed_shift) * res.needed_scale).std(), 1.0, rtol=1e-10)
    np.testing.assert_allclose(((z - res.needed_shift) * res.needed_scale).mean(), 0.0, atol=1e-12)
    second = np.mean(((z - shift) * res.needed_scale_given_shift) ** 2)
    np.testing.assert_allclose(second, 1.0, rtol=1e-10)
    mj, sj = zn.mean(axis=0), zn.std(axis=0)
    np.testing.assert_allclose(
        res.kl_gauss_dims, np.mean(0.5 * (mj**2 + sj**2 - 1 - np.log(sj**2))), rtol=1e-10
    )
    zb = (z - z.mean()) / z.std()
    bj, tj = zb.mean(axis=0), zb.std(axis=0)
    np.testing.assert_allclose(
        res.kl_gauss_dims_best_global,
        np.mean(0.5 * (bj**2 + tj**2 - 1 - np.log(tj**2))),
        rtol=1e-10,
    )
    np.testing.assert_allclose(res.per_dim_std_ratio, z.std(axis=0).max() / z.std(axis=0).min())


@pytest.mark.parametrize(
    ("model", "constants"),
    [
        ("Stable Diffusion 1.x/2.x", SD1),
        ("SDXL", SDXL),
        ("Stable Diffusion 3/3.5", SD3),
        ("FLUX.1", FLUX),
    ],
)
def test_ok_on_data_that_fits_the_published_constants(model: str, constants) -> None:
    scale, shift = constants
    mean, std = data_for(scale, shift)
    res = check_normalization(50_000, mean, std, assume_scale=scale, assume_shift=shift)
    assert res.verdict == "ok" and res.mistakes == () and res.within_tolerance
    assert res.known_constant == model
    assert model in res.fitting_constants
    np.testing.assert_allclose([res.normalized_mean, res.normalized_std], [0.0, 1.0], atol=1e-12)
    assert res.kl_gauss == pytest.approx(0.0, abs=1e-12)
    assert "within tolerance" in res.messages[0]


def test_ok_with_per_dimension_moments_that_agree() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(0.0, 1 / 0.18215, size=(20_000, 4)) * np.array([1.0, 1.1, 0.9, 1.05])
    res = check_normalization(
        20_000,
        *pooled(z),
        assume_scale=0.18215,
        per_dim_mean=z.mean(axis=0),
        per_dim_std=z.std(axis=0),
    )
    assert res.verdict == "ok" and res.mistakes == ()


def test_inverted_factor() -> None:
    # SD 1.x raw latents (std 1/0.18215 ≈ 5.49) with the inverse of the factor claimed
    mean, std = data_for(*SD1)
    res = check_normalization(10_000, mean, std, assume_scale=1 / 0.18215)
    assert res.mistakes == ("inverted_factor",) and res.verdict == "mistake"
    np.testing.assert_allclose(res.normalized_std, std**2, rtol=1e-12)
    assert "divides by the factor" in res.messages[0]


def test_missing_shift() -> None:
    # FLUX-like data centred far from 0 but normalised without a shift
    res = check_normalization(10_000, 1.5, 2.0, assume_scale=0.5)
    assert res.mistakes == ("missing_shift",) and res.verdict == "mistake"
    assert res.normalized_std == pytest.approx(1.0)
    assert "use shift = 1.5, i.e. (z - shift) * scale" in res.messages[0]
    # the same mean with the shift applied is fine
    ok = check_normalization(10_000, 1.5, 2.0, assume_scale=0.5, assume_shift=1.5)
    assert ok.verdict == "ok"


@pytest.mark.parametrize("claimed", [0.18215, 0.1821, 0.1822])
def test_another_vaes_constant(claimed: float) -> None:
    # SDXL latents normalised with Stable Diffusion 1.x's constant (within 1e-4)
    mean, std = data_for(*SDXL)
    res = check_normalization(10_000, mean, std, assume_scale=claimed)
    assert res.mistakes == ("other_vae_constant",)
    assert res.known_constant == "Stable Diffusion 1.x/2.x"
    assert "SDXL" in res.fitting_constants
    assert "Stable Diffusion 1.x/2.x" in res.messages[0] and "SDXL" in res.messages[0]


def test_constant_off_by_less_than_the_tolerance_is_not_another_vaes() -> None:
    # the data needs 0.18215·1.05; the published SD 1.x constant is then within 10%
    mean, std = 0.0, 1 / (0.18215 * 1.05)
    res = check_normalization(10_000, mean, std, assume_scale=0.18215)
    assert res.verdict == "ok" and res.known_constant == "Stable Diffusion 1.x/2.x"


def test_already_normalized() -> None:
    res = check_normalization(10_000, 0.01, 1.02, assume_scale=0.18215)
    assert res.mistakes == ("already_normalized",)
    assert res.known_constant == "Stable Diffusion 1.x/2.x"  # named, but not blamed
    assert "look normalised" in res.messages[0]


def test_per_channel_needed_by_std_spread() -> None:
    # pooled std 1 after scaling, but one channel has 3× the spread of another
    rng = np.random.default_rng(2)
    z = rng.normal(0.0, [0.5, 1.5, 1.0, 1.0], size=(20_000, 4))
    res = check_normalization(
        20_000, *pooled(z), assume_scale=1.0, per_dim_mean=z.mean(0), per_dim_std=z.std(0)
    )
    assert res.within_tolerance
    assert res.mistakes == ("per_channel_needed",) and res.verdict == "mistake"
    assert res.per_dim_std_ratio > 2
    assert res.kl_gauss_dims_best_global > 0.1


def test_per_channel_needed_by_mean_offsets() -> None:
    rng = np.random.default_rng(3)
    z = rng.normal([-0.8, 0.8, 0.0], 0.6, size=(20_000, 3))
    res = check_normalization(
        20_000, *pooled(z), assume_scale=1 / z.std(), per_dim_mean=z.mean(0), per_dim_std=z.std(0)
    )
    assert res.mistakes == ("per_channel_needed",)
    assert res.per_dim_mean_offset > 0.5 and res.per_dim_std_ratio < 2


def test_degenerate_dimensions_are_left_out_of_the_per_channel_check() -> None:
    res = check_normalization(
        1000,
        0.0,
        1.0,
        assume_scale=1.0,
        per_dim_mean=[0.0, 0.0, 5.0],
        per_dim_std=[1.0, 1.1, 0.0],
    )
    assert res.mistakes == () and res.per_dim_std_ratio == pytest.approx(1.1)


def test_several_mistakes_are_reported_in_order() -> None:
    # SDXL-scale data with a large mean, SD 1.x's constant and no shift
    res = check_normalization(10_000, 4.0, 1 / 0.13025, assume_scale=0.18215)
    assert res.mistakes == ("missing_shift", "other_vae_constant")
    assert len(res.messages) == 2
    assert set(res.mistakes) <= set(MISTAKES)


def test_off_without_a_known_mistake() -> None:
    res = check_normalization(10_000, 0.0, 2.0, assume_scale=0.3)
    assert res.verdict == "off" and res.mistakes == () and not res.within_tolerance
    assert "needs shift 0 and scale 0.5" in res.messages[0]


@pytest.mark.parametrize("name", MISTAKES)
def test_no_mistake_on_an_ok_case(name: str) -> None:
    rng = np.random.default_rng(4)
    z = rng.normal(0.1159, 1 / 0.3611, size=(20_000, 16))
    res = check_normalization(
        20_000,
        *pooled(z),
        assume_scale=0.3611,
        assume_shift=0.1159,
        per_dim_mean=z.mean(0),
        per_dim_std=z.std(0),
    )
    assert name not in res.mistakes and res.verdict == "ok"


def test_small_sample_and_constant_data_warn() -> None:
    with pytest.warns(SmallSampleWarning, match="at least 2 rows, got 1"):
        res = check_normalization(1, 0.0, 0.0, assume_scale=0.18215)
    assert res.verdict == "unknown" and np.isnan(res.kl_gauss)
    with pytest.warns(DegenerateDimensionWarning, match="zero standard deviation"):
        res = check_normalization(100, 3.0, 0.0, assume_scale=0.18215)
    assert res.verdict == "unknown" and res.mistakes == ()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"assume_scale": 0.0}, "`assume_scale` must be a positive number, got 0.0"),
        ({"assume_scale": -0.18}, "`assume_scale` must be a positive number"),
        ({"assume_scale": float("nan")}, "`assume_scale` must be a finite number"),
        ({"assume_scale": 1.0, "assume_shift": float("inf")}, "`assume_shift` must be a finite"),
        ({"assume_scale": 1.0, "per_dim_mean": [0.0]}, "Give both `per_dim_mean`"),
        (
            {"assume_scale": 1.0, "per_dim_mean": [0.0, 1.0], "per_dim_std": [1.0]},
            "must be 1-D of the same non-zero length",
        ),
        (
            {"assume_scale": 1.0, "per_dim_mean": [0.0], "per_dim_std": [-1.0]},
            "`per_dim_std` finite and >= 0",
        ),
    ],
)
def test_invalid_parameters(kwargs: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        check_normalization(100, 0.0, 1.0, **kwargs)


def test_invalid_moments() -> None:
    with pytest.raises(InputError, match="`std` must be a finite number >= 0"):
        check_normalization(100, 0.0, -1.0, assume_scale=1.0)
    with pytest.raises(InputError, match="`mean` must be a finite number"):
        check_normalization(100, float("nan"), 1.0, assume_scale=1.0)
    with pytest.raises(InputError, match="`n` must be at least 0"):
        check_normalization(-1, 0.0, 1.0, assume_scale=1.0)


def test_non_numeric_parameters() -> None:
    with pytest.raises(InputError, match=r"`assume_scale` must be a finite number, got '0\.18'"):
        check_normalization(100, 0.0, 1.0, assume_scale="0.18")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="`mean` must be a finite number, got True"):
        check_normalization(100, True, 1.0, assume_scale=1.0)
