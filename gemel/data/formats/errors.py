"""The errors raised while reading a data set; each subclasses `gemel.errors.GemelError`.

They live below every reader (and `gemel.data.readers` re-exports them) so that the format modules and the
entry points raise the same classes without importing each other.
"""

from __future__ import annotations

from pathlib import Path

from gemel.errors import GemelError


class DatasetError(GemelError):
    """Base class of the errors raised while reading a data set."""


class DatasetFormatError(DatasetError):
    """A file or one of its records does not have the documented layout; the message says where and how to fix."""

    def __init__(self, path: str | Path, where: str | int | None, message: str) -> None:
        self.path, self.where = str(path), where
        super().__init__(f"{path}:{where}: {message}" if where is not None else f"{path}: {message}")


class UnknownFormatError(DatasetError):
    """`read_dataset` could not tell the format of a file."""
