"""CSV logs (train.csv, eval.csv) and the progress bar.

Columns: step, frame, episode, epoch (the Counters), time (seconds since the run started), then the metrics:
train.csv has what the agent's learn() returned (e.g. loss) and, online, the mean `return` of the episodes
finished since the last row; eval.csv has the evaluation's (accuracy, mse, or return).
"""
import csv
import time
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm


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


def _plain(value):
    return round(float(value), 6) if hasattr(value, 'item') or isinstance(value, float) else value


class Logger:
    """train.csv, eval.csv and the progress bar. elapsed: seconds a resumed run had already run, so that the `time`
    column goes on from there."""

    def __init__(self, folder: Path, total: int, unit: str = 'step', progress: bool = True, elapsed: float = 0.0):
        self.train_csv, self.eval_csv = CSV(folder / 'train.csv'), CSV(folder / 'eval.csv')
        self.total, self.unit, self.show = total, unit, progress
        self.bar, self.start_time, self.time_offset = None, None, elapsed

    def elapsed(self) -> float:
        """Seconds the run has trained, its earlier sessions included."""
        return self.time_offset + (time.perf_counter() - self.start_time if self.start_time is not None else 0.0)

    def start(self, counters):
        self.start_time = time.perf_counter()
        if self.show:
            self.bar = tqdm(total=self.total, initial=getattr(counters, self.unit), unit=self.unit,
                            dynamic_ncols=True, leave=False)

    def _row(self, counters, metrics: dict) -> dict:
        return {**asdict(counters), 'time': round(self.elapsed(), 3), **{k: _plain(v) for k, v in metrics.items()}}

    def progress(self, counters):
        if self.bar is not None:
            self.bar.update(getattr(counters, self.unit) - self.bar.n)

    def train(self, counters, metrics: dict, episode_returns: list):
        if episode_returns:
            metrics = {**metrics, 'return': sum(episode_returns) / len(episode_returns)}
        if metrics:
            self.train_csv.write(self._row(counters, metrics))

    def eval(self, counters, metrics: dict):
        self.eval_csv.write(self._row(counters, metrics))
        if self.bar is not None:
            self.bar.set_postfix({k: f'{_plain(v):.4g}' for k, v in metrics.items()}, refresh=False)

    def close(self):
        if self.bar is not None:
            self.bar.close()
