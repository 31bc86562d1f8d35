"""A run's folder and the files that belong to it, with one owner.

    Benchmarking/<experiment>/<Agent>/<suite>/<task>_<seed>/      config.yaml  train.csv  eval.csv  status
                                                                  (crash.txt)  (media/)  .lock
    Checkpoints/<experiment>/<Agent>/<suite>/<task>_<seed>.pt
    Datasets/ReplayBuffer/<experiment>/<Agent>/<suite>/<task>_<seed>/

One run writes a folder at a time: it holds an exclusive lock (`flock`) on the folder's `.lock`, which records its
pid, host and start time. The operating system releases the lock when the process ends, however it ends (kill -9
too), so `status: running` beside a free lock is a run that was killed: the next run says so. A fresh run moves an
earlier run aside whole, its logs to `<task>_<seed>~<time>/` and its checkpoint and replay to the same name beside
them, so nothing a user had is overwritten. A resumed run cuts its logs back to the checkpoint's step, so every
step appears once.
"""
import csv
import fcntl
import json
import os
import shutil
import socket
import time
import traceback
from pathlib import Path
from typing import NamedTuple, Optional

from ML.errors import RunError
from ML.records.checkpoints import best_path

STATUSES = ('running', 'completed', 'crashed', 'interrupted')


class RunPaths(NamedTuple):
    folder: Path       # Benchmarking/<experiment>/<Agent>/<suite>/<task>_<seed>/: config, logs, status, media
    checkpoint: Path   # Checkpoints/<experiment>/<Agent>/<suite>/<task>_<seed>.pt
    replay: Path       # Datasets/ReplayBuffer/<experiment>/<Agent>/<suite>/<task>_<seed>/


class Earlier(NamedTuple):
    """What a folder holds from an earlier run: its status, and for a killed one who was running it."""
    status: str
    owner: dict        # pid, host, started (a time stamp), as the earlier run's .lock recorded them


def describe_owner(owner: dict) -> str:
    started = time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(owner['started'])) if 'started' in owner else '?'
    return f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}, started {started}"


