"""HTML and PDF reports: content, self-containment, escaping, browser rendering, atomic writes."""
from __future__ import annotations

import re
import shutil
import subprocess
import types
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
import pytest

from conftest import make_synthetic_results, wis
from qaggstats import report
from qaggstats.errors import DataError, SaveError

HOSTILE = "<script>alert(1)</script>"
HOSTILE_MODEL = "<img src=x onerror=alert(2)>"
SECTIONS = ["Data and formulas", "Base models", "Weights", "Accuracy", "Calibration", "Monotonicity",
            "Diagnostics", "Predictions", "Reproducibility"]
CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def context(synthetic_results):
    return report.build_context(synthetic_results)


@pytest.fixture(scope="module")
def html(context):
    return report.render_html(context)


@pytest.fixture(scope="module")
def hostile_results():
    return make_synthetic_results(response=HOSTILE, feature="x$1", models=("linear", HOSTILE_MODEL, "knn"),
                                  data_name=HOSTILE, with_test=False)


@pytest.fixture(scope="module")
def hostile_html(hostile_results):
    return report.render_html(report.build_context(hostile_results))


# ----------------------------------------------------------------------------- context
def test_key_numbers_are_the_recomputed_scores(synthetic_results, context):
    r = synthetic_results
    agg = wis(r.y, r.q_oof, r.taus)  # recomputed from the arrays, not read from the table
    assert context["key"]["aggregate_wis"] == f"{agg:.2f}"
    linear = wis(r.y, r.Q[:, 0, :], r.taus)
    assert context["key"]["best_model"] == "linear"
    assert context["key"]["vs_best"] == f"{100 * (agg / linear - 1):+.1f}%".replace("-", "−")
    cover = np.mean((r.y >= r.q_oof[:, 0]) & (r.y <= r.q_oof[:, -1]))
    assert context["key"]["coverage"] == f"{100 * cover:.1f}%"


def test_tables_hold_formatted_scores(synthetic_results, context):
    scores = context["scores_table"]
    agg_row = [row for row in scores["rows"] if row["cells"][0]["text"] == "aggregate"][0]
    assert agg_row["cls"] == "highlight"
    assert agg_row["cells"][1]["text"] == context["key"]["aggregate_wis"]
    assert agg_row["cells"][1]["cls"] == "best"  # the aggregate has the lowest WIS here
    # only proper scores are ranked: the narrowest (undercovering) kNN interval is not "best"
    assert [c["cls"] for row in scores["rows"] for c in row["cells"]].count("best") == 1
    weights = context["weights_table"]["rows"]
    w = synthetic_results.weights.query("model == 'forest' and tau == 0.5")["weight"].iloc[0]
    forest = [row for row in weights if row["cells"][0]["text"] == "forest"][0]
    assert forest["cells"][4]["text"] == f"{w:.3f}"
    numbers = [t["number"] for t in (context["na_table"], context["models_table"], context["pinball_table"],
                                     context["weights_table"], context["scores_table"],
                                     context["test_scores_table"], context["comparison_table"])]
    assert numbers == list(range(1, 8))


def test_diagnostics_carry_verdicts(context):
    verdicts = [d["verdict"] for d in context["diagnostics"]]
    assert verdicts[:4] == ["held", "n/a", "held", "held"]
    assert "Proposition 2" in context["diagnostics"][0]["source"]


def test_formatting_helpers():
    assert report.decimals_for([83.108, 1.0]) == 2
    assert report.fmt_num(-0.00103, 4) == "−0.0010"
    assert report.fmt_pct(float("nan")) == "—"
    # prices: four significant digits at least, thousands separated, never e-notation
    assert report.fmt_num(28810.37, report.decimals_for([28810.37, 30125.9])) == "28,810"
    assert report.fmt_num(-1234567.8, 0) == "−1,234,568"


def test_large_scores_get_thousands_separators(synthetic_results):
    scaled = synthetic_results.oof_scores * 100.0  # WIS in the thousands, as for prices
    rows, _ = report._score_rows(scaled, ["wis"], list(synthetic_results.models))
    texts = [row[1]["text"] for row in rows]
    assert all(re.fullmatch(r"\d{1,3}(,\d{3})+", t) for t in texts), texts


