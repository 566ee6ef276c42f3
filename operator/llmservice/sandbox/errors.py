"""The one exception the sandbox raises for faults a user can fix.

Its message is a single line naming the cause and the fix; the command line prints it
without a traceback. Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class SandboxError(Exception):
    """A fault with a known cause and fix, shown to the user as one line."""

    def __init__(self, cause: str, fix: str = "") -> None:
        self.cause = cause
        self.fix = fix
        super().__init__(f"{cause}; {fix}" if fix else cause)
