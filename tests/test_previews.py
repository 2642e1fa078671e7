"""tools/previews.py: the docs screenshots tool (Chromium + pdftoppm), on the synthetic report."""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from qaggstats import report

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def previews():
    spec = importlib.util.spec_from_file_location("previews", ROOT / "tools" / "previews.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_missing_chromium_is_a_clear_usage_error(previews, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        previews.main(["--chromium", str(tmp_path / "no-chromium"), "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "Chromium not found: pass --chromium PATH or set CHROMIUM" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_chromium_defaults_to_the_environment(previews, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("CHROMIUM", str(tmp_path / "from-env"))
    with pytest.raises(SystemExit):
        previews.main(["--out", str(tmp_path)])
    assert "Chromium not found" in capsys.readouterr().err


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists() or shutil.which("pdftoppm") is None,
                    reason="needs Debian chromium and poppler-utils")
def test_screenshots_of_html_and_pdf_pages(previews, synthetic_results, tmp_path):
    pytest.importorskip("playwright.sync_api")
    from PIL import Image

    html, pdf = report.write_reports(synthetic_results, [tmp_path / "r.html", tmp_path / "r.pdf"])
    out = tmp_path / "img"
    out.mkdir()
    previews.screenshot_html(html, out / "report-html.png", CHROMIUM, width=800, height=600)
    pages = previews.pdf_pages(pdf, out, 1, 2, dpi=40)
    assert [p.name for p in pages] == ["report-pdf-1.png", "report-pdf-2.png"]
    shot = np.asarray(Image.open(out / "report-html.png").convert("L"))
    assert shot.shape == (600, 800)
    assert (shot < 200).mean() > 0.02  # the report was drawn, not a blank page
    for page in pages:
        width, height = Image.open(page).size
        assert abs(height / width - 297 / 210) < 0.01  # A4
