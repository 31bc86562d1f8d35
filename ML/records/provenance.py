"""What makes a run reproducible, saved beside its results: library versions and the user's git state."""
import platform
import subprocess
from importlib import metadata
from pathlib import Path

LIBRARIES = ('ML', 'torch', 'torchvision', 'numpy', 'hydra-core', 'omegaconf', 'gymnasium', 'scikit-learn')


def versions() -> dict:
    found = {'python': platform.python_version()}
    for library in LIBRARIES:
        try:
            found[library] = metadata.version(library)
        except metadata.PackageNotFoundError:
            pass
    return found


UNTRACKED_LIMIT = 100_000  # bytes: an untracked file up to this size is kept whole in config.yaml, a larger one named


def git_state(cwd: Path) -> dict:
    """The commit, the uncommitted diff and the untracked files (not ignored) of the repository holding the user's
    code, or {} when there is none: with them a run's code can be rebuilt exactly. Untracked text files up to
    UNTRACKED_LIMIT bytes are kept whole; larger or binary ones are named with their size."""
    def git(*args):
        return subprocess.run(['git', *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    try:
        inside = git('rev-parse', '--show-toplevel')
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if inside.returncode != 0:
        return {}
    root, commit = Path(inside.stdout.strip()), git('rev-parse', 'HEAD')  # a repository with no commit has no HEAD
    untracked = {}
    for name in git('ls-files', '--others', '--exclude-standard', '-z').stdout.split('\0'):
        path = root / name
        if not name or not path.is_file():
            continue
        size = path.stat().st_size
        try:
            untracked[name] = path.read_text() if size <= UNTRACKED_LIMIT else f'<{size} bytes, not kept>'
        except (UnicodeDecodeError, OSError):
            untracked[name] = f'<{size} bytes of binary, not kept>'
    if commit.returncode != 0:
        return {'commit': None, 'diff': '', 'untracked': untracked}
    return {'commit': commit.stdout.strip(), 'diff': git('diff', 'HEAD').stdout, 'untracked': untracked}


def dirty(state: dict) -> list:
    """What makes a repository's state unclean: no commit yet, a diff, and untracked files (their names)."""
    return ((['no commit'] if state and state.get('commit') is None else [])
            + (['uncommitted changes'] if state.get('diff') else []) + sorted(state.get('untracked', {})))
