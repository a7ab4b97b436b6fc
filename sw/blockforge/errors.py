"""The project's exception types.

Every error a user can cause (a bad spec, a corrupt image, a shape the hardware cannot take, a bad
command-line value) is raised as a subclass of :class:`BlockforgeError` with a one-line message that
names the file and the key path or byte offset. The CLI prints that line and exits 2; anything else
escaping is a bug and keeps its traceback.
"""

from __future__ import annotations


class BlockforgeError(Exception):
    """Base class of every user-facing blockforge error."""


class SpecError(BlockforgeError, ValueError):
    """An accelerator spec is malformed, or a model shape does not fit it."""


class ImageError(BlockforgeError, ValueError):
    """A weight image is truncated, corrupt, of an unsupported version, or built for another spec."""


class UsageError(BlockforgeError, ValueError):
    """A command-line or API argument is out of range."""


class FpgaError(BlockforgeError, RuntimeError):
    """The FPGA flow failed: a tool stopped with an error, or the design does not fit the part."""
