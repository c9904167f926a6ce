"""The one error every layer may raise for bad input."""


class UsageError(Exception):
    """Bad input; the message is the one line shown to the user."""
