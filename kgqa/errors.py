"""The one error type the CLI turns into a one-line message instead of a traceback."""
from __future__ import annotations


class KgqaError(Exception):
    """A problem with the user's input (a file, a line, a flag), not a bug in kgqa."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None) -> None:
        where = path if line is None else f"{path}:{line}"
        super().__init__(f"{where}: {message}" if where else message)
        self.path = path
        self.line = line


def first_line(error: BaseException) -> str:
    """What a library's exception says, in one line (its type where it says nothing)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class DamagedIndex(KgqaError):
    """An index whose files are unreadable or disagree with each other (a kill mid-copy, a full disk)."""

    def __init__(self, problem: str, directory: str) -> None:
        super().__init__(f"damaged index: {problem} (rebuild it with `kgqa index`, or remove it)", directory)
        self.problem = problem
