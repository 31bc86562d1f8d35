"""What a run logs: rows to its writers (train.csv and eval.csv always; TensorBoard, wandb, MLflow when asked, see
trackers.py) and the progress bar.

Columns: step, frame, episode, epoch (the Counters), time (seconds since the run started), then the metrics:
train.csv has what the agent's learn() returned (e.g. loss) and, online, the mean `return` of the episodes
finished since the last row; eval.csv has the evaluation's (accuracy, mse, or return).
"""
import csv
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from ML.records.trackers import TrackedRun, Writer, metrics as metrics_of


class CSV:
    """Rows appended to a CSV file. A metric that first appears in a later row (an RL loss, once learning starts)
    widens the header: the file is rewritten once with the new column, earlier rows left blank there."""

    def __init__(self, path: Path):
        self.path, self.columns = path, None
        if path.exists():
            with path.open() as file:
                self.columns = next(csv.reader(file), None)

    def write(self, row: dict):
        new_columns = [key for key in row if key not in (self.columns or [])]
        if self.columns is not None and new_columns:
            with self.path.open() as file:
                rows = list(csv.DictReader(file))
            self.columns += new_columns
            temporary = self.path.with_name(f'.{self.path.name}.tmp')
            with temporary.open('w', newline='') as file:
                writer = csv.DictWriter(file, self.columns)
                writer.writeheader()
                writer.writerows(rows)
            temporary.replace(self.path)
        header = self.columns is None
        if header:
            self.columns = list(row)
        with self.path.open('a', newline='') as file:
            writer = csv.DictWriter(file, self.columns)
            if header:
                writer.writeheader()
            writer.writerow(row)


class CSVWriter(Writer):
    """train.csv and eval.csv in the run's folder, a row per write (see CSV)."""

    def __init__(self, folder: Path):
        self.files = {'train': CSV(folder / 'train.csv'), 'eval': CSV(folder / 'eval.csv')}

    def write(self, kind: str, row: dict):
        self.files[kind].write(row)


def row(counters, elapsed: float, metrics: dict) -> dict:
    """A train.csv or eval.csv row: the Counters, `time` (seconds the run has trained) and the metrics as cells."""
    return {**asdict(counters), 'time': round(elapsed, 3), **{key: plain(value) for key, value in metrics.items()}}


def plain(value):
    """A metric as a CSV cell: a tensor or float rounded to 6 digits, anything else as it is."""
    return round(float(value), 6) if hasattr(value, 'item') or isinstance(value, float) else value


def shown(path: Path, cwd: Path = None) -> str:
    """A path as a run's lines show it: relative to the working directory (`cwd`, None: the current one) when it lies
    inside it, else whole (mini=true's temporary folder)."""
    cwd = cwd or Path.cwd()
    return str(path.relative_to(cwd) if path.is_relative_to(cwd) else path)


def scores(evaluation: dict) -> str:
    """An evaluation as a run's last line shows it: `accuracy 97.49%, loss 0.1522`."""
    return ', '.join(f'{key} {value:.2%}' if key == 'accuracy' else f'{key} {value:.4g}' if isinstance(value, float)
                     else f'{key} {value}' for key, value in evaluation.items())


NOT_SHOWN = {'return_std', 'episodes'}  # an evaluation's details, not its scores


