"""The clock at which cycles become time: the one rule behind every time figure blockforge prints.

The cycle model (:mod:`blockforge.estimate`) counts cycles exactly; turning them into time needs a
clock. The spec's ``clock_mhz`` is a promise. A build report of ``blockforge hw build``
(:mod:`blockforge_hw.fpga`, docs/fpga.md) is a measurement: the Fmax nextpnr achieved after place and
route. :func:`engine_clock` takes the report (a dict, so the core never imports the hw layer) and
returns ``min(spec clock, achieved Fmax)`` together with which of the two it is, so that every time
figure can say what it assumed.

This module imports neither torch nor amaranth.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .errors import UsageError
from .spec import Spec

__all__ = ["EngineClock", "REPORT_KIND", "default_report_path", "engine_clock", "read_fpga_report",
           "resolve_engine_clock"]

REPORT_KIND = "blockforge-fpga-build"   # the ``kind`` of a report written by blockforge_hw.fpga
DEFAULT_BUILD_ROOT = Path("build") / "fpga"


@dataclass(frozen=True)
class EngineClock:
    """The clock used to turn cycles into time."""

    mhz: float                 # the clock used: min(spec clock, achieved Fmax)
    source: str                # "spec": the spec's clock_mhz (no report, or the report meets it);
                               # "fmax": the achieved Fmax of the build report (below the spec clock)
    spec_mhz: float
    fmax_mhz: float | None = None   # achieved Fmax, when a build report was used
    part: str | None = None         # the part of that report
    report: str | None = None       # the report's path, when read from a file

    def time_us(self, cycles: int | float) -> float:
        """Microseconds for ``cycles`` at this clock."""
        return cycles / self.mhz

    def describe(self) -> str:
        """One line for a summary: ``"40.2 MHz, the Fmax achieved on LFE5U-85F-6CABGA381 (spec: 200 MHz)"``."""
        if self.fmax_mhz is None:
            return f"{self.mhz:g} MHz, the spec clock (no FPGA build report)"
        if self.source == "fmax":
            return f"{self.mhz:.1f} MHz, the Fmax achieved on {self.part} (spec: {self.spec_mhz:g} MHz, not met)"
        return f"{self.mhz:g} MHz, the spec clock, met on {self.part} (Fmax {self.fmax_mhz:.1f} MHz)"

    def to_dict(self) -> dict[str, Any]:
        return {"mhz": self.mhz, "source": self.source, "spec_mhz": self.spec_mhz, "fmax_mhz": self.fmax_mhz,
                "part": self.part, "report": self.report}


def default_report_path(spec: Spec, root: str | Path = DEFAULT_BUILD_ROOT) -> Path:
    """Where ``blockforge hw build`` writes the report for ``spec`` by default: build/fpga/<name>/report.json."""
    return Path(root) / spec.name / "report.json"


def engine_clock(spec: Spec, report: Mapping[str, Any] | None = None, *, report_path: str | Path | None = None
                 ) -> EngineClock:
    """The clock for ``spec``'s time figures: ``min(spec.clock_mhz, report's achieved Fmax)``.

    ``report``: a build report dict (``blockforge hw build --json``), or None for the spec clock.
    UsageError if the report is not a build report or was built for another spec (digest mismatch).
    """
    if report is None:
        return EngineClock(float(spec.clock_mhz), "spec", float(spec.clock_mhz))
    where = str(report_path) if report_path is not None else "FPGA build report"
    if not isinstance(report, Mapping) or report.get("kind") != REPORT_KIND:
        raise UsageError(f"{where}: not a blockforge hw build report")
    built = report.get("spec") or {}
    if built.get("digest") != spec.digest:
        raise UsageError(f"{where}: built for spec {str(built.get('name'))[:40]!r} with another hardware "
                         f"contract than {spec.name!r} (digest mismatch); rebuild with blockforge hw build")
    fmax = report.get("fmax_mhz")
    if isinstance(fmax, bool) or not isinstance(fmax, (int, float)) or fmax <= 0:
        raise UsageError(f"{where}: no achieved Fmax for the engine clock")
    part = (report.get("part") or {}).get("name")
    used = min(float(spec.clock_mhz), float(fmax))
    source = "spec" if fmax >= spec.clock_mhz else "fmax"
    return EngineClock(used, source, float(spec.clock_mhz), float(fmax), part,
                       str(report_path) if report_path is not None else None)


def read_fpga_report(path: str | Path) -> dict[str, Any]:
    """A build report from its JSON file; UsageError naming the file if it is missing or not JSON."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the FPGA build report: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: not a JSON FPGA build report ({str(exc)[:80]})") from None
    if not isinstance(data, dict) or data.get("kind") != REPORT_KIND:
        raise UsageError(f"{path}: not a blockforge hw build report")
    return data


def resolve_engine_clock(spec: Spec, report_path: str | Path | None = None, *,
                         build_root: str | Path = DEFAULT_BUILD_ROOT) -> EngineClock:
    """The clock for ``spec``: from ``report_path`` if given (it must exist and match the spec), else from
    the default report build/fpga/<spec>/report.json if one exists for this spec, else the spec clock.

    A default report built for another version of the spec is ignored (the spec clock is used).
    """
    if report_path is not None:
        return engine_clock(spec, read_fpga_report(report_path), report_path=report_path)
    default = default_report_path(spec, build_root)
    if not default.is_file():
        return engine_clock(spec)
    try:
        return engine_clock(spec, read_fpga_report(default), report_path=default)
    except UsageError:
        return engine_clock(spec)
