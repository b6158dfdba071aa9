"""User-facing errors: one line, naming the file and the problem, no traceback."""


class VeilError(Exception):
    """A mistake in the user's input (file, config, flag). The CLI prints it as one line and exits 2."""
