"""Regenerate the report screenshots in ``docs/img`` from a demo-like fit.

Documentation tooling, not part of the library: it needs headless Chromium (through the
``playwright`` package) and ``pdftoppm`` (poppler-utils).

The fit reproduces ``qaggstats demo`` (the embedded data set, its suggested formula, 20 % of
the rows held out as test data with the CLI's holdout stream, the default learners, quantile
weights, split CQR, 5 folds, seed 0). ``--fit PATH`` reuses a fit saved there (and saves a
new one there when the file does not exist), so the slow fit runs once while the report is
being worked on.

Usage::

    python tools/previews.py                       # writes docs/img/report-*.png
    python tools/previews.py --fit /tmp/demo.qagg --out /tmp/img
    CHROMIUM=/opt/chromium/chrome python tools/previews.py

Writes ``report-html.png`` (the top of the HTML report in a 1200 × 1500 viewport) and
``report-pdf-1.png``, ``report-pdf-2.png`` (the first two PDF pages at 110 dpi), and also
the full HTML and PDF reports next to them when ``--keep-reports`` is given.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ROOT = Path(__file__).resolve().parents[1]
# The screenshots show this checkout's report, whichever qaggstats is installed.
sys.path.insert(0, str(ROOT))


def demo_fit(dataset: str = "concrete", seed: int = 0):
    """The fit ``qaggstats demo`` makes (same split, learners and settings), without printing."""
    import qaggstats as qa
    from qaggstats import datasets
    from qaggstats.pipeline import default_models

    df = datasets.load(dataset)
    # The CLI's holdout: its own random stream, separate from the pipeline's seeds.
    test = np.random.default_rng([seed, 2]).random(len(df)) < 0.2
    return qa.qagg(datasets.suggested_formula(dataset), df[~test], models=default_models(seed),
                   family="quantile", conformal="cqr", cv=5, seed=seed, test=df[test], data_name=dataset)


def load_or_fit(path: Path | None, dataset: str):
    """A saved fit at ``path`` if there is one; otherwise a new demo fit (saved there if given)."""
    import qaggstats as qa

    if path is not None and path.exists():
        return qa.load(path)
    fit = demo_fit(dataset)
    if path is not None:
        fit.save(path, keep_data=True)  # the report needs the training arrays
    return fit


def screenshot_html(html_path: Path, target: Path, chromium: str, width: int = 1200, height: int = 1500) -> None:
    """The top ``width`` × ``height`` pixels of an HTML file in headless Chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(html_path.as_uri(), wait_until="load")
            page.screenshot(path=str(target))
        finally:
            browser.close()


def pdf_pages(pdf_path: Path, out: Path, first: int = 1, last: int = 2, dpi: int = 110) -> list[Path]:
    """PDF pages ``first``..``last`` as ``out/report-pdf-<k>.png`` via pdftoppm."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["pdftoppm", "-png", "-r", str(dpi), "-f", str(first), "-l", str(last), str(pdf_path),
                        str(Path(tmp) / "page")], check=True, capture_output=True)
        written = []
        for k, png in enumerate(sorted(Path(tmp).glob("page-*.png")), start=first):
            target = out / f"report-pdf-{k}.png"
            shutil.move(png, target)  # tmp may be on another filesystem
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="directory for the PNGs")
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM") or shutil.which("chromium"),
                        help="Chromium executable (default: $CHROMIUM, else chromium on PATH)")
    parser.add_argument("--dataset", default="concrete", help="embedded data set (default: %(default)s)")
    parser.add_argument("--fit", type=Path, default=None,
                        help="saved fit to reuse; created there when missing")
    parser.add_argument("--pages", type=int, default=2, help="PDF pages to render (default: %(default)s)")
    parser.add_argument("--keep-reports", action="store_true", help="also write report.html and report.pdf")
    args = parser.parse_args(argv)
    if not args.chromium or not Path(args.chromium).exists():
        parser.error("Chromium not found: pass --chromium PATH or set CHROMIUM")
    if shutil.which("pdftoppm") is None:
        parser.error("pdftoppm not found: install poppler-utils")

    from qaggstats.report import write_reports

    fit = load_or_fit(args.fit, args.dataset)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        where = args.out if args.keep_reports else Path(tmp)
        html_path, pdf_path = write_reports(fit, [where / "report.html", where / "report.pdf"])
        target = args.out / "report-html.png"
        screenshot_html(html_path, target, args.chromium)
        written = [target] + pdf_pages(pdf_path, args.out, 1, args.pages)
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
