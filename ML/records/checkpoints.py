"""Checkpoints hold state, not objects, and enough of it that a resumed run is the run that would have happened
without the interruption: the agent's state dict, the state of every optimizer, scheduler or other stateful
object it holds (a loss scaler), the random generators (torch's, numpy's, Python's, and those the agent, the
data order and the replay draw from), the world's state (the environments mid-episode) and the replay's, the loop's
own carry-over, the counters, the elapsed time and the composed config.

A checkpoint is written atomically (a temporary file, then a rename), so a run killed while saving leaves the
previous checkpoint whole, and no temporary survives the next run of the same name. A replay saved with it is
written first into a new folder that the checkpoint names, so a checkpoint and its replay are one unit: a kill
between the two leaves the previous pair. The best evaluation's checkpoint (save_best=true) lies beside the last
one, `<task>_<seed>.best.pt` (best_path), without the world's and the replay's parts. Read with
torch.load(weights_only=True).
"""
import os
import random
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ML.agents.update import takes_metric
from ML.errors import CheckpointError, RunError

STATEFUL = (torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler)
BEST = '.best.pt'  # the ending of a best evaluation's checkpoint, beside the last one


def _qualname(value) -> str:
    return f'{type(value).__module__}.{type(value).__qualname__}'


def stateful(agent) -> dict:
    """The objects an agent holds as attributes whose state is not in its nn.Module state dict: optimizers,
    schedulers, and anything else with state_dict() and load_state_dict() (a loss scaler, say)."""
    return {name: value for name, value in vars(agent).items()
            if isinstance(value, STATEFUL) or (not isinstance(value, (nn.Module, torch.Tensor, type))
                                               and callable(getattr(value, 'state_dict', None))
                                               and callable(getattr(value, 'load_state_dict', None)))}


def _generators(agent) -> dict:
    """The random generators an agent keeps of its own (DQN's exploration, say)."""
    return {name: value for name, value in vars(agent).items()
            if isinstance(value, (np.random.Generator, torch.Generator))}


def random_state(agent=None) -> dict:
    """torch's, numpy's and Python's global generators, and the agent's own, as plain values and tensors."""
    version, keys, gauss = random.getstate()
    kind, mt_keys, position, has_gauss, cached = np.random.get_state()
    state = {'torch': torch.get_rng_state(), 'python': [version, list(keys), gauss],
             'numpy': [kind, torch.from_numpy(mt_keys.astype(np.int64)), position, has_gauss, cached],
             'agent': {name: (g.get_state() if isinstance(g, torch.Generator) else g.bit_generator.state)
                       for name, g in _generators(agent).items()} if agent is not None else {}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_random_state(state: dict, agent=None):
    version, keys, gauss = state['python']
    random.setstate((version, tuple(keys), gauss))
    kind, mt_keys, position, has_gauss, cached = state['numpy']
    np.random.set_state((kind, mt_keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])
    for name, generator in _generators(agent).items() if agent is not None else ():
        if name in state['agent']:
            if isinstance(generator, torch.Generator):
                generator.set_state(state['agent'][name])
            else:
                generator.bit_generator.state = state['agent'][name]


def save(path: Path, agent, config: dict, counters, *, elapsed: float = 0.0, loop: dict = None, parts: dict = None):
    """Writes the run's state to path atomically. parts are the states of the run's other pieces, as plain values
    and tensors (the world's environments, the replay's or the data's order). Raises RunError naming the path on
    an OS error (a full disk, no permission); the previous checkpoint is then still whole."""
    state = {'agent': agent.state_dict(),
             'stateful': {name: value.state_dict() for name, value in stateful(agent).items()},
             'classes': {name: _qualname(value) for name, value in stateful(agent).items()},
             'config': config, 'counters': asdict(counters), 'elapsed': float(elapsed), 'loop': loop or {},
             'random': random_state(agent), **(parts or {})}
    temporary = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, temporary)
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise RunError(f'{path}: cannot save the checkpoint ({error.strerror or error}); '
                       f'the last one saved is kept') from error
    except BaseException:
        temporary.unlink(missing_ok=True)  # a Ctrl-C inside torch.save leaves no half-written temporary
        raise


def best_path(path: Path) -> Path:
    """Where the best evaluation's checkpoint of the run whose last checkpoint is `path` lies: <run>.best.pt."""
    return path.with_name(f'{path.stem}{BEST}')


def remove_temporaries(path: Path):
    """The temporaries of saves of this checkpoint, and of its best, that were killed before their rename."""
    for name in (path.name, best_path(path).name):
        for stale in path.parent.glob(f'.{name}.*.tmp'):
            stale.unlink(missing_ok=True)


