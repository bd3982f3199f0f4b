"""User-facing errors: the CLI prints their message as one line and exits with code 2."""


class OhloraError(Exception):
    """A problem the user can fix (bad input, missing model, corrupt file). Never a bug."""

    exit_code = 2
