"""Command-line interface: ``latentcheck report`` and ``latentcheck compare``.

Each command parses its options, calls one public function, renders the result and picks
the exit code: 0 done, 1 a ``--fail-on`` condition held, 2 bad usage or unreadable input
(one line on stderr; ``--debug`` shows the traceback). No statistics and no formatting live
here.
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from .errors import LatentcheckError, LatentcheckWarning

__all__ = ["cli", "main"]

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """A LatentcheckError shown as one line on stderr, exit code 2."""

    exit_code = 2


def handle_errors(fn: F) -> F:
    """Turn LatentcheckError into CliError (the one place this happens)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = kwargs.get("debug", False)
        try:
            with warnings.catch_warnings():
                # warnings are part of the report (NOTES / "warnings"); do not print twice
                warnings.simplefilter("ignore", LatentcheckWarning)
                return fn(*args, **kwargs)
        except LatentcheckError as exc:
            if debug:
                raise
            raise CliError(str(exc)) from None

    return cast(F, wrapper)


def write_output(text: str, output: str | None) -> None:
    """Write `text` to `output` (a path, '-' or None for stdout), never half a file."""
    if output is None or output == "-":
        click.echo(text, nl=False)
        return
    target = Path(output)
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise LatentcheckError(f"Cannot write {output}: the directory {directory} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=".latentcheck-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def output_options(fn: F) -> F:
    """Options shared by commands that write a report."""
    for option in reversed(
        [
            click.option(
                "--format",
                "fmt",
                type=click.Choice(["text", "json", "markdown", "html", "metrics"]),
                default="text",
                show_default=True,
                help="Output format.",
            ),
            click.option(
                "-o",
                "--output",
                type=click.Path(dir_okay=False, allow_dash=True),
                default=None,
                help="Write to this file instead of stdout ('-' = stdout).",
            ),
            click.option("--width", type=int, default=100, show_default=True, help="Text width."),
            click.option(
                "--max-dims",
                type=int,
                default=64,
                show_default=True,
                help="Dimensions shown in text tables (the rest are in JSON).",
            ),
            click.option(
                "--fail-on",
                "fail_on",
                multiple=True,
                metavar="EXPR",
                help='Exit 1 if EXPR holds, e.g. "summary.outlier_rate.4 > 0.001" '
                '(repeatable; see README "CI gates").',
            ),
            click.option("--debug", is_flag=True, help="Show tracebacks of errors."),
        ]
    ):
        fn = option(fn)
    return fn


def input_options(fn: F) -> F:
    """Options that say how to read and view the input arrays."""
    for option in reversed(
        [
            click.option(
                "--key",
                default=None,
                help="Array name in .npz/.safetensors/.h5/.zarr/.pt files (group/name if nested).",
            ),
            click.option(
                "--channel-axis",
                type=int,
                default=1,
                show_default=True,
                help="Axis holding the channels (dimensions) of 3-D+ arrays.",
            ),
            click.option(
                "--flatten",
                is_flag=True,
                help="Make every element of a sample a dimension (C*H*W dims).",
            ),
        ]
    ):
        fn = option(fn)
    return fn


def analysis_options(fn: F) -> F:
    """Options of the analysis itself."""
    for option in reversed(
        [
            click.option("--seed", type=int, default=0, show_default=True, help="Random seed."),
            click.option(
                "--test-samples",
                type=int,
                default=5000,
                show_default=True,
                help="Rows (at most) for the univariate tests.",
            ),
            click.option(
                "--sample-size",
                type=int,
                default=None,
                help="Rows kept in the seeded sample (quantiles, negentropy) "
                "[default: 100000 or 64 MiB].",
            ),
            click.option(
                "--alpha", type=float, default=0.05, show_default=True, help="Test level."
            ),
            click.option(
                "--nan",
                type=click.Choice(["omit", "error"]),
                default="omit",
                show_default=True,
                help="Leave rows with NaN/inf out, or refuse them.",
            ),
            click.option(
                "--max-joint-dims",
                type=int,
                default=2048,
                show_default=True,
                help="Skip the O(d^2) joint part above this many dims.",
            ),
            click.option(
                "--joint-samples",
                type=int,
                default=5000,
                show_default=True,
                help="Sample rows for Henze-Zirkler, Doornik-Hansen (Royston: <= 2000).",
            ),
            click.option(
                "--energy-samples",
                type=int,
                default=500,
                show_default=True,
                help="Sample rows for the energy test.",
            ),
            click.option(
                "--energy-resamples",
                type=int,
                default=99,
                show_default=True,
                help="Monte-Carlo replicates of the energy test.",
            ),
            click.option(
                "--mcd-samples",
                type=int,
                default=1000,
                show_default=True,
                help="Sample rows for MinCovDet (runs with >= 20 rows per dimension).",
            ),
            click.option(
                "--top-rows",
                type=int,
                default=10,
                show_default=True,
                help="Rows with the largest Mahalanobis distances to list.",
            ),
            click.option(
                "--active-threshold",
                type=float,
                default=0.01,
                show_default=True,
                help="Posterior: active unit when Var_x(mu_j) exceeds this.",
            ),
            click.option(
                "--collapse-threshold",
                type=float,
                default=0.01,
                show_default=True,
                help="Posterior: collapsed when the rate is below this (nats).",
            ),
            click.option(
                "--mixture-samples",
                type=int,
                default=2048,
                show_default=True,
                help="Posterior: inputs in the mixture estimate of I(x;z).",
            ),
            click.option(
                "--assume-scale",
                type=float,
                default=None,
                help="Check a normalisation (z - shift) * scale your pipeline applies.",
            ),
            click.option(
                "--assume-shift",
                type=float,
                default=0.0,
                show_default=True,
                help="The shift of that normalisation.",
            ),
            click.option("--chunk-rows", type=int, default=None, help="Rows per chunk."),
            click.option(
                "--threads",
                type=int,
                default=None,
                help="Parallel workers (processes on Linux) [default: the cores, at most 8].",
            ),
            click.option(
                "--progress/--no-progress",
                default=None,
                help="Progress bar on stderr [default: when stderr is a terminal].",
            ),
        ]
    ):
        fn = option(fn)
    return fn


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="latentcheck")
def cli() -> None:
    """Report what autoencoder latents look like: KL to N(0,1), Gaussianity, outliers.

    \b
    latentcheck report latents.npy
    latentcheck report latents.npy --format json -o report.json
    latentcheck report posterior.npz
    latentcheck compare ckpt_a.npy ckpt_b.npy
    """


