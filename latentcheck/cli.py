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
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import click

from .cli_flags import (
    COMPARE_ANALYSIS_FLAGS,
    COMPARE_FLAGS,
    PROFILE_FLAGS,
    analysis_options,
    click_option,
    input_options,
    options_of,
)
from .errors import LatentcheckError, LatentcheckWarning
from .io.output import check_target, printable, write_output
from .model.base import created_at
from .options import (
    ANALYSIS_OPTIONS,
    COMPARE_OPTIONS,
    AnalysisOptions,
    CompareOptions,
)

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
                # numpy's floating-point RuntimeWarnings (overflow in a sum of 1e308s) are
                # no message for a user: what they mean is an error line or a report note
                warnings.simplefilter("ignore", RuntimeWarning)
                return fn(*args, **kwargs)
        except LatentcheckError as exc:
            if debug:
                raise
            raise CliError(printable(str(exc))) from None

    return cast(F, wrapper)


def _check_output(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Refuse an -o target that cannot be written before any work is done."""
    try:
        return check_target(value)
    except LatentcheckError as exc:
        raise click.BadParameter(printable(str(exc)), ctx, param) from None


class _Group(click.Group):
    """The command group, with one-line usage errors and Ctrl-C as exit 130 (issue 20).

    click prints a usage block of 3-13 lines for a usage error and exits 1 on Ctrl-C; the
    README promises one line on stderr (exit 2) and the shell's 128 + SIGINT for Ctrl-C.
    """

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        own = {"prog_name": prog_name, "complete_var": complete_var, **extra}
        if not standalone_mode:
            return super().main(args, standalone_mode=False, **own)
        try:
            rv = super().main(args, standalone_mode=False, **own)
        except click.UsageError as exc:
            if "\n" in exc.format_message():  # `latentcheck` alone: the help, as click shows it
                click.echo(exc.format_message(), err=True)
                sys.exit(exc.exit_code)
            cmd = exc.ctx.command_path if exc.ctx is not None else "latentcheck"
            hint = f" (see '{cmd} --help')"
            click.echo(f"Error: {printable(exc.format_message())}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except (click.Abort, KeyboardInterrupt):
            click.echo("latentcheck: interrupted", err=True)
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)


def output_options(fn: F) -> F:
    """Options shared by commands that write a report."""
    for option in reversed(
        [
            click.option(
                "--format",
                "fmt",
                type=click.Choice(["text", "json", "markdown", "html", "metrics"]),
                default=None,
                help="Output format [default: from -o's suffix (.json .md .html .txt), else text].",
            ),
            click.option(
                "-o",
                "--output",
                type=str,
                default=None,
                callback=_check_output,
                help="Write to this file instead of stdout ('-' = stdout).",
            ),
            click.option(
                "--width",
                type=click.IntRange(min=1),
                default=None,
                help="Text width [default: the terminal's when stdout is one, else 100].",
            ),
            click.option(
                "--max-dims",
                type=click.IntRange(min=0),
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


# ---------------------------------------------------------------------------------------
# the verdict's gates and the checks made before any work (issue 16)
# ---------------------------------------------------------------------------------------

#: output suffix -> format, when --format is not given
SUFFIX_FORMATS = {
    ".json": "json",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".txt": "text",
}


def verdict_options(*, quiet: bool) -> Callable[[F], F]:
    """Options on the verdict: gate on its warnings, accept few rows, print it alone (-q)."""

    def decorate(fn: F) -> F:
        for option in reversed(_verdict_option_list(quiet)):
            fn = option(fn)
        return fn

    return decorate


def _verdict_option_list(quiet: bool) -> list[Callable[[F], F]]:
    """Return the click options of :func:`verdict_options`."""
    return [
        click.option(
            "--fail-on-warn",
            is_flag=True,
            help="Exit 1 if any finding of the verdict is a warn (its code and dims are "
            "printed on stderr).",
        ),
        click_option(ANALYSIS_OPTIONS["allow_few_rows"]),
    ] + (
        [click.option("-q", "--quiet", is_flag=True, help="Text output: print the verdict alone.")]
        if quiet
        else []
    )


def preflight(fmt: str | None, output: str | None, *, command: str) -> str:
    """Return the output format after checking, before any analysis, that it can be written.

    The format comes from `output`'s suffix when `fmt` is None; HTML without matplotlib, a
    format `command` does not offer, and HTML to a terminal are refused at once (exit 2)
    instead of after minutes of work.
    """
    # a missing directory, a directory and an empty name were refused by -o's callback
    # (`_output.check_target`) before this runs
    created_at()  # a malformed SOURCE_DATE_EPOCH is refused now, not after the analysis
    to_file = output is not None and output != "-"
    if fmt is None:
        suffix = os.path.splitext(str(output))[1].lower()
        fmt = SUFFIX_FORMATS.get(suffix, "text") if to_file else "text"
    if fmt == "html":
        if command == "compare":
            raise LatentcheckError(
                "HTML output is available for reports, not comparisons; use --format text, "
                "json or markdown"
            )
        from .render.htmlreport import require_matplotlib

        require_matplotlib()
        if not to_file and stdout_is_terminal():
            raise LatentcheckError(
                "HTML is a page, not terminal output: write it to a file with -o report.html"
            )
    return fmt


def stdout_is_terminal() -> bool:
    """Return True if stdout is a terminal (one place, so tests can stand in for one)."""
    # stdout is None when the shell closed it (`>&-`); the write then fails with one line
    return sys.stdout is not None and sys.stdout.isatty()


def text_width(width: int | None) -> int:
    """Return the text width: `width` if given, else the terminal's when stdout is one."""
    if width is not None:
        return width
    if stdout_is_terminal():
        import shutil

        return max(60, min(160, shutil.get_terminal_size((100, 24)).columns))
    return 100


def gate(report_dict: dict[str, Any], expressions: Sequence[str], fail_on_warn: bool) -> list[str]:
    """Return one stderr line per gate that holds, with the value that made it hold."""
    from .gates import check, findings_gate

    lines = []
    for e in expressions:
        held, value = check(e, report_dict)
        if held:
            lines.append(f"latentcheck: --fail-on condition holds: {e} ({value})")
    if fail_on_warn:
        lines += [f"latentcheck: --fail-on-warn: {w}" for w in findings_gate(report_dict)]
    return lines


@click.group(cls=_Group, context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="latentcheck")
def cli() -> None:
    """Report what autoencoder latents look like: KL to N(0,1), Gaussianity, outliers.

    \b
    latentcheck report latents.npy
    latentcheck report latents.npy --format json -o report.json
    latentcheck report posterior.npz
    latentcheck compare ckpt_a.npy ckpt_b.npy
    """


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
@click.option(
    "--scheduler",
    default=None,
    metavar="local:N|ADDRESS",
    help="Run the passes on Dask: a LocalCluster of N processes, or a scheduler address "
    "(needs latentcheck[dask]).",
)
@input_options
@analysis_options
@output_options
@verdict_options(quiet=True)
@handle_errors
def report(
    inputs: tuple[str, ...],
    mu: tuple[str, ...],
    logvar: tuple[str, ...],
    std: tuple[str, ...],
    var: tuple[str, ...],
    vae_config: str | None,
    emit_config: bool,
    scheduler: str | None,
    fmt: str | None,
    output: str | None,
    width: int | None,
    max_dims: int,
    fail_on: tuple[str, ...],
    fail_on_warn: bool,
    quiet: bool,
    debug: bool,
    key: str | None,
    channel_axis: int,
    flatten: bool,
    per_sample: bool | None,
    storage_options: dict[str, Any] | None,
    **analysis: Any,
) -> None:
    """Describe a data set of latents: per-dimension, joint and practical statistics.

    INPUTS are .npy/.npz files or globs, read as one data set (samples on axis 0). An
    .npz holding mu and logvar (or std, var) by name is read as a posterior; so are
    --mu with --logvar (or --std, --var), with INPUTS then taken as z. Saved profiles
    (.lcprof, from `latentcheck profile`) are merged and reported.

    \b
    latentcheck report latents.npy
    latentcheck report shards/*.npy --format json -o report.json
    latentcheck report posterior.npz
    latentcheck report --mu mu.npy --logvar logvar.npy
    latentcheck report latents.npy --fail-on "summary.outlier_rate.4 > 0.001"
    latentcheck report latents.npy --fail-on-warn -q
    latentcheck report shard0.lcprof shard1.lcprof
    """
    from .analysis.api import analyze

    if not inputs and not (mu or logvar or std or var):
        raise click.UsageError("Give at least one input file (e.g. latents.npy) or --mu")
    fmt = preflight(fmt, output, command="report")

    from . import vaeconfig

    cfg = vaeconfig.load_vae_config(vae_config) if vae_config else None  # before the work
    options = AnalysisOptions(
        key=key, channel_axis=channel_axis, flatten=flatten, per_sample=per_sample, **analysis
    )
    from .engine.cluster import scheduler_executor

    with scheduler_executor(scheduler) as executor:
        rep = analyze(
            list(inputs) or None,
            mu=list(mu) or None,
            logvar=list(logvar) or None,
            std=list(std) or None,
            var=list(var) or None,
            options=options,
            storage_options=storage_options,
            executor=executor,
        )
    if cfg is not None:
        rep = vaeconfig.check_vae_config(rep, cfg)
    if emit_config:
        write_output(vaeconfig.emit_config(rep), output)
        return
    from .render import render

    # a bad expression stops here, before any output (no dict to build without one)
    held = gate(rep.to_dict(), fail_on, fail_on_warn) if fail_on or fail_on_warn else []
    if quiet and fmt == "text":
        from .render.textreport import render_verdict

        text = render_verdict(rep, width=text_width(width))
    else:
        text = render(rep, fmt, width=text_width(width), max_dims=max_dims)
    write_output(text, output)
    for line in held:
        click.echo(line, err=True)
    if held:
        sys.exit(1)


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.argument("inputs", nargs=-1, type=click.Path())
@click.option(
    "--mu",
    multiple=True,
    metavar="PATH",
    help="Posterior means of one more input (a file, or a quoted glob of shards); "
    "repeat for more, each with its --logvar (or --std, --var) in the same order.",
)
@click.option("--logvar", multiple=True, metavar="PATH", help="Log-variances of each --mu.")
@click.option("--std", multiple=True, metavar="PATH", help="Standard deviations of each --mu.")
@click.option("--var", multiple=True, metavar="PATH", help="Variances of each --mu.")
@options_of(COMPARE_FLAGS, COMPARE_OPTIONS)
@click.option(
    "--test-samples",
    "test_samples",
    type=int,
    default=None,
    help="Deprecated name of --dim-test-samples.",
)
@input_options
@options_of(COMPARE_ANALYSIS_FLAGS, COMPARE_OPTIONS)
@output_options
@verdict_options(quiet=False)
@handle_errors
def compare(
    inputs: tuple[str, ...],
    mu: tuple[str, ...],
    logvar: tuple[str, ...],
    std: tuple[str, ...],
    var: tuple[str, ...],
    fmt: str | None,
    output: str | None,
    width: int | None,
    max_dims: int,
    fail_on: tuple[str, ...],
    fail_on_warn: bool,
    debug: bool,
    test_samples: int | None,
    storage_options: dict[str, Any] | None,
    **options: Any,
) -> None:
    """Compare latents or saved reports with the first input: what changed, and where.

    INPUTS are latent files (each read as `report` reads it; quote a glob to make shards
    one input; a posterior .npz is read as a posterior) or JSON reports saved by
    `latentcheck report`. Each --mu with its --logvar (or --std, --var) is one more input,
    after INPUTS, in the order given. Two or more inputs in all.

    \b
    latentcheck compare ckpt_a.npy ckpt_b.npy
    latentcheck compare old_report.json new.npy --format json -o diff.json
    latentcheck compare a.npy b.npy --fail-on "count(comparisons.0.moved_dims.*) > 0"
    latentcheck compare --mu mu_a.npy --logvar lv_a.npy --mu mu_b.npy --logvar lv_b.npy
    """
    from .comparison.api import compare as compare_inputs

    posteriors = posterior_inputs(mu, logvar, std, var)
    if len(inputs) + len(posteriors) < 2:
        raise click.UsageError("Give at least two inputs to compare (e.g. a.npy b.npy)")
    fmt = preflight(fmt, output, command="compare")
    if test_samples is not None:
        if options["dim_test_samples"] != COMPARE_OPTIONS["dim_test_samples"].default:
            raise click.UsageError("Give --dim-test-samples only (--test-samples is its old name)")
        click.echo(
            "latentcheck: compare's --test-samples is deprecated; use --dim-test-samples "
            "(rows per input for the per-dimension tests)",
            err=True,
        )
        options["dim_test_samples"] = test_samples
    result = compare_inputs(
        *inputs,
        *posteriors,
        options=CompareOptions(**options),
        storage_options=storage_options,
    )
    from .render import render

    # a bad expression stops here, before any output
    held = gate(result.to_dict(), fail_on, fail_on_warn) if fail_on or fail_on_warn else []
    write_output(render(result, fmt, width=text_width(width), max_dims=max_dims), output)
    for line in held:
        click.echo(line, err=True)
    if held:
        sys.exit(1)


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option(
    "-o", "--output", required=True, callback=_check_output, help="The .lcprof file to write."
)
@click.option(
    "--row-offset",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Global row id of the first row: the rows of the shards before these inputs.",
)
@click.option(
    "--sketch-k",
    type=click.IntRange(10, 65535),
    default=1000,
    show_default=True,
    help="t-digest compression of the per-dimension sketches (about 20 bytes x k each).",
)
@options_of(PROFILE_FLAGS, ANALYSIS_OPTIONS)
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@input_options
@handle_errors
def profile(inputs: tuple[str, ...], output: str, debug: bool, **options: Any) -> None:
    """Save a mergeable profile of latents (.lcprof) to report later with others.

    INPUTS are read as `report` reads them (one data set). Profile each shard of a data
    set with --row-offset N (N = rows of the 2-D view before it) so that the merged
    report's seeded sample equals `report`'s on all shards; files given together need none.

    \b
    latentcheck profile shard0.npy -o shard0.lcprof
    latentcheck profile shard1.npy --row-offset 100000 -o shard1.lcprof
    latentcheck report shard0.lcprof shard1.lcprof
    """
    from .profiles import profile as make_profile

    make_profile(list(inputs), **options).save(output)


def posterior_inputs(
    mu: Sequence[str], logvar: Sequence[str], std: Sequence[str], var: Sequence[str]
) -> list[Any]:
    """Return compare's posterior inputs: the k-th --mu with the k-th spread.

    One spread option for every --mu, as many of it as of --mu (click cannot keep the
    order across different options, so mixing --logvar and --std would pair by guess).
    """
    from .comparison.api import Posterior

    spreads = {k: v for k, v in (("logvar", logvar), ("std", std), ("var", var)) if v}
    if not mu and not spreads:
        return []
    if len(spreads) != 1:
        given = ", ".join(f"--{k}" for k in spreads) or "none"
        raise click.UsageError(
            f"Each --mu needs one spread, the same option for every --mu: --logvar, --std "
            f"or --var (given: {given})"
        )
    kind, paths = next(iter(spreads.items()))
    if len(paths) != len(mu):
        raise click.UsageError(
            f"{len(mu)} --mu but {len(paths)} --{kind}: give one --{kind} per --mu, in order"
        )
    return [Posterior(m, **{kind: p}) for m, p in zip(mu, paths, strict=True)]


def main() -> None:
    """Run the CLI (the ``latentcheck`` console script)."""
    cli(prog_name="latentcheck")
