"""The one exception users see: a problem they can fix, said in one line."""


class KitError(Exception):
    """Bad input or setup; the CLI prints the message alone and exits non-zero."""