def test_formula_columns_match_whole_names_only():
    cols = ["foodexp", "e", "income", "log_income", "x.1"]
    assert report.formula_columns("foodexp ~ income", cols, "foodexp") == ["income"]
    assert report.formula_columns("foodexp ~ np.log(income) + x.1", cols, "foodexp") == ["income", "x.1"]
    assert report.formula_columns("foodexp ~ log_income", cols, "foodexp") == ["log_income"]
    assert report.formula_columns("foodexp ~ .", cols, "foodexp") == ["e", "income", "log_income", "x.1"]


def _with(results, **changes):
    return types.SimpleNamespace(**{**vars(results), **changes})


def test_predictions_figure_along_the_only_predictor_else_by_median(synthetic_results):
    r = synthetic_results
    taus = np.asarray(r.taus)
    # a column named "e" is not "the" feature of "foodexp ~ income" ("e" is in "income")
    one = _with(r, frame=r.frame.assign(e=np.arange(len(r.frame), dtype=float)), formula="foodexp ~ income")
    assert report._single_feature(one)[0] == "income"
    assert report._fan_figure(one, taus, report._Numbering())["caption"].endswith("along income.")
    several = _with(one, formula="foodexp ~ income + e")
    assert report._single_feature(several) == (None, None)
    caption = report._fan_figure(several, taus, report._Numbering())["caption"]
    assert "ordered by their predicted 0.5 quantile" in caption
    conditional = report._conditional_figure(several, taus, (0, taus.size - 1), report._Numbering())
    assert "bins of predicted 0.5 quantile" in conditional["caption"]


# ----------------------------------------------------------------------------- HTML
def test_html_is_self_contained(html):
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, flags=re.I)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", html, flags=re.I)
    assert "@import" not in html and "<link" not in html
    assert html.count("<svg") >= 6
    assert html.count('<img src="data:image/png;base64,') == 1


def test_html_has_sections_numbers_and_captions(html, context):
    for title in SECTIONS:
        assert title in html
    assert f'id="aggregate-wis">{context["key"]["aggregate_wis"]}<' in html
    assert "Figure 7." in html and "Table 9." in html
    assert "Fakoor et al. (2023), Proposition 2" in html
    assert "thead { display: table-header-group; }" in html
    assert 'counter(page) " of " counter(pages)' in html


def test_hostile_names_are_escaped(hostile_html):
    assert HOSTILE not in hostile_html and HOSTILE_MODEL not in hostile_html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in hostile_html
    assert "&lt;img src=x onerror=alert(2)&gt;" in hostile_html
    assert "<script" not in hostile_html.lower() and "<img src=x" not in hostile_html


def test_strict_undefined_fails_loudly(context):
    broken = dict(context)
    del broken["coverage_table"]
    with pytest.raises(jinja2.UndefinedError, match="coverage_table"):
        report.render_html(broken)


def test_template_dir_overrides_single_files(tmp_path, context):
    (tmp_path / "report.css").write_text("body { color: rebeccapurple; }")
    out = report.render_html(context, template_dir=tmp_path)
    assert "rebeccapurple" in out and "Data and formulas" in out  # report.html from the package
    with pytest.raises(SaveError, match="no-such-dir"):
        report.render_html(context, template_dir=tmp_path / "no-such-dir")


# ----------------------------------------------------------------------------- writing
def test_write_html_atomically(tmp_path, synthetic_results, context):
    path = report.write_report(synthetic_results, tmp_path / "fit.html")
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert context["key"]["aggregate_wis"] in path.read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.html"]


def test_failed_replace_leaves_old_file_and_no_temp(tmp_path, synthetic_results, monkeypatch):
    target = tmp_path / "fit.html"
    target.write_text("old report")

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(report.os, "replace", refuse)
    with pytest.raises(SaveError, match=re.escape(str(target))):
        report.write_report(synthetic_results, target)
    assert target.read_text() == "old report"
    assert [p.name for p in tmp_path.iterdir()] == ["fit.html"]


