"""The one error type for user mistakes.

`UsageError` (and its subclasses) carry a message that says what is wrong and how to fix it.
`search.cli.main` catches it, prints one line and exits 2; anything else is a bug and keeps its
traceback. Trial-level failures are a different thing: they are recorded on the trial and the
study goes on.
"""


class UsageError(Exception):
    """A user mistake: bad flag, bad YAML, bad data. Printed as one line, exit code 2."""


class ConfigError(UsageError):
    """A search space or config value is invalid; the message names the key."""


class DataError(UsageError):
    """The annotation CSV or its images are unusable; the message names rows and columns."""
