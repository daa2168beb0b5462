"""The command layer's exit statuses and its one kind of bad-input error.

Every subcommand exits ``EXIT_OK`` (0), ``EXIT_FAILED`` (1: the suite ran and found
something) or ``EXIT_USAGE`` (2: bad input, reported as one line by ``cli.main``).
"""

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input: reported as one line, exit status 2."""
