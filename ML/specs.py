"""The typed values the rooms exchange: what the data looks like, what a batch holds, what an agent's learning step
reports, and the run's counters."""
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, NamedTuple, Optional, Union

import torch


@dataclass(frozen=True)
class Spec:
    """The shape of one observation, label or action (no batch dimension)."""
    shape: tuple = ()
    dtype: torch.dtype = torch.float32
    discrete: bool = False
    low: Optional[float] = None   # discrete: the first class or action; continuous: the lower bound, if any
    high: Optional[float] = None  # discrete: the last class or action; continuous: the upper bound, if any

    @property
    def n(self) -> int:
        """How many classes or actions a discrete spec has."""
        assert self.discrete, 'only a discrete spec counts its values'
        return int(self.high - self.low + 1)

    def plain(self) -> dict:
        """The spec as plain values, for a YAML config or a weights_only checkpoint."""
        return {**asdict(self), 'shape': list(self.shape), 'dtype': str(self.dtype).removeprefix('torch.')}

    @classmethod
    def from_plain(cls, values: dict) -> 'Spec':
        return cls(**{**values, 'shape': tuple(values['shape']), 'dtype': getattr(torch, values['dtype'])})

    @property
    def numpy_dtype(self):
        """The dtype numpy stores these values in (torch.uint8 -> numpy.uint8)."""
        return torch.empty(0, dtype=self.dtype).numpy().dtype

    @property
    def head_shape(self) -> tuple:
        """What a network's output must look like to predict this: one score per class, or the value itself."""
        return (self.n,) if self.discrete else tuple(self.shape)


class Batch(NamedTuple):
    """What the replay hands an agent to learn from; fields a task has no use for stay None."""
    obs: torch.Tensor
    action: Optional[torch.Tensor] = None
    reward: Optional[torch.Tensor] = None
    discount: Optional[torch.Tensor] = None  # gamma ** n, and 0 where the episode terminated within the n steps
    next_obs: Optional[torch.Tensor] = None
    label: Optional[torch.Tensor] = None
    weight: Optional[torch.Tensor] = None    # prioritized replay: each sample's importance-sampling weight
    index: Optional[torch.Tensor] = None     # prioritized replay: where each sample sits, to update its priority


Metric = Union[float, torch.Tensor, Callable[[], Union[float, torch.Tensor]]]
Metrics = Dict[str, Metric]  # what an agent's learn() returns, for train.csv: a float, a 0-d tensor (read only on the
# steps that write a row, so a GPU is not waited on every step), or a function of no arguments returning one,
# called only on those steps (a deferred metric: what it costs to compute is not paid on the others)


@dataclass
class Counters:
    """Where the run is. Only the loop (ML/run.py) changes these; everyone else gets them to read."""
    step: int = 0     # loop steps: offline a learning step; online a step of every env (autoreset-only steps aside)
    frame: int = 0    # samples seen: environment frames online, data points offline
    episode: int = 0  # episodes finished online; full passes over the data offline
    epoch: int = 0    # full passes over the data (offline only)


class RunResult(NamedTuple):
    """What one run hands back to whoever launched it (ML.launch, a sweep, a search)."""
    agent: Any                   # the trained agent, in eval mode
    evaluation: dict             # the last evaluation's metrics: accuracy, mse, or return (and return_std, ...)
    counters: Counters           # where the run ended
    folder: Path                 # its folder of logs: Benchmarking/<experiment>/<Agent>/<suite>/<task>_<seed>/
    checkpoint: Optional[Path]   # its checkpoint, None with save=false
    status: str = 'completed'    # or 'skipped': a sweep member an earlier run of the sweep had completed


class Member(NamedTuple):
    """One member of a sweep (or trial of a search), as the sweep reports it: plain values, so that a launcher
    running members in other processes (joblib, submitit) can send it back."""
    overrides: tuple             # the member's own overrides, as Hydra handed them ('lr=0.01', 'seed=2')
    status: str                  # completed, skipped (completed by an earlier run of the sweep), crashed,
                                 # interrupted, pruned (a search stopped it), or not started (the sweep stopped)
    evaluation: dict             # its last evaluation's metrics; {} when it has none
    folder: Optional[str]        # its run folder, relative to the working directory; None when not started
    seconds: float = 0.0         # its wall time in this sweep
    error: str = ''              # a crashed member's one-line error
    agent: Any = None            # the trained agent, from launchers that run members in this process (basic)

    def score(self, objective: str = None) -> Optional[float]:
        """The member's number for comparing it: its evaluation's `objective`, by default accuracy, mse or return
        (whichever it has); None when it has none."""
        keys = [objective] if objective else ['accuracy', 'mse', 'return']
        return next((float(self.evaluation[key]) for key in keys if key in self.evaluation), None)