def _fail(report_dict: dict[str, Any], expressions: Sequence[str]) -> list[str]:
    """Return the --fail-on expressions that hold."""
    from .gates import evaluate

    return [e for e in expressions if evaluate(e, report_dict)]


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.argument("inputs", nargs=-1, type=click.Path())
@click.option("--mu", multiple=True, metavar="PATH", help="Posterior means (files or globs).")
@click.option("--logvar", multiple=True, metavar="PATH", help="Posterior log-variances.")
@click.option("--std", multiple=True, metavar="PATH", help="Posterior standard deviations.")
@click.option("--var", multiple=True, metavar="PATH", help="Posterior variances.")
@click.option(
    "--vae-config",
    type=click.Path(dir_okay=False),
    default=None,
    help="Check a VAE config (diffusers config.json, JSON/YAML with scaling_factor, "
    "shift_factor, latents_mean, latents_std) against the latents.",
)
@click.option(
    "--emit-config",
    is_flag=True,
    help="Print the fitted scaling_factor, shift_factor, latents_mean, latents_std (JSON).",
)
@input_options
@analysis_options
@output_options
@handle_errors
def report(
    inputs: tuple[str, ...],
    mu: tuple[str, ...],
    logvar: tuple[str, ...],
    std: tuple[str, ...],
    var: tuple[str, ...],
    vae_config: str | None,
    emit_config: bool,
    fmt: str,
    output: str | None,
    width: int,
    max_dims: int,
    fail_on: tuple[str, ...],
    debug: bool,
    key: str | None,
    channel_axis: int,
    flatten: bool,
    **analysis: Any,
) -> None:
    """Describe a data set of latents: per-dimension, joint and practical statistics.

    INPUTS are .npy/.npz files or globs, read as one data set (samples on axis 0). An
    .npz holding mu and logvar (or std, var) by name is read as a posterior; so are
    --mu with --logvar (or --std, --var), with INPUTS then taken as z.

    \b
    latentcheck report latents.npy
    latentcheck report shards/*.npy --format json -o report.json
    latentcheck report posterior.npz
    latentcheck report --mu mu.npy --logvar logvar.npy
    latentcheck report latents.npy --fail-on "summary.outlier_rate.4 > 0.001"
    """
    from .analysis import analyze

    if not inputs and not (mu or logvar or std or var):
        raise click.UsageError("Give at least one input file (e.g. latents.npy) or --mu")
    from . import vaeconfig

    cfg = vaeconfig.load_vae_config(vae_config) if vae_config else None  # before the work
    rep = analyze(
        list(inputs) or None,
        mu=list(mu) or None,
        logvar=list(logvar) or None,
        std=list(std) or None,
        var=list(var) or None,
        key=key,
        channel_axis=channel_axis,
        flatten=flatten,
        **analysis,
    )
    if cfg is not None:
        rep = vaeconfig.check_vae_config(rep, cfg)
    if emit_config:
        write_output(vaeconfig.emit_config(rep), output)
        return
    from .render import render

    # a bad expression stops here, before any output (no dict to build without one: 3 ms)
    held = _fail(rep.to_dict(), fail_on) if fail_on else []
    write_output(render(rep, fmt, width=width, max_dims=max_dims), output)
    for expr in held:
        click.echo(f"latentcheck: --fail-on condition holds: {expr}", err=True)
    if held:
        sys.exit(1)


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.argument("inputs", nargs=-1, type=click.Path())
@click.option(
    "--correction",
    type=click.Choice(["holm", "bh"]),
    default="holm",
    show_default=True,
    help="Correction across dimensions: Holm (family-wise) or Benjamini-Hochberg (FDR).",
)
@click.option(
    "--n-permutations",
    type=int,
    default=199,
    show_default=True,
    help="Permutations of the joint energy test.",
)
@click.option(
    "--joint-test-samples",
    type=int,
    default=4000,
    show_default=True,
    help="Rows per input for the joint energy test.",
)
@click.option(
    "--min-shift", type=float, default=0.05, show_default=True, help="Effect: |d mean| / std."
)
@click.option(
    "--min-log-std-ratio", type=float, default=0.05, show_default=True, help="Effect: |ln s ratio|."
)
@click.option(
    "--min-wasserstein", type=float, default=0.05, show_default=True, help="Effect: W1 / std."
)
@click.option(
    "--min-kl-delta", type=float, default=0.01, show_default=True, help="Effect: |d kl| (nats)."
)
@input_options
@analysis_options
@output_options
@handle_errors
def compare(
    inputs: tuple[str, ...],
    fmt: str,
    output: str | None,
    width: int,
    max_dims: int,
    fail_on: tuple[str, ...],
    debug: bool,
    **options: Any,
) -> None:
    """Compare latents or saved reports with the first input: what changed, and where.

    INPUTS are two or more latent files (each read as `report` reads it; quote a glob to make
    shards one input) or JSON reports saved by `latentcheck report`. --test-samples sets the
    rows per input of the per-dimension tests (default 20000 here).

    \b
    latentcheck compare ckpt_a.npy ckpt_b.npy
    latentcheck compare old_report.json new.npy --format json -o diff.json
    latentcheck compare a.npy b.npy --fail-on "count(comparisons.0.moved_dims.*) > 0"
    """
    from click.core import ParameterSource

    from .comparison import compare as compare_inputs

    if len(inputs) < 2:
        raise click.UsageError("Give at least two inputs to compare (e.g. a.npy b.npy)")
    ctx = click.get_current_context()
    if ctx.get_parameter_source("test_samples") is ParameterSource.DEFAULT:
        options.pop("test_samples")  # compare's own default applies, not report's
    result = compare_inputs(*inputs, **options)
    from .render import render

    # a bad expression stops here, before any output
    held = _fail(result.to_dict(), fail_on) if fail_on else []
    write_output(render(result, fmt, width=width, max_dims=max_dims), output)
    for expr in held:
        click.echo(f"latentcheck: --fail-on condition holds: {expr}", err=True)
    if held:
        sys.exit(1)


def main() -> None:
    """Run the CLI (the ``latentcheck`` console script)."""
    cli(prog_name="latentcheck")