def read(path: Path) -> dict:
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as error:  # torch raises several kinds for a file that is not a checkpoint
        raise CheckpointError(f'load={path}: not a readable checkpoint ({type(error).__name__}: '
                              f'{str(error).splitlines()[0] if str(error) else ""})') from error


def restore(agent, state: dict, path: Path) -> list:
    """Loads the agent's weights and its optimizers', schedulers' and other objects' states, keeping the
    hyperparameters the agent was built with now: a learning rate changed on resume takes effect, and a schedule
    is rebuilt for the current budget at the step it had reached. Returns one note for each thing that could not
    be carried over (an optimizer of another class starts afresh). Raises CheckpointError when the weights do not
    fit the agent (another architecture)."""
    try:
        agent.load_state_dict(state['agent'])
    except RuntimeError as error:
        lines = str(error).splitlines()  # torch's first line is a header; the second names a mismatched tensor
        raise CheckpointError(f'load={path}: the checkpoint does not fit this agent '
                              f'({lines[1].strip() if len(lines) > 1 else error}); the architecture cannot change '
                              f'on resume') from error
    saved, classes, notes = state.get('stateful', {}), state.get('classes', {}), []
    objects = stateful(agent)
    schedulers = {name: value for name, value in objects.items() if isinstance(value, STATEFUL[1])}
    for name, value in objects.items():
        if name not in saved or name in schedulers:
            continue
        if classes.get(name, _qualname(value)) != _qualname(value):
            notes.append(f'{name} is now {type(value).__name__} (was {classes[name].rsplit(".", 1)[-1]}): '
                         f'its state starts afresh')
            continue
        if isinstance(value, torch.optim.Optimizer):
            _restore_optimizer(value, saved[name])
        else:
            value.load_state_dict(saved[name])
    for name, scheduler in schedulers.items():
        if name not in saved:
            continue
        if classes.get(name, _qualname(scheduler)) != _qualname(scheduler):
            notes.append(f'{name} is now {type(scheduler).__name__} (was {classes[name].rsplit(".", 1)[-1]}): '
                         f'it starts from its first step')
            continue
        _restore_scheduler(scheduler, saved[name])
    return notes


def _restore_optimizer(optimizer, saved: dict):
    """The saved moments and step counts, under the hyperparameters the optimizer was built with now."""
    current = [{key: value for key, value in group.items() if key != 'params'} for group in optimizer.param_groups]
    optimizer.load_state_dict(saved)
    for group, hyperparameters in zip(optimizer.param_groups, current):
        group.update(hyperparameters)


def _restore_scheduler(scheduler, saved: dict):
    """The schedule as built now (its length may follow a new budget), brought to the step the saved one had
    reached by stepping it there, so the learning rate is what an uninterrupted run with this schedule would have
    (a closed form would round differently). A scheduler that steps with a metric (ReduceLROnPlateau) follows
    evaluations, not steps: its state is loaded, and the rate is where it had brought it."""
    if takes_metric(scheduler):
        scheduler.load_state_dict(saved)
        for group, lr in zip(scheduler.optimizer.param_groups, saved.get('_last_lr', [])):
            group['lr'] = lr  # where the plateaus brought it
        return
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # 'lr_scheduler.step() before optimizer.step()': no update is meant here
        for _ in range(saved['last_epoch'] - scheduler.last_epoch):
            scheduler.step()


def find(load, own_path: Path, root: Path) -> Path:
    """The checkpoint `load=` names: true -> this run's own; best -> this run's best (save_best=true); 'path.pt' ->
    that file; 'words' -> the nearest path under root holding every word (runs moved aside, named <run>~<time>,
    last; then best checkpoints: a word `best` picks those; then fewest other path parts; then the newest)."""
    if load is True or load == 'best':
        path = own_path if load is True else best_path(own_path)
        if not path.is_file():
            raise CheckpointError(f'load={str(load).lower()}: no checkpoint at {path} for these hyperparameters; '
                                  f'train one first{" with save_best=true" if load == "best" else ""}, or give '
                                  f'load=path.pt')
        return path
    text = str(load)
    if text.endswith('.pt'):
        if not Path(text).is_file():
            raise CheckpointError(f'load={text}: no such file')
        return Path(text)
    words = text.replace('/', ' ').split()
    matches = [path for path in root.rglob('*.pt') if all(word in str(path.relative_to(root)) for word in words)]
    if not matches:
        raise CheckpointError(f'load={text!r}: no checkpoint under {root}/ has every word in its path')
    return min(matches, key=lambda path: ('~' in path.name, path.name.endswith(BEST),
                                          len(path.relative_to(root).parts), -path.stat().st_mtime))
