"""Progress for work of unknown length: elapsed seconds on one refreshed line, quiet when disabled."""

from __future__ import annotations

import io
import time

import pytest

from blockforge.progress import elapsed


def test_elapsed_ticks_and_ends_with_the_outcome():
    out = io.StringIO()
    with elapsed("verilator build", stream=out, period=0.05, force=True):
        time.sleep(0.2)
    text = out.getvalue()
    assert text.startswith("verilator build: 0 s")
    assert text.count("\rverilator build: ") >= 3          # refreshed while it ran, then the final line
    assert text.endswith("\rverilator build: done in 0 s\n")


def test_elapsed_reports_failure_and_reraises():
    out = io.StringIO()
    with pytest.raises(RuntimeError), elapsed("build", stream=out, force=True):
        raise RuntimeError("compiler died")
    assert out.getvalue().endswith("build: failed after 0 s\n")


def test_elapsed_is_quiet_when_disabled_or_not_a_terminal():
    out = io.StringIO()
    with elapsed("build", stream=out, enabled=False, force=True):
        pass
    with elapsed("build", stream=out):                    # StringIO is not a terminal
        pass
    assert out.getvalue() == ""