class Logger:
    """The run's rows, handed to its writers, and its progress bar.

    run: the run's folder and name, and where trackers put it; trackers: the Writer classes opened when the run
    starts (trackers.chosen), beside train.csv and eval.csv; config: the composed config they record. elapsed:
    seconds a resumed run had already run, so that the `time` column goes on from there. main_process=False makes
    the logger write and show nothing (a process other than the main one of a multi-process run, as nanoGPT's
    master_process), while it still keeps the time.

    The bar names the run and shows the steps or frames per second, the latest loss and the latest evaluation (the
    final one once the bar is full); it leaves no line behind, and close() runs on every way a run ends."""

    def __init__(self, run: TrackedRun, total: int, unit: str = 'step', progress: bool = True, elapsed: float = 0.0,
                 trackers=(), config: dict = None, main_process: bool = True):
        self.run = run
        self.trackers, self.config, self.main_process = list(trackers), config, main_process
        self.total, self.unit, self.show = total, unit, progress and main_process
        self.writers, self.bar, self.stage = [], None, None
        self.start_time, self.time_offset = None, elapsed
        self.shown = {'train': '', 'eval': ''}

    def elapsed(self) -> float:
        """Seconds the run has trained, its earlier sessions included."""
        return self.time_offset + (time.perf_counter() - self.start_time if self.start_time is not None else 0.0)

    def start(self, counters):
        """Opens the writers (a tracker that refuses to start raises here, inside the run, which then counts as
        crashed) and the bar. The `time` column counts from here, the trackers' start-up left out."""
        if self.main_process:
            self.writers = [CSVWriter(self.run.folder)]
            for tracker in self.trackers:
                self.writers.append(tracker(self.run))
                if self.config is not None:
                    self.writers[-1].log_config(self.config)
        if self.show:
            self.bar = tqdm(total=self.total, initial=getattr(counters, self.unit), unit=self.unit,
                            desc=self.run.name, dynamic_ncols=True, leave=False)
        self.start_time = time.perf_counter()

    def _row(self, counters, metrics: dict) -> dict:
        return row(counters, self.elapsed(), metrics)

    def _write(self, kind: str, row: dict):
        for writer in self.writers:
            writer.write(kind, row)

    def progress(self, counters, stage: str = None):
        """The bar moved to the counters; stage says what the run is doing instead of learning (`filling replay`)."""
        if self.bar is not None:
            if stage != self.stage:
                self.stage = stage
                self.bar.set_description(f'{self.run.name} ({stage})' if stage else self.run.name, refresh=False)
            self.bar.update(getattr(counters, self.unit) - self.bar.n)

    def train(self, counters, metrics: dict, episode_returns: list):
        if episode_returns:
            metrics = {**metrics, 'return': sum(episode_returns) / len(episode_returns)}
        if metrics:
            row = self._row(counters, metrics)
            self._write('train', row)
            self._show('train', {k: v for k, v in metrics_of(row).items() if 'loss' in k or k == 'return'}, False)

    def eval(self, counters, metrics: dict):
        row = self._row(counters, metrics)
        self._write('eval', row)
        self._show('eval', {k: v for k, v in metrics_of(row).items() if k not in NOT_SHOWN}, True)

    def _show(self, kind: str, metrics: dict, refresh: bool):
        """The bar's latest `kind` metrics: `loss=0.312, eval accuracy=0.942`."""
        if self.bar is not None:
            text = ' '.join(f'{key}={value:.4g}' for key, value in metrics.items() if isinstance(value, (int, float)))
            self.shown[kind] = f'eval {text}' if kind == 'eval' and text else text
            self.bar.set_postfix_str(', '.join(text for text in self.shown.values() if text), refresh=refresh)

    def log_artifact(self, path: Path):
        """A file kept by the trackers that take files (config.yaml, the checkpoint); none when it is missing."""
        if Path(path).is_file():
            for writer in self.writers:
                writer.log_artifact(Path(path))

    def close(self, status: str = 'completed'):
        """Flushes and closes every writer (`status`: completed, crashed or interrupted, as trackers show the run)
        and clears the bar. Safe to call more than once."""
        writers, self.writers = self.writers, []
        try:
            for writer in writers:
                writer.close(status)
        finally:
            if self.bar is not None:
                self.bar.close()
                self.bar = None


@contextmanager
def busy(what: str, show: bool = True):
    """A line on the terminal saying what a long step of setting up is doing (`loading checkpoint ...`), cleared
    when it is done; nothing when the output is not a terminal or show is False."""
    with tqdm(desc=what, bar_format='{desc} ({elapsed})', leave=False, disable=None if show else True):
        yield
