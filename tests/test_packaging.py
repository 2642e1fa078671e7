"""The two README commands, CI, and the wheel's contents."""
from __future__ import annotations

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
    exec(compile(code, "README.md", "exec"), {"print": lambda *a, **k: None})
    assert (tmp_path / "engel.html").stat().st_size > 10_000
    assert (tmp_path / "engel.pdf").read_bytes().startswith(b"%PDF")
