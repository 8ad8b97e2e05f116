"""The error the ``lumbar`` command line reports in one line, without a traceback.

Library code raises :class:`UserError` (or a subclass: ``LabelError``, ``SubmissionError``,
``ParamsError``) for a mistake in what the user gave it; the message names the file, column,
stage or parameter at fault. Any other exception is a bug and keeps its traceback.
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
