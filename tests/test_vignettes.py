"""The vignettes execute top to bottom, draw their figures, and render to HTML.

Each ``vignettes/*.py`` (jupytext percent format, the source of truth) is converted to a
notebook and run by nbclient in a fresh ``python3`` kernel of this interpreter (jupyter_client
provides that kernelspec whenever ipykernel is importable, so no ``ipykernel install`` step is
needed). The executed notebooks and their HTML renderings are written to ``artifacts/vignettes``.
"""
from __future__ import annotations

import base64
import html
import re
import time
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parents[1]
VIGNETTES = sorted((ROOT / "vignettes").glob("[0-9][0-9]_*.py"))
FIGURE_TYPES = ("image/png", "image/svg+xml")
# Each vignette must run in under a minute on a developer machine; the timeout leaves room
# for a loaded CI runner.
CELL_TIMEOUT = 300
VIGNETTE_BUDGET = 150


def test_the_three_vignettes_exist():
    assert [p.name for p in VIGNETTES] == [
        "01_quantile_regression_formulas.py",
        "02_aggregating_quantile_models.py",
        "03_conformal_calibration.py",
    ]


@pytest.fixture(scope="module")
def executed(artifacts) -> dict[str, tuple[nbformat.NotebookNode, float]]:
    """Every vignette executed once: name -> (notebook with outputs, seconds)."""
    out_dir = artifacts / "vignettes"
    out_dir.mkdir(exist_ok=True)
    results = {}
    # One OpenMP thread in the kernel: on a shared machine histogram boosting's default of one
    # thread per core oversubscribes the CPUs; the kernel inherits this process's environment.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        for path in VIGNETTES:
            nb = jupytext.read(path)
            start = time.perf_counter()
            client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT,
                                              resources={"metadata": {"path": str(out_dir)}})
            try:
                client.execute()
            except nbclient.exceptions.CellExecutionError as err:
                # keep the partial notebook for inspection; report the cell and the error only
                nbformat.write(nb, out_dir / f"{path.stem}.ipynb")
                cell = next((c.source for c in nb.cells if any(
                    o.output_type == "error" for o in c.get("outputs", []))), "?")
                pytest.fail(f"{path.name} failed in cell:\n{cell}\n{err.ename}: {err.evalue}", pytrace=False)
            results[path.stem] = (nb, time.perf_counter() - start)
            nbformat.write(nb, out_dir / f"{path.stem}.ipynb")
    return results


def _outputs(nb):
    for cell in nb.cells:
        if cell.cell_type == "code":
            yield from cell.get("outputs", [])


@pytest.mark.parametrize("path", VIGNETTES, ids=lambda p: p.stem)
def test_vignette_is_a_lesson_in_percent_format(path):
    text = path.read_text(encoding="utf-8")
    assert "format_name: percent" in text
    nb = jupytext.read(path)
    prose = [c for c in nb.cells if c.cell_type == "markdown"]
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert len(prose) >= 8 and len(code) >= 8
    # prose and code alternate: no long run of code cells without an explanation
    runs = "".join("m" if c.cell_type == "markdown" else "c" for c in nb.cells)
    assert "ccc" not in runs, runs
    assert sum(len(c.source) for c in prose) > 3000
    assert "References" in prose[-1].source


@pytest.mark.parametrize("path", VIGNETTES, ids=lambda p: p.stem)
def test_vignette_runs_without_errors_and_in_time(executed, path):
    nb, seconds = executed[path.stem]
    errors = [o for o in _outputs(nb) if o.output_type == "error"]
    assert not errors, errors
    stderr = "".join(o.text for o in _outputs(nb) if o.output_type == "stream" and o.name == "stderr")
    assert "Warning" not in stderr, stderr
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code)
    assert seconds < VIGNETTE_BUDGET, f"{path.name} took {seconds:.0f} s"


@pytest.mark.parametrize("path", VIGNETTES, ids=lambda p: p.stem)
def test_vignette_draws_figures(executed, path):
    nb, _ = executed[path.stem]
    figures = [o for o in _outputs(nb) if any(t in o.get("data", {}) for t in FIGURE_TYPES)]
    assert len(figures) >= 3
    for out in figures:
        if "image/png" in out["data"]:
            assert base64.b64decode(out["data"]["image/png"])[:8] == b"\x89PNG\r\n\x1a\n"
        else:
            assert "<svg" in out["data"]["image/svg+xml"]
    # a Figure shown only as its text repr was not drawn (the inline backend was not active)
    undrawn = [o for o in _outputs(nb) if o.get("data", {}).get("text/plain", "").startswith("<Figure")
               and not any(t in o["data"] for t in FIGURE_TYPES)]
    assert not undrawn


@pytest.mark.parametrize("path", VIGNETTES, ids=lambda p: p.stem)
def test_vignette_renders_to_html(executed, artifacts, path):
    nb, _ = executed[path.stem]
    page = render_html(nb)
    target = artifacts / "vignettes" / f"{path.stem}.html"
    target.write_text(page, encoding="utf-8")
    assert page.lstrip().lower().startswith("<!doctype html")
    title = nb.cells[0].source.splitlines()[0].lstrip("# ").strip()
    assert html.escape(title) in page
    assert len(re.findall(r"<img [^>]*src=\"data:image/png;base64,|<svg", page)) >= 3
    text = html.unescape(re.sub(r"<[^>]+>", "", page))  # code is syntax-highlighted in spans
    assert "import qaggstats as qa" in text


def render_html(nb) -> str:
    """A standalone HTML page of an executed notebook (nbconvert's HTML exporter)."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nb)
    return body
