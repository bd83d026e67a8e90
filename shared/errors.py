"""User-facing errors: each names the bad input and the fix in one message.

Entry points catch `UserError` and print its message as one line instead of a
traceback; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from the user (flag, config, file, data) with the fix in the text."""


class ConfigError(UserError):
    """A config field is unknown, mistyped or out of range."""


class DataError(UserError):
    """A dataset, split or data file is missing, unknown or corrupt."""


class CheckpointError(UserError):
    """A checkpoint cannot be restored into this run (other config, corrupt)."""


class WorkdirLockedError(UserError):
    """Another live process holds the workdir."""


class NonFiniteError(UserError):
    """Training produced a NaN or Inf metric."""


class Interrupted(Exception):
    """SIGTERM/SIGINT arrived; a checkpoint was written before raising."""

    def __init__(self, step: int, signum: int):
        self.step = step
        self.signum = signum
        super().__init__(
            f"interrupted by signal {signum} at step {step}; checkpoint saved. "
            "Rerun the same command with the same --workdir to resume."
        )
