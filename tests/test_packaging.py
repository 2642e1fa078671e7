"""The two README commands, CI, and the wheel's contents."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(?:sh|bash|console)\n(.*?)```", quick, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def test_readme_quick_start_has_exactly_two_commands():
    commands = _readme_commands()
    assert len(commands) == 2, commands
    assert "qaggstats demo" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    test_command = _readme_commands()[1]
    assert test_command in [line.strip() for line in ci], "README test command and .ci/run disagree"
    assert "apt-get update" in "\n".join(ci)


@pytest.mark.skipif(not (ROOT / "pyproject.toml").exists(), reason="needs the source tree")
def test_wheel_ships_templates_and_data(tmp_path):
    """Build a wheel (isolated, as pip install does) and find templates and data inside it."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("qaggstats-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("qaggstats/templates/") and n.endswith(".html") for n in names), names
    assert "qaggstats/datasets/engel.csv" in names
    assert "qaggstats/cli.py" in names


def test_installed_package_loads_a_template():
    from importlib.resources import files

    templates = [p.name for p in files("qaggstats.templates").iterdir()]
    assert any(name.endswith(".html") for name in templates), templates


def test_readme_example_runs(tmp_path, monkeypatch):
    """The README's Python example runs as written and writes both reports."""
    text = (ROOT / "README.md").read_text()
    code = re.findall(r"```python\n(.*?)```", text, flags=re.S)[0]
    monkeypatch.chdir(tmp_path)
    namespace = {"print": lambda *a, **k: None}
    exec(compile(code, "README.md", "exec"), namespace)
    assert (tmp_path / "engel.html").stat().st_size > 10_000
    assert (tmp_path / "engel.pdf").read_bytes().startswith(b"%PDF")
    # the example holds out test rows, so its summary checks the conformal guarantee
    verdicts = [d.verdict for d in namespace["fit"].diagnostics if "CQR" in d.claim or "onformal" in d.claim]
    assert verdicts and "n/a" not in verdicts, verdicts


def test_report_from_the_source_tree_and_no_solver_banner(tmp_path):
    """Python started in the repository root imports the source tree: the report must still find
    its templates, and no solver banner may reach stdout or stderr during a fit."""
    code = (
        "import qaggstats as qa, sys\n"
        "assert qa.__file__.startswith(sys.argv[1]), qa.__file__\n"
        "df = qa.datasets.load('engel')\n"
        "fit = qa.qagg('foodexp ~ income', df, models={'lin': qa.learners.LinearQR(), 'knn': qa.learners.KNN(k=20)},"
        " taus=[0.1, 0.5, 0.9], cv=3, n_jobs=1)\n"
        "fit.reweight('fine'); qa.rq('foodexp ~ income', df, tau=[0.25, 0.5])\n"
        f"fit.report({str(tmp_path / 'r.html')!r})\n"
    )
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code, str(root)], cwd=root, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "r.html").stat().st_size > 10_000
    assert "HiGHS" not in out.stdout + out.stderr and "Copyright" not in out.stdout + out.stderr
