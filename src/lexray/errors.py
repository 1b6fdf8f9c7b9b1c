"""The one base class of lexray's own errors.

Every error that lexray raises about a user's input (a file, an argument, a model reference, a request)
derives from :class:`LexrayError` and says what is wrong and how to fix it. The command line turns any of
them into one ``error: ...`` line and exit code 2, never a traceback; anything else is a bug in lexray.
"""

from __future__ import annotations


class LexrayError(Exception):
    """A problem with the user's input, named with its fix; the CLI prints it and exits 2."""