def test_unwritable_paths_raise_save_error(tmp_path, synthetic_results):
    missing = tmp_path / "no" / "such" / "dir" / "fit.html"
    with pytest.raises(SaveError, match=re.escape(str(missing))):
        report.write_report(synthetic_results, missing)
    assert not missing.exists()
    folder = tmp_path / "taken.html"
    folder.mkdir()
    with pytest.raises(SaveError, match="taken.html"):
        report.write_report(synthetic_results, folder)
    assert folder.is_dir() and list(folder.iterdir()) == []
    assert [p.name for p in tmp_path.iterdir()] == ["taken.html"]
    with pytest.raises(SaveError, match=r"unknown suffix '\.docx'"):
        report.write_report(synthetic_results, tmp_path / "fit.docx")


def test_write_reports_builds_the_context_once(tmp_path, synthetic_results, monkeypatch):
    calls = []
    build = report.build_context
    monkeypatch.setattr(report, "build_context", lambda r: calls.append(r) or build(r))
    paths = report.write_reports(synthetic_results, [tmp_path / "a.html", str(tmp_path / "b.htm")])
    assert paths == [tmp_path / "a.html", tmp_path / "b.htm"] and len(calls) == 1
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert report.write_reports(synthetic_results, []) == []


def test_write_reports_checks_every_suffix_before_writing(tmp_path, synthetic_results):
    with pytest.raises(SaveError, match=r"fit\.docx"):
        report.write_reports(synthetic_results, [tmp_path / "fit.html", tmp_path / "fit.docx"])
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- PDF
def test_partial_curves_show_the_predictors_that_move_the_median_most(synthetic_results):
    r = synthetic_results
    taus = np.asarray(r.taus)
    spread = np.linspace(-1.0, 1.0, taus.size)
    frame = r.frame.assign(size=np.arange(len(r.frame)) % 7, region=np.where(np.arange(len(r.frame)) % 3, "a", "b"))
    seen = []

    def predict(rows):
        """A known model: the median moves 0.1 per unit of income, 30 per unit of size."""
        seen.append(rows.copy())
        median = 0.1 * rows["income"].to_numpy() + 30.0 * rows["size"].to_numpy()
        return pd.DataFrame(median[:, None] + 50 * spread, index=rows.index)

    several = _with(r, frame=frame, formula="foodexp ~ income + size + C(region)", predict=predict)
    fig = report._partial_figure(several, taus, report._Numbering(), panels=1)
    assert "the 1 of 2 numeric predictors" in fig["caption"]
    # income's range (~400..5000) moves the median by ~400, size's (0..6) by 180: income is shown
    assert ">income<" in str(fig["svg"]) and ">size<" not in str(fig["svg"])
    (rows,) = seen  # one batched prediction: income's grid, then size's 7 observed values
    by_income, by_size = rows.iloc[:-7], rows.iloc[-7:]
    assert by_income["income"].between(*np.quantile(frame["income"].dropna(), [0.025, 0.975])).all()
    assert (by_income["size"] == 3).all() and (by_income["region"] == "a").all()  # held at typical values
    assert sorted(by_size["size"].unique()) == list(range(7))  # few values: the observed ones
    both = report._partial_figure(several, taus, report._Numbering())
    assert "the 2 of 2 numeric predictors" in both["caption"]

    def predict_no_large_size(rows):
        """Fails on rows with an unseen size, as a number used as a category would."""
        if (rows["size"] > 5).any():
            raise DataError("size 6 is not a level seen in training")
        return predict(rows)

    partly = report._partial_figure(_with(several, predict=predict_no_large_size), taus, report._Numbering())
    assert "the 1 of 2 numeric predictors" in partly["caption"] and ">income<" in str(partly["svg"])
    # one predictor, or no predict method: no partial figure (the fan chart is drawn along it)
    assert report._partial_figure(_with(several, formula="foodexp ~ income"), taus, report._Numbering()) is None
    assert report._partial_figure(r, taus, report._Numbering()) is None


