"""User-facing errors.

Anything a user can get wrong (a study file, a dataset, a command-line value)
raises a :class:`VrsearchError`; the CLI prints ``str(err)`` on one line and
exits with code 2, without a traceback.
"""


def flat(exc: BaseException, limit: int) -> str:
    """An exception's message on one line (runs of whitespace, newlines included, as one
    space), at most ``limit`` characters: the part of a one-line error that quotes it."""
    return " ".join(str(exc).split())[:limit]


class VrsearchError(Exception):
    """A user-facing error: the CLI prints str(err) on one line and exits with code 2."""


class DataError(VrsearchError):
    """Bad or missing data; the message names the file."""


class StudyError(VrsearchError):
    """A study file (or an override of it) is invalid; the message names the field."""
