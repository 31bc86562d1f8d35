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


def git_state(cwd: Path) -> dict:
    """The commit and uncommitted diff of the repository holding the user's code, or {} when there is none."""
    def git(*args):
        return subprocess.run(['git', *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    try:
        commit = git('rev-parse', 'HEAD')
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if commit.returncode != 0:
        return {}
    return {'commit': commit.stdout.strip(), 'diff': git('diff', 'HEAD').stdout}
