"""Shared helpers of the benchmark scripts: data loading, machine description, table output."""
from __future__ import annotations

import datetime as _dt
import os
import platform
import re
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
# The UCI data sets are not shipped; QAGG_DATA points at the folder holding uci/ (default: the
# shared/data folder beside the checkout). Benchmarks say so when it is absent.
DATA = Path(os.environ.get("QAGG_DATA", ROOT.parent / "shared" / "data"))
UCI = DATA / "uci"
RESULTS = ROOT / "benchmarks" / "results"


def uci_names() -> list[str]:
    """The UCI data sets present beside the checkout (../shared/data/uci)."""
    return sorted(p.name for p in UCI.iterdir() if (p / "data.txt").is_file()) if UCI.is_dir() else []


def require_uci() -> list[str]:
    """The UCI data set names, or exit with a message saying where they were looked for."""
    names = uci_names()
    if not names:
        raise SystemExit(f"no UCI data sets under {UCI}; set QAGG_DATA to the folder that holds uci/")
    return names


def load_uci(name: str) -> pd.DataFrame:
    """A UCI data set as a DataFrame with features x0..x{d-1} and response y."""
    folder = UCI / name
    if not (folder / "data.txt").is_file():
        raise SystemExit(f"UCI data set {name!r} not found under {UCI}; set QAGG_DATA to the folder that holds uci/")
    data = np.loadtxt(folder / "data.txt")
    features = np.loadtxt(folder / "index_features.txt", dtype=int, ndmin=1)
    target = int(np.loadtxt(folder / "index_target.txt", dtype=int))
    df = pd.DataFrame(data[:, features], columns=[f"x{j}" for j in range(features.size)])
    df["y"] = data[:, target]
    return df


def machine() -> str:
    """One line describing this machine, for the tables' headers."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, AttributeError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{mem}, Python {platform.python_version()}"


def today() -> str:
    return _dt.date.today().isoformat()


def replace_section(path: Path, key: str, body: str) -> None:
    """Replace the text between ``<!-- key:start -->`` and ``<!-- key:end -->`` (or append it)."""
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
