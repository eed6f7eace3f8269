"""Exceptions for bad input, which the command line reports as one line with exit status 2."""


class UserError(Exception):
    """Bad input from the user (a wrong path, an unknown name, a file of the wrong kind)."""


class EnvironmentOptionError(UserError, ValueError):
    """An option an environment does not have, or a value it cannot take."""
