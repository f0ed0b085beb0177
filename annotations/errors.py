"""Named exceptions of the annotation store.

Every error the store raises on purpose is a subclass of `AnnotationError`, so the UI can catch one
class and show `str(error)` to a person (sqlite-utils does the same with its `NotFoundError`). Each
message says what was wrong and what to do about it. Errors about a bad argument also subclass
`ValueError`, "not found" errors also subclass `LookupError`, so generic code keeps working.
"""

from __future__ import annotations


class AnnotationError(Exception):
    """Base class of every error raised by `annotations`."""


class ConfigError(AnnotationError, ValueError):
    """A store setting (path, timeout, images folder ...) is invalid."""


class EmptyMentionError(AnnotationError, ValueError):
    """The mention is empty or only whitespace."""


class MentionNotInTextError(AnnotationError, ValueError):
    """The mention does not occur in the text (or not at the given offsets)."""


class InvalidDecisionError(AnnotationError, ValueError):
    """The decision name, its entity or the annotator do not fit together."""


class UnknownEntityError(AnnotationError, LookupError):
    """A decision names an entity that the knowledge base does not contain."""


class MissingImageError(AnnotationError, FileNotFoundError):
    """An image file that was referenced does not exist."""


class InvalidImageError(AnnotationError, ValueError):
    """Image data that cannot be read as an image, or a value that is not an image."""


class NotFoundError(AnnotationError, LookupError):
    """A row (input, correction, queue item) that was asked for does not exist."""


class NothingToUndoError(AnnotationError, LookupError):
    """`undo` was called but the annotator has no live decision there."""


class SchemaError(AnnotationError):
    """The database was written by a newer version of GEMEL Studio, or is not a GEMEL store."""


class StoreBusyError(AnnotationError):
    """Other writers held the database for longer than the configured patience."""


class ImportFormatError(AnnotationError, ValueError):
    """A line of an import file cannot be read; the message names the file and line."""
