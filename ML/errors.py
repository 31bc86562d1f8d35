"""A small exception tree. Each error says what was wrong and what would fix it, in one line that names the key,
path or file:line; the command line prints that line alone (the traceback only with HYDRA_FULL_ERROR=1)."""
import difflib
from typing import NamedTuple


class MLError(Exception):
    """Bad input the user can fix: printed as one line by the command line."""


class ConfigError(MLError):
    """An unknown key, a value of the wrong type, a key no part of the run uses, a code value that does not parse."""


class PathError(MLError):
    """A name that resolves to nothing: lists every place tried and the closest names found there."""


class RecipeError(MLError):
    """A task recipe that is missing or does not parse (names the file and line)."""


class ShapeError(MLError):
    """A block whose input or output does not fit its neighbours: names the block, expected and actual shapes."""


class UserCodeError(MLError):
    """The user's own code (a file of theirs being imported, their constructor, a code value calling it) raised or
    exited while a key was built: names the key and the innermost line of the user's files that ran. `frames` is the
    traceback of the user's frames alone, as Python prints one, for the command line to show above that line."""

    def __init__(self, message: str, frames: str = ''):
        super().__init__(message)
        self.frames = frames


class CrashedRun(NamedTuple):
    """Set, as `crashed_run`, on an error the user's own code raised while a run trained or evaluated: the run
    re-raises that error as it was (code that called ML.launch catches its own exception, and a debugger opens at
    its frame), and the ML command shows it as a build-time error of theirs is shown (UserCodeError)."""
    step: int        # the step the run had reached
    crash_file: str  # the run's crash.txt, with the whole traceback, as the user's directory names it


class CheckpointError(MLError):
    """Nothing to load, or a checkpoint that does not fit the run."""


def did_you_mean(word: str, choices, n: int = 3) -> str:
    """' (did you mean x?)' for the closest of choices, or ''."""
    by_lower = {str(c).lower(): str(c) for c in choices}  # case never hides a match: Gru finds GRU
    close = difflib.get_close_matches(str(word).lower(), by_lower, n=n, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(by_lower[c]) for c in close)}?)" if close else ''


class RunError(MLError):
    """A run that cannot start or go on: its folder is being written by another run, or a disk refused a write."""


class NonFiniteLoss(RunError):
    """learn() returned nan or an infinite number: the run stops before saving weights that are no good."""


class Interrupted(RunError):
    """A signal (SIGTERM, SIGINT, SIGHUP) stopped the run after it saved; `signal` is its number."""

    def __init__(self, message: str, signal: int):
        super().__init__(message)
        self.signal = signal


class Pruned(RunError):
    """A search's pruner stopped a trial whose intermediate evaluations were worse than its peers'."""
