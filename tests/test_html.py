"""The HTML report: well formed, self-contained, escaped, and its plots show the right numbers."""

from __future__ import annotations

import base64
import dataclasses
import html
import re
import sys
from html.parser import HTMLParser

import numpy as np
import pytest

import latentcheck as lc
from latentcheck.cli import cli
from latentcheck.errors import InputError
from latentcheck.model.report import HISTOGRAM_EDGES
from latentcheck.render import FORMATS, htmlplots, htmlreport, render
from latentcheck.render.textreport import fmt, pct, pval

pytest.importorskip("matplotlib")

MISSING = "HTML output needs matplotlib: pip install 'latentcheck[plots]'"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


class TagChecker(HTMLParser):
    """Check that every opened tag is closed, in order; collect img sources."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.images: list[str] = []
        self.ids: list[str] = []
        self.doctype = False

    def handle_decl(self, decl: str) -> None:
        self.doctype = self.doctype or decl.lower() == "doctype html"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "img":
            self.images.append(attr.get("src") or "")
        if "id" in attr:
            self.ids.append(str(attr["id"]))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def check_html(page: str) -> TagChecker:
    """Parse the page and fail on unbalanced tags; return the parser."""
    checker = TagChecker()
    checker.feed(page)
    checker.close()
    assert checker.doctype, "no <!DOCTYPE html>"
    assert not checker.errors, checker.errors[:5]
    assert not checker.stack, f"unclosed: {checker.stack}"
    for src in checker.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    return checker


def capture_figures(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """Record every figure the renderer embeds, keyed by its alt text."""
    figures: dict[str, object] = {}
    original = htmlplots.figure_html

    def spy(fig, dpi, alt, caption):
        figures[alt] = fig
        return original(fig, dpi, alt, caption)

    monkeypatch.setattr(htmlplots, "figure_html", spy)
    return figures


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((500, 4))
    x[:, 1] = x[:, 1] ** 3  # heavy tails: values beyond 5 std
    x[:, 2] = 2.0 + 3.0 * x[:, 2]  # scale and shift off the prior
    x[:, 3] = 0.6 * x[:, 3] + 0.8 * x[:, 0]  # correlated with dim 0
    return x


@pytest.fixture(scope="module")
def report(data):
    return lc.analyze(data, seed=1)


@pytest.fixture(scope="module")
def rendered(report):
    """The page and the figures it embeds (rendered once for the module)."""
    with pytest.MonkeyPatch.context() as mp:
        figures = capture_figures(mp)
        page = htmlreport.render_report(report, dpi=30)
    return page, figures


def test_page_is_well_formed_and_self_contained(rendered):
    page, figures = rendered
    checker = check_html(page)
    # histograms, Q-Q, KL bars, eigen-spectrum
    assert len(checker.images) == 4 == len(figures)
    assert {"verdict", "summary", "marginals", "dims", "joint", "settings"} <= set(checker.ids)
    assert "posterior" not in checker.ids and "spatial" not in checker.ids
    for external in ('src="http', "href=", "<script", "<link", "url("):
        assert external not in page


def test_verdict_and_summary_numbers_as_the_text_report_has_them(report, rendered):
    page, _ = rendered
    text = report.to_text()
    for finding in report.summary.findings:
        assert html.escape(finding.text) in page
    assert page.count('<span class="status">WARN</span>') == sum(
        f.status == "warn" for f in report.summary.findings
    )
    sm, jt = report.summary, report.joint
    numbers = [
        fmt(sm.kl_gauss_sum),
        fmt(sm.negentropy_sum),
        fmt(sm.kl_marginal_sum),
        fmt(jt.kl_gauss),
        fmt(jt.total_correlation),
        fmt(jt.effective_dims),
        fmt(jt.condition_number),
        fmt(sm.normalization.shift, 4),
        fmt(sm.normalization.scale, 4),
        *(pct(sm.outlier_rate[k], 2) for k in sm.outlier_rate),
        *(pct(sm.prior_outlier_rate[k], 2) for k in sm.outlier_rate),
        *(pval(t.pvalue) for t in jt.tests.values() if not t.reason),
    ]
    for number in numbers:
        assert number in text, number  # the text report's formatting ...
        assert html.escape(number) in page, number  # ... is the page's
    table = page[page.index('<section id="dims">') : page.index('<section id="joint">')]
    for j in range(4):
        assert f"<tr><td>{j}</td><td>{fmt(report.dims.mean[j])}</td>" in table


def test_histograms_are_densities_of_the_standardised_values(data, report, rendered):
    _, figures = rendered
    fig = figures["Per-dimension histograms against N(0,1)"]
    edges = np.asarray(HISTOGRAM_EDGES)
    assert report.settings.sample_rows == data.shape[0]  # the sample holds every row
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 4
    for j, ax in enumerate(panels):
        assert ax.get_title().startswith(f"dim {j}\n")
        z = (data[:, j] - data[:, j].mean()) / data[:, j].std()  # ddof 0, as the report
        counts = np.histogram(z, bins=edges)[0]
        # density per unit std over all n rows, under- and overflow included in n
        expected = counts / (z.size * 0.25)
        (stairs,) = ax.patches
        values, got_edges, _ = stairs.get_data()
        np.testing.assert_allclose(got_edges, edges)
        np.testing.assert_allclose(values, expected, rtol=1e-12)
        corner = {t.get_text() for t in ax.texts}
        n_over = int((z > 5).sum())
        assert (f">5σ: {n_over}" in corner) == (n_over > 0)
        curve = ax.lines[0]
        np.testing.assert_allclose(
            curve.get_ydata(), np.exp(-0.5 * curve.get_xdata() ** 2) / np.sqrt(2 * np.pi)
        )
    assert int((np.abs((data[:, 1] - data[:, 1].mean()) / data[:, 1].std()) > 5).sum()) > 0


def test_qq_lines_are_standardised_quantiles(data, report, rendered):
    _, figures = rendered
    (ax,) = figures["Q-Q plot of standardised quantiles against N(0,1)"].axes
    levels = np.array(report.settings.quantile_levels)
    # N(0,1) quantiles from a different source than the renderer's statistics.NormalDist
    from scipy.stats import norm

    lines = {ln.get_label(): ln for ln in ax.lines}
    assert "identity (Gaussian)" in lines
    for j in range(4):
        (label,) = [k for k in lines if k.startswith(f"dim {j} ")]
        x = data[:, j]
        expected = (np.quantile(x, levels) - x.mean()) / x.std()
        np.testing.assert_allclose(lines[label].get_xdata(), norm.ppf(levels), rtol=1e-9)
        np.testing.assert_allclose(lines[label].get_ydata(), expected, rtol=1e-9)


def test_kl_bars_stack_kl_gauss_and_negentropy(data, report, rendered):
    _, figures = rendered
    (ax,) = figures["Per-dimension KL bars"].axes
    gauss, negent = ax.containers
    m, s = data.mean(0), data.std(0)
    kl_gauss = 0.5 * (m**2 + s**2 - 1.0 - np.log(s**2))  # closed form, written anew here
    np.testing.assert_allclose([b.get_height() for b in gauss], kl_gauss, rtol=1e-9)
    np.testing.assert_allclose([b.get_y() for b in negent], kl_gauss, rtol=1e-9)
    tops = [b.get_y() + b.get_height() for b in negent]
    np.testing.assert_allclose(tops, report.dims.kl_marginal, rtol=1e-12)
    assert ax.get_ylabel() == "nats"


def test_eigen_spectrum_marks_the_participation_ratio(data, rendered):
    _, figures = rendered
    (ax,) = figures["Covariance eigen-spectrum"].axes
    assert ax.get_yscale() == "log"
    eig = np.linalg.eigvalsh(np.cov(data, rowvar=False))[::-1]
    spectrum, _prior, marker = ax.lines
    # the covariance normalisation (ddof) scales every eigenvalue alike
    got = spectrum.get_ydata()
    np.testing.assert_allclose(got / got.sum(), eig / eig.sum(), rtol=1e-9)
    ratio = eig.sum() ** 2 / (eig**2).sum()  # participation ratio, ddof-free
    np.testing.assert_allclose(marker.get_xdata(), [ratio, ratio], rtol=1e-9)
    assert "effective dims" in marker.get_label()


def test_source_names_are_escaped(report, monkeypatch):
    monkeypatch.setattr(htmlplots, "figure_html", lambda fig, dpi, alt, caption: "")
    evil = "<script>alert('x')</script>&.npy"
    bad = dataclasses.replace(report, input=dataclasses.replace(report.input, sources=(evil,)))
    page = htmlreport.render_report(bad, dpi=30)
    check_html(page)
    assert "<script" not in page
    assert html.escape(evil) in page


def test_max_dims_shows_the_largest_kl_marginal(monkeypatch):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((300, 7)) * np.array([1.0, 2.0, 1.0, 0.5, 1.0, 3.0, 1.0])
    rep = lc.analyze(x, seed=0)
    figures = capture_figures(monkeypatch)
    page = htmlreport.render_report(rep, max_dims=3, dpi=30)
    check_html(page)
    top = sorted(np.argsort(-rep.dims.kl_marginal)[:3])
    assert set(top) == {1, 3, 5}
    assert "3 of 7 dimensions shown: those with the largest kl_marginal" in page
    table = page[page.index('<section id="dims">') : page.index('<section id="joint">')]
    assert re.findall(r"<tr><td>(\d+)</td>", table) == [str(j) for j in top]
    panels = [ax for ax in figures["Per-dimension histograms against N(0,1)"].axes]
    titles = [ax.get_title().split("\n")[0] for ax in panels if ax.get_visible()]
    assert titles == [f"dim {j}" for j in top]


def test_posterior_block_and_rate_bars(monkeypatch):
    rng = np.random.default_rng(11)
    mu = rng.standard_normal((400, 3)) * np.array([1.0, 0.3, 0.0])
    logvar = np.full((400, 3), -1.0) + 0.1 * rng.standard_normal((400, 3))
    logvar[:, 2] = 0.0  # a collapsed dimension
    rep = lc.analyze(mu=mu, logvar=logvar, seed=0, mixture_samples=200)
    figures = capture_figures(monkeypatch)
    page = htmlreport.render_report(rep, dpi=30)
    checker = check_html(page)
    assert "posterior" in checker.ids and len(checker.images) == 4
    assert (
        f"{fmt(rep.posterior['rate_nats'])} nats = {fmt(rep.posterior['rate_bits'])} bits" in page
    )
    _top, bottom = figures["Per-dimension KL bars"].axes
    mean_part, var_part = bottom.containers
    var = np.exp(logvar)
    # the analytic rate per dimension, split as ½μ² + ½(σ² − 1 − ln σ²), averaged over inputs
    np.testing.assert_allclose(
        [b.get_height() for b in mean_part], (0.5 * mu**2).mean(0), rtol=1e-6, atol=1e-12
    )
    np.testing.assert_allclose(
        [b.get_height() for b in var_part], (0.5 * (var - 1.0 - logvar)).mean(0), rtol=1e-6
    )
    assert "rate" in page[page.index('<section id="dims">') : page.index('<section id="joint">')]


def test_conv_latents_get_spatial_block_and_maps(monkeypatch):
    rng = np.random.default_rng(5)
    z = rng.standard_normal((60, 3, 4, 5))
    z[:, 1] += np.linspace(-1.0, 1.0, 5)  # a mean that varies along W
    rep = lc.analyze(z, seed=0)
    figures = capture_figures(monkeypatch)
    page = htmlreport.render_report(rep, dpi=30)
    checker = check_html(page)
    assert "spatial" in checker.ids
    assert len(checker.images) == 6  # 4 plots + mean and std maps
    for name, expected in (("mean", z.mean(0)), ("std", z.std(0))):
        fig = figures[f"Per-channel {name} maps"]
        images = [ax.images[0] for ax in fig.axes if ax.images]
        assert len(images) == 3
        for c, im in enumerate(images):
            np.testing.assert_allclose(np.asarray(im.get_array()), expected[c], rtol=1e-9)
    assert "lag-1 r (H)" in page and "lag-1 r (W)" in page


def test_cli_writes_html_file(runner, latents_file, tmp_path):
    x = np.random.default_rng(2).standard_normal((300, 3)).astype(np.float32)
    npy = latents_file(x, name="z.npy")
    out = tmp_path / "report.html"
    res = runner.invoke(cli, ["report", str(npy), "--format", "html", "-o", str(out)])
    assert res.exit_code == 0, res.stderr
    assert res.stdout == ""
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert len(check_html(page).images) == 4
    assert "html" in FORMATS


def test_compare_refuses_html(runner, latents_file):
    rng = np.random.default_rng(4)
    a = latents_file(rng.standard_normal((200, 2)), name="a.npy")
    b = latents_file(rng.standard_normal((200, 2)), name="b.npy")
    res = runner.invoke(cli, ["compare", str(a), str(b), "--format", "html"])
    assert res.exit_code == 2
    assert "HTML output is available for reports, not comparisons" in res.stderr
    assert "Traceback" not in res.stderr


def test_render_dispatches_html(report):
    class AComparison:  # the registry files results by their class's render_kind
        render_kind = "comparison"

    with pytest.raises(InputError, match="available for reports, not comparisons"):
        render(AComparison(), "html")
    with pytest.raises(InputError, match=r"`max_dims` must be at least 1, got 0"):
        htmlreport.render_report(report, max_dims=0)


def test_missing_matplotlib_is_an_input_error(report, monkeypatch, runner, latents_file):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(InputError, match=re.escape(MISSING)):
        report.to_html()
    npy = latents_file(np.random.default_rng(6).standard_normal((100, 2)), name="z.npy")
    res = runner.invoke(cli, ["report", str(npy), "--format", "html"])
    assert res.exit_code == 2
    assert res.stderr.strip() == f"Error: {MISSING}"


def test_issue_16_findings_show_their_code_and_dims(data, monkeypatch):
    """Each finding's code and dims sit beside its text, as the text report's ``[code]``.

    The dead dimension's kl_gauss is +inf: its KL bar is left out with "inf" at its foot
    (no bar of infinite height, no RuntimeWarning from matplotlib).
    """
    figures = capture_figures(monkeypatch)
    x = data.copy()
    x[:, 3] = 0.0  # a dead dimension: the dead_dims warn names dim 3
    with pytest.warns(lc.DegenerateDimensionWarning, match="zero or near-zero variance"):
        rep = lc.analyze(x, seed=1)
    page = htmlreport.render_report(rep, dpi=20)
    check_html(page)
    verdict = page[page.index('<section id="verdict">') : page.index('<section id="summary">')]
    items = re.findall(r"<li class=\"\w+\">(.*?)</li>", verdict, flags=re.S)
    findings = rep.summary.findings
    assert len(items) == len(findings) and all(f.code for f in findings)
    text = rep.to_text()
    for item, f in zip(items, findings, strict=True):
        assert f"[{f.code}]" in text  # the text report's code ...
        tag = re.search(r'<span class="tag">(.*)</span>$', item)
        assert tag, item
        dims = f" dim{'s' if len(f.dims) > 1 else ''} {', '.join(map(str, f.dims))}"
        assert tag.group(1) == f"<code>{f.code}</code>" + (dims if f.dims else "")
    dead = [f for f in findings if f.code == "dead_dims"]
    assert dead and dead[0].dims == (3,) and dead[0].status == "warn"
    (ax,) = figures["Per-dimension KL bars"].axes
    assert np.isinf(rep.dims.kl_gauss[3])
    assert np.isnan(ax.containers[0][3].get_height())
    assert np.isfinite([b.get_height() for b in ax.containers[0]][:3]).all()
    assert [(t.get_text(), t.get_position()[0]) for t in ax.texts] == [("inf", 3)]
    # many dims: the first 20, then how many more
    many = dataclasses.replace(findings[0], code="scale_spread", dims=tuple(range(25)))
    tag = htmlreport._finding_tag(many)
    shown = ", ".join(map(str, range(20)))
    assert tag == f' <span class="tag"><code>scale_spread</code> dims {shown} and 5 more</span>'
    assert htmlreport._finding_tag(dataclasses.replace(many, code="", dims=())) == ""
