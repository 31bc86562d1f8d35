"""Checkpoints hold state, not objects: the agent's state dict, its optimizers' and schedulers' state dicts, the
composed config and the counters. Written atomically (a temporary file, then a rename), so a run killed while
saving leaves the previous checkpoint whole; read with weights_only=True."""
import os
from dataclasses import asdict
from pathlib import Path

import torch

from ML.errors import CheckpointError


def _stateful(agent) -> dict:
    """The optimizers and schedulers an agent holds as attributes (not part of its nn.Module state dict)."""
    kinds = (torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler)
    return {name: value for name, value in vars(agent).items() if isinstance(value, kinds)}


def save(path: Path, agent, config: dict, counters):
    state = {'agent': agent.state_dict(),
             'optimizers': {name: value.state_dict() for name, value in _stateful(agent).items()},
             'config': config, 'counters': asdict(counters)}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    torch.save(state, temporary)
    os.replace(temporary, path)


def read(path: Path) -> dict:
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as error:  # torch raises several kinds for a file that is not a checkpoint
        raise CheckpointError(f'load={path}: not a readable checkpoint ({type(error).__name__}: '
                              f'{str(error).splitlines()[0] if str(error) else ""})') from error


def restore(agent, state: dict, path: Path):
    try:
        agent.load_state_dict(state['agent'])
    except RuntimeError as error:
        lines = str(error).splitlines()  # torch's first line is a header; the second names a mismatched tensor
        raise CheckpointError(f'load={path}: the checkpoint does not fit this agent '
                              f'({lines[1].strip() if len(lines) > 1 else error})') from error
    for name, value in _stateful(agent).items():
        if name in state['optimizers']:
            value.load_state_dict(state['optimizers'][name])


def find(load, own_path: Path, root: Path) -> Path:
    """The checkpoint `load=` names: true -> this run's own; 'path.pt' -> that file; 'words' -> the nearest path
    under root holding every word (fewest other path parts first, then the newest)."""
    if load is True:
        if not own_path.is_file():
            raise CheckpointError(f'load=true: no checkpoint at {own_path} for these hyperparameters; '
                                  f'train one first, or give load=path.pt')
        return own_path
    text = str(load)
    if text.endswith('.pt'):
        if not Path(text).is_file():
            raise CheckpointError(f'load={text}: no such file')
        return Path(text)
    words = text.replace('/', ' ').split()
    matches = [path for path in root.rglob('*.pt') if all(word in str(path.relative_to(root)) for word in words)]
    if not matches:
        raise CheckpointError(f'load={text!r}: no checkpoint under {root}/ has every word in its path')
    return min(matches, key=lambda path: (len(path.relative_to(root).parts), -path.stat().st_mtime))
