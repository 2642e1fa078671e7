"""The suite reads nothing outside the repository (see the audit hook in conftest.py)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import conftest


def test_reads_beside_the_repository_are_caught(monkeypatch):
    # data beside a clone is there before the session starts; what appears later is scratch
    monkeypatch.setattr(conftest, "_BESIDE_AT_START", frozenset({"shared"}))
    assert conftest._outside_repository(conftest.ROOT.parent / "made-during-tests" / "x") is None
    outside = conftest.ROOT.parent / "shared" / "reference" / "engel.csv"
    inside = conftest.ROOT / "tests" / "data" / "quantreg" / "engel.csv"
    assert conftest._outside_repository(outside) == str(outside)
    assert conftest._outside_repository(inside) is None
    assert conftest._outside_repository("/usr/lib/python3/x.py") is None
    assert conftest._outside_repository(3) is None  # os.open on a file descriptor
    assert conftest._outside_repository(conftest.ROOT.parent / ".cache" / "x") is None
    for allowed in conftest._ALLOWED:  # a virtual environment beside the repository is not data
        assert conftest._outside_repository(allowed + "x/lib/x.py") is None


def test_guard_holds_for_a_clone_in_a_mktemp_folder():
    # `git clone ... $(mktemp -d)/q` puts the repository in /tmp/tmp.XXXXXXXXXX/q: the scratch
    # prefix /tmp/tmp that tempfile's own folders share must not excuse the files beside it
    root = Path(tempfile.gettempdir()) / "tmp.Ab3dE5fG7h" / "q"
    allowed = conftest._allowed_roots(root)
    assert not any((str(root) + os.sep).startswith(a) for a in allowed)
    assert os.path.join(tempfile.gettempdir(), "pytest-of-") in allowed  # elsewhere still scratch


def test_no_test_so_far_read_outside():
    assert conftest._OUTSIDE_READS == []
