"""What the benchmarks here share: a quiet workspace, interleaved rounds, the CPU pressure beside each figure, the
rate an ML run logged, and the two loops ML's classifier is measured against (a hand-written one, Lightning's)."""
import csv
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional as F


def pressure() -> str:
    """The CPU pressure now ('avg10=...', from /proc/pressure/cpu): a figure taken under load is to be discarded."""
    try:
        return Path('/proc/pressure/cpu').read_text().split()[1]
    except OSError:
        return 'avg10=n/a'


def workspace() -> Path:
    """One torch thread (what the peers are measured with) and a fresh temporary directory, made current, for the
    runs' outputs."""
    torch.set_num_threads(1)
    folder = Path(tempfile.mkdtemp(prefix='ML-bench-'))
    os.chdir(folder)
    return folder


def interleave(sides: dict, rounds: int, unit: str, figures: dict = None) -> dict:
    """Runs each side once a round, in turn, so a disturbance of this shared machine hits all of them: in the order
    given on even rounds and reversed on odd ones (an ABBA design), so that a drift of the machine's speed within a
    round favours no side; prints each figure beside the CPU pressure and returns each side's median. `figures`,
    when given, receives each side's figures round by round (for paired())."""
    figures = figures if figures is not None else {}
    figures.update({name: [] for name in sides})
    width = max(map(len, sides))
    for round in range(rounds):
        for name in (list(sides) if round % 2 == 0 else list(sides)[::-1]):
            side = sides[name]
            figures[name].append(side())
            print(f'round {round}: {name:<{width}} {figures[name][-1]:8.1f} {unit}  ({pressure()})', flush=True)
    return {name: statistics.median(values) for name, values in figures.items()}


def paired(figures: dict, a: str, b: str) -> float:
    """The median of each round's ratio of side a's figure to side b's: the sides of one round ran back to back,
    under much the same load, so this ratio shakes less than the ratio of the medians on a busy machine."""
    return statistics.median(x / y for x, y in zip(figures[a], figures[b]))


def logged_rate(train_csv: Path, counter: str = 'frame', keep=lambda row: True) -> float:
    """How fast an ML run went by its own train.csv: `counter` (step or frame) between the first and last rows
    kept, over the time between them, so that start-up is not counted."""
    with open(train_csv) as file:
        rows = [row for row in csv.DictReader(file) if keep(row)]
    return (int(rows[-1][counter]) - int(rows[0][counter])) / (float(rows[-1]['time']) - float(rows[0]['time']))


def hand_written(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, warm: int,
                 batch_size: int, precision: str = 'fp32') -> float:
    """The plainest correct loop a researcher writes by hand (cleanrl's kind): index a shuffled permutation of the
    samples x (N, ...) float32 and labels y (N,) int64, held where the model is, forward (in bf16 autocast with
    precision='bf16'), cross-entropy, backward, Adam(lr=1e-3) step, and read the loss every `warm` steps (what
    logging it costs, and on a GPU the wait for it). Returns steps per second over the steps after the first
    `warm`, as an ML run's train.csv times them from its first row."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    autocast = torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == 'bf16')
    order, position = torch.randperm(len(x), device=x.device), 0
    for step in range(1, steps + 1):
        if position >= len(x):
            order, position = torch.randperm(len(x), device=x.device), 0
        index = order[position:position + batch_size]
        position += batch_size
        with autocast:
            loss = F.cross_entropy(model(x[index]), y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % warm == 0:
            loss.item()
        if step == warm:
            start = time.perf_counter()
    loss.item()  # the device's last step done
    return (steps - warm) / (time.perf_counter() - start)


def through_lightning(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, warm: int,
                      batch_size: int) -> float:
    """The same model, data and batch fit by PyTorch Lightning's Trainer as its documentation writes it: a
    LightningModule with cross-entropy and Adam(lr=1e-3), Trainer(accelerator='cpu', devices=1, logger=False,
    enable_checkpointing=False, enable_progress_bar=False, max_steps=steps) on a DataLoader over TensorDataset(x, y)
    with shuffle=True. Returns steps per second over the steps after the first `warm`, timed by a callback."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = model

        def training_step(self, batch, batch_index):
            inputs, labels = batch
            return F.cross_entropy(self.model(inputs), labels)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    class Clock(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_index):
            if trainer.global_step == warm:
                self.start = time.perf_counter()
            if trainer.global_step == steps:
                self.end = time.perf_counter()

    clock = Clock()
    trainer = L.Trainer(accelerator='cpu', devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, max_steps=steps, callbacks=[clock])
    trainer.fit(Module(), DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True))
    return (steps - warm) / (clock.end - clock.start)


def quiet_lightning():
    """Lightning's advice to add DataLoader workers, and its info lines, printed every round: not wanted here."""
    import logging
    import warnings

    try:
        import lightning  # noqa: F401 -- its loggers are set up on import, so after it
    except ImportError:
        raise SystemExit("this benchmark's peer is PyTorch Lightning: pip install -e '.[bench]'") from None
    warnings.filterwarnings('ignore', module='lightning')
    logging.getLogger('lightning.pytorch').setLevel(logging.ERROR)
