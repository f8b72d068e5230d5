"""The base of errors that are the user's to fix: the CLI prints their message (no traceback) and exits 1."""


class FusionlabError(ValueError):
    """Bad input or a refused request; the message names the file/field/value and what was expected."""


class TrainingDiverged(FusionlabError, FloatingPointError):
    """A loss went NaN or inf: the same config and data diverge again, so it is not retried."""