class RunFolder:
    """The owner of a run's folder (see the module's docstring). Use:

        folder = RunFolder(paths)
        earlier = folder.claim()          # RunError if a live run holds it; what an earlier run left, or None
        folder.start(config, fresh=True)  # moves an earlier run aside (fresh) or cuts its logs back (resume)
        ... folder.end('completed') / folder.crash(error) ...
        folder.release()
    """

    def __init__(self, paths: RunPaths):
        self.paths, self.folder = paths, paths.folder
        self._lock_file = None

    # ---- the lock ---------------------------------------------------------------------------------------------

    def claim(self, checkpoints: bool = True) -> Optional[Earlier]:
        """Takes the folder for this process, after making sure the checkpoint's folder can be made too (when the
        run saves checkpoints): a folder that cannot be written is found before any training. Raises RunError
        naming the path, or the live run (pid, host) that holds the folder. Returns what an earlier run left
        there (status, and its owner as recorded), or None for a new folder."""
        for folder, what in ((self.paths.checkpoint.parent, 'the checkpoint\'s'), (self.folder, 'the run\'s'))[
                0 if checkpoints else 1:]:
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise RunError(f'{folder}: cannot create {what} folder ({error.strerror})') from error
        lock_path = self.folder / '.lock'
        while True:
            handle = open(lock_path, 'a+')
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _read_owner(lock_path)
                handle.close()
                raise RunError(f'{self.folder} is being written by a running run ({describe_owner(owner)}); run '
                               f'beside it with another experiment= or seed=, or stop that run first') from None
            except OSError:  # a file system without locks (some network mounts): one writer is the user's care
                pass
            if _same_file(handle, lock_path):  # not moved aside by another run between our open and lock
                break
            handle.close()
        earlier_owner = _read_owner(lock_path)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({'pid': os.getpid(), 'host': socket.gethostname(), 'started': time.time()}))
        handle.flush()
        self._lock_file = handle
        status = self.status()
        return Earlier(status, earlier_owner) if status else None

    def release(self):
        if self._lock_file is not None:
            self._lock_file.close()  # closing releases the flock
            self._lock_file = None

    # ---- status and files -------------------------------------------------------------------------------------

    def status(self) -> Optional[str]:
        """The folder's status (running, completed, crashed, interrupted), or None when it has none."""
        try:
            return (self.folder / 'status').read_text().strip() or None
        except FileNotFoundError:
            return None

    def start(self, config_text: str, fresh: bool, resume_step: int = 0) -> Optional[Path]:
        """A fresh run moves what an earlier run left aside; a resumed one cuts its logs back to resume_step.
        Then config.yaml and `status: running` are written. Returns the folder the earlier run's logs moved to
        (None when nothing moved)."""
        moved = self.move_aside() if fresh else None
        if not fresh:
            for name in ('train.csv', 'eval.csv'):
                cut_back(self.folder / name, resume_step)
        _write(self.folder / 'config.yaml', config_text)
        self.set_status('running')
        return moved

    def set_status(self, status: str):
        assert status in STATUSES, status
        _write(self.folder / 'status', f'{status}\n')

    def crash(self, error: BaseException):
        """status: crashed, and crash.txt with the one-line error and its traceback. On a full or unwritable disk
        nothing more can be written: the error itself still reaches the user."""
        try:
            self.set_status('crashed')
            _write(self.folder / 'crash.txt', f'{type(error).__name__}: {error}\n\n{traceback.format_exc()}')
        except OSError:
            pass

    def move_aside(self) -> Optional[Path]:
        """An earlier run's logs, checkpoint and replay move to <name>~<time> beside where they were, together.
        Returns where the logs went (None when there was nothing to move)."""
        leftovers = [path for path in (self.paths.checkpoint, best_path(self.paths.checkpoint), self.paths.replay)
                     if path.exists()]
        logs = [path for path in self.folder.iterdir() if path.name != '.lock']
        if not logs and not leftovers:
            return None
        stamp, n = time.strftime('%Y%m%d-%H%M%S'), 0
        while any(_aside(path, stamp, n).exists() for path in (self.folder, *leftovers)):
            n += 1
        aside = _aside(self.folder, stamp, n)
        aside.mkdir()
        for path in logs:
            path.rename(aside / path.name)
        for path in leftovers:
            path.rename(_aside(path, stamp, n))
        return aside


def _aside(path: Path, stamp: str, n: int) -> Path:
    name = f'{path.stem if path.suffix == ".pt" else path.name}~{stamp}{f"-{n}" if n else ""}'
    return path.with_name(name + ('.pt' if path.suffix == '.pt' else ''))


def _same_file(handle, path: Path) -> bool:
    try:
        return os.fstat(handle.fileno()).st_ino == path.stat().st_ino
    except FileNotFoundError:
        return False


def _read_owner(lock_path: Path) -> dict:
    try:
        return json.loads(lock_path.read_text() or '{}')
    except (OSError, ValueError):
        return {}


def _write(path: Path, text: str):
    """Writes a small file whole: a temporary beside it, then a rename (a reader never sees half of it)."""
    temporary = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    try:
        temporary.write_text(text)
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise RunError(f'{path}: cannot write ({error.strerror})') from error


def cut_back(path: Path, step: int):
    """Drops the rows of a CSV log written after `step` (by a run that went on past its last checkpoint)."""
    if not path.exists():
        return
    with path.open(newline='') as file:
        reader = csv.DictReader(file)
        columns, rows = reader.fieldnames, list(reader)
    kept = [row for row in rows if int(row['step']) <= step]
    if len(kept) == len(rows):
        return
    temporary = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    with temporary.open('w', newline='') as file:
        writer = csv.DictWriter(file, columns)
        writer.writeheader()
        writer.writerows(kept)
    os.replace(temporary, path)


def remove_replay(path: Path):
    """The replay a run kept only to survive an interruption, once the run has completed."""
    shutil.rmtree(path, ignore_errors=True)