def _many_versions(results):
    """The results with a version line as long as a real fit's (about twenty packages)."""
    extra = {f"package-{k}": f"{k}.{2 * k}.{3 * k}" for k in range(1, 19)}
    return _with(results, versions={**results.versions, **extra})


@pytest.fixture(scope="module")
def pdf_path(synthetic_results, artifacts):
    html, pdf = report.write_reports(_many_versions(synthetic_results),
                                     [artifacts / "report.html", artifacts / "report.pdf"])
    assert pdf.read_bytes()[:5] == b"%PDF-" and html.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    return pdf


def _pdf_pages_text(pdf_path: Path) -> list[str]:
    text = subprocess.run(["pdftotext", "-layout", str(pdf_path), "-"], capture_output=True, text=True,
                          check=True).stdout
    return [page for page in text.split("\f") if page.strip()]


def _filled_height(png: Path, margin_mm: float = 20.0) -> float:
    """Share of the page body (inside the top and bottom margins) above the lowest ink."""
    from PIL import Image

    grey = np.asarray(Image.open(png).convert("L"))
    height = grey.shape[0]
    top, bottom = round(height * margin_mm / 297), round(height * (1 - margin_mm / 297))
    inked = np.flatnonzero((grey[top:bottom] < 235).any(axis=1))
    return 0.0 if inked.size == 0 else (inked[-1] + 1) / (bottom - top)


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils (pdftoppm) not installed")
def test_pdf_pages_are_not_left_half_blank(pdf_path, tmp_path):
    # A figure or table that does not fit is pushed to the next page; the page it leaves must
    # still be mostly used (the report once left 30 % and 50 % of its first pages white).
    subprocess.run(["pdftoppm", "-png", "-r", "30", str(pdf_path), str(tmp_path / "p")], check=True)
    pages = sorted(tmp_path.glob("p-*.png"))
    assert len(pages) >= 3
    filled = [_filled_height(p) for p in pages]
    assert all(f >= 0.7 for f in filled[:-1]), filled


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils (pdftoppm) not installed")
def test_demo_report_pages_are_filled(tmp_path):
    """The report of ``qaggstats demo`` (nine predictors, five learners): the layout the docs show."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("previews", Path(__file__).parents[1] / "tools" / "previews.py")
    previews = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(previews)
    html, pdf = report.write_reports(previews.demo_fit(), [tmp_path / "demo.html", tmp_path / "demo.pdf"])
    assert "Figure 9." in html.read_text(encoding="utf-8")  # the partial curves of a multi-predictor model
    subprocess.run(["pdftoppm", "-png", "-r", "30", str(pdf), str(tmp_path / "p")], check=True)
    filled = [_filled_height(p) for p in sorted(tmp_path.glob("p-*.png"))]
    assert all(f >= 0.85 for f in filled[:-1]), filled
    assert re.search(r"Figure \d+\.", _pdf_pages_text(pdf)[-1])


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils (pdftotext) not installed")
def test_pdf_last_page_is_more_than_the_footer(pdf_path):
    pages = _pdf_pages_text(pdf_path)
    assert "Reproducibility" in pages[-1]
    assert re.search(r"Figure \d+\.", pages[-1])  # the footer takes the last figure along
    for page in pages:
        body = [ln for ln in page.splitlines() if ln.strip() and not re.search(r"Page \d+ of \d+", ln)]
        assert len(" ".join(body).split()) > 40


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils (pdftotext) not installed")
def test_pdf_text_stays_inside_the_page_and_versions_wrap(pdf_path, synthetic_results):
    bbox = subprocess.run(["pdftotext", "-bbox", str(pdf_path), "-"], capture_output=True, text=True,
                          check=True).stdout
    width = float(re.search(r'<page width="([\d.]+)"', bbox).group(1))
    words = [(float(x1), w) for x1, w in re.findall(r'<word xMin="[\d.]+" yMin="[\d.]+" xMax="([\d.]+)" '
                                                      r'yMax="[\d.]+">([^<]*)</word>', bbox)]
    assert words
    right_margin = 17 / 25.4 * 72  # the 17 mm page margin of report.css
    outside = [w for x1, w in words if x1 > width - right_margin + 2]
    assert outside == []
    found = {w for _, w in words}
    for name in _many_versions(synthetic_results).versions:  # every package of the version line is printed
        assert name in found


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils (pdftotext) not installed")
def test_pdf_has_no_signed_zero_labels(pdf_path):
    text = "\n".join(_pdf_pages_text(pdf_path))
    assert not re.search(r"(?<![\w.,])[+−-]0(?![.,\d])", text)


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils (pdftotext) not installed")
def test_pdf_pages_text_and_first_page(pdf_path, context, artifacts):
    info = subprocess.run(["pdfinfo", str(pdf_path)], capture_output=True, text=True, check=True).stdout
    pages = int(re.search(r"Pages:\s+(\d+)", info).group(1))
    assert 3 <= pages <= 30
    assert re.search(r"Page size:\s+595(\.\d+)? x 841(\.\d+)? pts \(A4\)", info)
    text = subprocess.run(["pdftotext", "-layout", str(pdf_path), "-"], capture_output=True, text=True,
                          check=True).stdout
    assert context["key"]["aggregate_wis"] in text
    for title in SECTIONS:
        assert title in text
    assert f"Page 1 of {pages}" in text and f"Page {pages} of {pages}" in text
    assert "nominal level" in text  # text inside an SVG figure stays text in the PDF
    stem = artifacts / "report-pdf-page"
    subprocess.run(["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", str(pdf_path), str(stem)], check=True)
    png = sorted(artifacts.glob("report-pdf-page*1.png"))
    assert png and png[0].stat().st_size > 10_000


# ----------------------------------------------------------------------------- browser
def _open(html_path: Path):
    """Load a file in headless Chromium; collect console errors and dialogs."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM}")
    return sync_api.sync_playwright()


