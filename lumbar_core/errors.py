"""The project's error classes: what the command line reports in one line, and what a stage may survive.

Library code raises :class:`UserError` (or a subclass: ``LabelError``, ``SubmissionError``,
``ParamsError``) for a mistake in what the user gave it, and :class:`ManifestError` for a stage's
outputs that are missing or damaged; the message names the file, column, stage or parameter at
fault and the command line prints it in one line. :class:`StudyDataError` is one study's bad data,
which predict reports and survives. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(ValueError):
    """A mistake in the user's input: a file, column, stage or parameter; the message names it.

    A ``ValueError`` subclass, so code that catches ``ValueError`` keeps working.
    """


class UnknownNameError(UserError, KeyError):
    """A stage, profile or pipeline name that does not exist; the message lists the valid ones.

    Also a ``KeyError``, for code that looks names up.
    """

    def __str__(self) -> str:
        """The message itself (a KeyError would quote it)."""
        return str(self.args[0]) if self.args else ""


class StudyDataError(ValueError):
    """One study's data cannot be used (a missing or broken series, volume or level).

    The study is reported and predicted from the prior; the rest of the run goes on. The message
    names the study.
    """


class ManifestError(RuntimeError):
    """A stage's outputs are missing, incomplete or do not match their manifest."""


class UpstreamChangedError(ManifestError):
    """An upstream stage was committed again after this task was scheduled on an older attempt."""


class ContractError(RuntimeError):
    """A stage read or wrote what its registry entry does not declare (a stage, a file, a table's columns, a document's fields).

    A bug in the stage or its declaration, never the user's: it keeps its traceback.
    """
