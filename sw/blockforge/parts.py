"""The FPGA parts the open flow (``blockforge hw build``) can place and route the engine on.

One table, :data:`DEVICES`, owns what is known per device: its family, the Lattice device name, the short
names nextpnr uses, its speed grades and packages. The spec's ``target`` key is checked against it
(:mod:`blockforge.spec`), the hw layer takes nextpnr's device flag from it, and :func:`parse_part` reads
the ``--target`` strings a user types. Packages and speed grades are the ones nextpnr-ecp5 0.11 accepts
(checked with ``--test``), restricted to what Lattice sells (the 5G devices only as speed 8).

This module imports neither torch nor amaranth.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import UsageError

__all__ = ["DEVICES", "FAMILIES", "Device", "Part", "find_device", "parse_part"]


@dataclass(frozen=True)
class Device:
    """One FPGA device the flow knows."""

    family: str                  # spec spelling: "ecp5"
    name: str                    # Lattice device name: "LFE5U-85F"
    short: str                   # nextpnr's short name (its flag without the dashes): "85k"
    speeds: tuple[int, ...]      # speed grades sold
    packages: tuple[str, ...]    # package names as nextpnr spells them
    default_package: str
    dsps: int                    # 18×18 multipliers (MULT18X18D), from the family data sheet

    @property
    def nextpnr_tool(self) -> str:
        return f"nextpnr-{self.family}"


_ECP5_SMALL = ("CABGA256", "CABGA381", "CSFBGA285", "TQFP144")
_ECP5_45 = ("CABGA256", "CABGA381", "CABGA554", "CSFBGA285", "TQFP144")
_ECP5_85 = ("CABGA381", "CABGA554", "CABGA756", "CSFBGA285")

DEVICES: tuple[Device, ...] = (
    Device("ecp5", "LFE5U-12F", "12k", (6, 7, 8), _ECP5_SMALL, "CABGA381", 28),
    Device("ecp5", "LFE5U-25F", "25k", (6, 7, 8), _ECP5_SMALL, "CABGA381", 28),
    Device("ecp5", "LFE5U-45F", "45k", (6, 7, 8), _ECP5_45, "CABGA381", 72),
    Device("ecp5", "LFE5U-85F", "85k", (6, 7, 8), _ECP5_85, "CABGA381", 156),
    Device("ecp5", "LFE5UM-25F", "um-25k", (6, 7, 8), _ECP5_SMALL, "CABGA381", 28),
    Device("ecp5", "LFE5UM-45F", "um-45k", (6, 7, 8), _ECP5_45, "CABGA381", 72),
    Device("ecp5", "LFE5UM-85F", "um-85k", (6, 7, 8), _ECP5_85, "CABGA381", 156),
    Device("ecp5", "LFE5UM5G-25F", "um5g-25k", (8,), _ECP5_SMALL, "CABGA381", 28),
    Device("ecp5", "LFE5UM5G-45F", "um5g-45k", (8,), _ECP5_45, "CABGA381", 72),
    Device("ecp5", "LFE5UM5G-85F", "um5g-85k", (8,), _ECP5_85, "CABGA381", 156),
)

FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(d.family for d in DEVICES))


def find_device(family: str, device: str) -> Device | None:
    """The device of ``family`` named ``device`` (Lattice name or nextpnr short name, any case)."""
    wanted = device.strip().lower()
    for d in DEVICES:
        if d.family == family and wanted in (d.name.lower(), d.short):
            return d
    return None


@dataclass(frozen=True)
class Part:
    """A resolved target: device, speed grade and package."""

    device: Device
    speed: int
    package: str

    @property
    def family(self) -> str:
        return self.device.family

    @property
    def name(self) -> str:
        """Lattice-style part name without the temperature grade: ``LFE5U-85F-6CABGA381``."""
        return f"{self.device.name}-{self.speed}{self.package}"

    def to_dict(self) -> dict:
        return {"family": self.family, "device": self.device.name, "speed": self.speed, "package": self.package}


# Lattice ordering codes abbreviate packages: LFE5U-85F-6BG381C is the 85k, speed 6, CABGA381, commercial.
_PACKAGE_CODES = {"BG": "CABGA", "MG": "CSFBGA", "TG": "TQFP"}
_PART = re.compile(r"^(?P<device>[A-Za-z0-9-]+?)(?:-(?P<speed>[0-9])(?P<package>[A-Za-z]+[0-9]+)?[CcIi]?)?$")


def parse_part(text: str) -> Part:
    """A part from a ``--target`` string; UsageError naming the value if it is not a known part.

    Accepted: a device (``LFE5U-85F`` or nextpnr's ``85k``, speed 6 and the default package), a device
    with speed grade (``LFE5U-85F-8``), or a Lattice ordering code (``LFE5U-85F-6BG381C``,
    ``LFE5U-45F-7CABGA554``).
    """
    shown = text if len(text) <= 40 else text[:40] + "..."
    known = ", ".join(d.name for d in DEVICES)
    if not isinstance(text, str) or not text.strip():
        raise UsageError(f"--target: expected a part such as LFE5U-85F-6, got {shown!r}")
    direct = next((d for d in DEVICES if text.strip().lower() in (d.name.lower(), d.short)), None)
    if direct is not None:
        return Part(direct, direct.speeds[0], direct.default_package)
    match = _PART.match(text.strip())
    device = find_device(FAMILIES[0], match["device"]) if match else None
    if device is None:
        raise UsageError(f"--target: unknown part {shown!r} (known devices: {known})")
    speed = int(match["speed"]) if match["speed"] else device.speeds[0]
    if speed not in device.speeds:
        raise UsageError(f"--target: {device.name} has no speed grade {speed} "
                         f"(sold as {', '.join(map(str, device.speeds))})")
    package = device.default_package
    if match["package"]:
        code = match["package"].upper()
        prefix = re.match(r"[A-Z]+", code)[0]
        package = _PACKAGE_CODES.get(prefix, prefix) + code[len(prefix):]
        if package not in device.packages:
            raise UsageError(f"--target: {device.name} does not come in {package} "
                             f"(packages: {', '.join(device.packages)})")
    return Part(device, speed, package)