@pytest.mark.browser
def test_report_renders_in_chromium(tmp_path, synthetic_results, hostile_results, context, artifacts):
    html_path = report.write_report(_many_versions(synthetic_results), tmp_path / "report.html")
    hostile_path = report.write_report(hostile_results, tmp_path / "hostile.html")
    with _open(html_path) as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            errors, dialogs, requests = [], [], []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.on("request", lambda req: requests.append(req.url))
            page.goto(html_path.as_uri(), wait_until="load")
            assert errors == []
            assert all(u.startswith(("file:", "data:")) for u in requests), requests
            widths = page.eval_on_selector_all("img", "els => els.map(e => e.complete ? e.naturalWidth : 0)")
            assert widths and all(w > 0 for w in widths)
            boxes = page.eval_on_selector_all(
                "figure.plot svg", "els => els.map(e => { const b = e.getBoundingClientRect(); return [b.width, b.height]; })")
            assert len(boxes) >= 6 and all(w > 100 and h > 100 for w, h in boxes)
            text = page.inner_text("body")
            assert context["key"]["aggregate_wis"] in text
            assert context["key"]["vs_best"] in text
            assert "Fakoor et al. (2023), Proposition 2" in text
            page.screenshot(path=str(artifacts / "report-full.png"), full_page=True)
            for width in (1200, 640):  # nothing scrolls sideways, the version list wraps
                page.set_viewport_size({"width": width, "height": 900})
                overflow = page.evaluate("""() => {
                    const v = document.querySelector('.versions');
                    return [document.documentElement.scrollWidth - window.innerWidth,
                            v.scrollWidth - v.clientWidth, v.getBoundingClientRect().height];
                }""")
                assert overflow[0] <= 0 and overflow[1] <= 0, (width, overflow)
            assert overflow[2] > 40  # several lines at 640 px

            page.goto(hostile_path.as_uri(), wait_until="load")
            page.wait_for_timeout(200)
            assert dialogs == []
            assert page.locator("script").count() == 0
            text = page.inner_text("body")
            assert HOSTILE in text and HOSTILE_MODEL in text
            assert page.eval_on_selector_all("img", "els => els.length") == 1  # only the fan chart
            page.screenshot(path=str(artifacts / "report-hostile.png"))
        finally:
            browser.close()
