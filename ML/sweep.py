"""-m: a sweep over any hyperparameters, run by Hydra's multirun on its launchers (basic, joblib, submitit, ray).

Every member is a whole run: the overrides that vary across the sweep (the seed aside, and the keys that already
name a run's folder) name its `variant`, a folder of its own inside the experiment, for its logs, checkpoint and
replay (`Benchmarking/Exp/lr=0.01/Classifier/classify/Digits_1/`). A member that fails never stops the others: it
is reported as crashed, with its one-line error. Re-running the same sweep picks up where it stopped: completed
members are read back, interrupted or crashed ones resume from their checkpoints, the rest start. The sweep ends
with `Benchmarking/<experiment>/sweep.csv` (each member's overrides, status, final metrics, wall time and
folder) and a table on stdout, and hands back one Member record per member, in order.

Hydra runs nothing of this on its own: its basic sweeper raises a member's error after its batch and cannot
resume (hydra #2284, #3328), and it pins no GPU per local job (#1331, #2757).
"""
import csv
import os
import re
import time
from functools import partial
from pathlib import Path

import yaml

from ML.errors import ConfigError, Interrupted, Pruned
from ML.interruptions import Interruptions
from ML.language import compose
from ML.specs import Member

# keys that name a run's folder already (or say how it runs, not what): never part of a member's variant
NOT_VARIANT = {'seed', 'experiment', 'task', 'Agent', 'Env', 'Dataset', 'variant', 'load', 'progress', 'device'}
PARALLEL_LOCAL = ('joblib', 'submitit_local')  # launchers that run several members at once on this machine
INSTALLS = {'joblib': "pip install 'ML[experiments]'", 'submitit_local': "pip install 'ML[experiments]'",
            'submitit_slurm': "pip install 'ML[experiments]'", 'ray': 'pip install hydra-ray-launcher'}


def varying_keys(prepared: list) -> set:
    """The keys a sweep varies (`lr=0.1,0.2`, `choice(...)`, `range(...)`), in Hydra's own parse of them."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    overrides = OverridesParser.create().parse_overrides([o for o in prepared if not o.startswith('hydra')])
    return {override.key_or_group for override in overrides if override.is_sweep_override()}


def variant(job_overrides: list, varying: set) -> str:
    """A member's folder name: its values of the varying keys, `key=value` joined by commas, as Hydra's
    override_dirname writes them, made safe for a path."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    parts = []
    for override in OverridesParser.create().parse_overrides(job_overrides):
        if override.key_or_group in varying and override.key_or_group not in NOT_VARIANT:
            parts.append(f'{override.key_or_group}={override.get_value_element_as_str()}')
    return re.sub(r'[^\w.,+=@-]', '_', ','.join(sorted(parts)))  # a folder name, as args.yaml's `folder` reads it


def check_members(prepared: list, cwd: Path):
    """Every member of an enumerated sweep composed and checked as its run will be, before any member runs, so that
    a bad value of one (`lr=0.1,-1`) is one ConfigError naming it, and nothing is written. The members are Hydra's
    own expansion of the sweep (its basic sweeper's); a sweep it cannot expand here (a glob over config groups) is
    checked member by member as they run."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    try:
        overrides = OverridesParser.create().parse_overrides([o for o in prepared if not o.startswith('hydra')])
        members = [member for batch in BasicSweeper.split_arguments(overrides, None) for member in batch]
    except HydraException:
        return
    for member in members:
        compose.composed(member, cwd)


def _launcher(prepared: list) -> str:
    chosen = [o.split('=', 1)[1] for o in prepared if o.split('=', 1)[0].lstrip('+') == 'hydra/launcher']
    return chosen[-1] if chosen else 'basic'


def _gpus() -> list:
    """The GPUs this machine shows, as CUDA_VISIBLE_DEVICES names them."""
    visible = os.environ.get('CUDA_VISIBLE_DEVICES')
    if visible is not None:
        return [gpu for gpu in visible.split(',') if gpu.strip()]
    import torch
    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def sweep(overrides: list, live: dict = None, train=None) -> list:
    """Runs every member of the sweep `overrides` describes through Hydra's multirun; returns their Member records,
    in Hydra's order. train(config, live, member=True) -> RunResult runs one member (ML.training.train).
    Raises ConfigError for bad overrides (in any member) or a launcher that is not installed, before any member
    runs, and
    Interrupted when a signal stopped the sweep (its members saved; the same command resumes it)."""
    cwd = Path.cwd()
    prepared = compose.prepare(overrides, cwd)
    from ML import search
    searched = search.searched_keys(overrides)  # None: the sweep enumerates; else the keys the search sets
    varying = varying_keys(prepared) if searched is None else searched
    if searched is None:
        check_members(prepared, cwd)
    launcher, gpus = _launcher(prepared), _gpus()
    in_process = launcher == 'basic'
    sweep_stop = Interruptions()

    def member(config) -> Member:
        """One member, as Hydra's launcher runs it (in this process, or in a worker)."""
        from hydra.core.hydra_config import HydraConfig
        job = HydraConfig.get().job
        job_overrides = list(HydraConfig.get().overrides.task)
        if sweep_stop.requested is not None:  # a signal stopped the sweep: the rest wait for its re-run
            return Member(tuple(job_overrides), 'not started', {}, None)
        if Path.cwd() != cwd:  # a worker kept from an earlier sweep (joblib's loky reuses them) is elsewhere
            os.chdir(cwd)
        if launcher in PARALLEL_LOCAL and len(gpus) > 1:  # each parallel member its own GPU, round-robin
            os.environ['CUDA_VISIBLE_DEVICES'] = gpus[job.num % len(gpus)]
        started = time.perf_counter()
        try:
            values = compose.validate(config)
            values['variant'] = variant(job_overrides, varying) or None
            result = train(values, live, on_evaluation=search.pruning_callback(values), member=True)
        except Interrupted as error:
            sweep_stop.requested = sweep_stop.requested or error.signal
            return Member(tuple(job_overrides), 'interrupted', {}, None, time.perf_counter() - started, str(error))
        except Exception as error:  # a member that fails never stops the others
            kind = 'pruned' if isinstance(error, Pruned) else 'crashed'
            return Member(tuple(job_overrides), kind, {}, None, time.perf_counter() - started,
                          f'{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ""}')
        folder = os.path.relpath(result.folder, cwd)
        return Member(tuple(job_overrides), result.status, dict(result.evaluation), folder,
                      time.perf_counter() - started,
                      agent=result.agent if in_process else None)

    app = compose.hydra_app(cwd)
    from hydra.errors import HydraException, MissingConfigException
    if launcher.startswith('submitit'):  # its jobs start Python in this directory: a user's ML.py must not shadow ML
        os.environ.setdefault('PYTHONSAFEPATH', '1')
    with sweep_stop:
        try:
            multirun = app.multirun if searched is None else partial(search.multirun, app)
            batches = multirun(config_name='args', task_function=member, overrides=[
                'hydra.job.chdir=false',  # runs write under the user's directory, as single runs do
                'hydra.output_subdir=null',  # each run's folder already holds its config.yaml
                f'hydra.sweep.dir={_scratch()}',  # Hydra's own files; the sweep's are in Benchmarking/<experiment>/
                *prepared])
        except MissingConfigException as error:
            if 'hydra/launcher' in str(error):
                raise ConfigError(f'hydra/launcher={launcher}: not installed; '
                                  f'{INSTALLS.get(launcher, "install its Hydra launcher plugin")}') from error
            raise ConfigError(compose._hydra_message(error)) from error
        except HydraException as error:
            raise ConfigError(compose._hydra_message(error)) from error
    members = [_record(job) for batch in batches for job in batch]
    report(members, cwd, varying, overrides)
    if sweep_stop.requested is not None:
        raise Interrupted(f'{sweep_stop.name}: the sweep stopped; the same command resumes it '
                          f'({sum(m.status in ("completed", "skipped") for m in members)} of {len(members)} members '
                          f'done)', sweep_stop.requested)
    return members


def _scratch() -> str:
    import tempfile
    return tempfile.mkdtemp(prefix='ML-sweep-')


def _record(job) -> Member:
    """A job's Member; a job whose task function itself failed (a launcher's error) is a crashed member."""
    if isinstance(job.return_value, Member):
        return job.return_value
    error = getattr(job, '_return_value', None)
    return Member(tuple(job.overrides), 'crashed', {}, None, error=f'{type(error).__name__}: {error}')


def report(members: list, cwd: Path, varying: set, overrides: list):
    """sweep.yaml (the command's overrides: the sweep itself) and sweep.csv (every override of each member, its
    status, metrics, time, folder and error) in each experiment the sweep ran, and a table of every member on
    stdout (the overrides that vary)."""
    by_experiment = {}
    for member in members:
        experiment = Path(member.folder).parts[1] if member.folder else next(
            (o.split('=', 1)[1] for o in member.overrides if o.split('=', 1)[0] == 'experiment'), 'Exp')
        by_experiment.setdefault(experiment, []).append(member)
    metrics = sorted({key for member in members for key in member.evaluation})
    for experiment, group in by_experiment.items():
        path = cwd / 'Benchmarking' / experiment / 'sweep.csv'
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / 'sweep.yaml').write_text(yaml.safe_dump({'command': ['ML', '-m', *overrides]}, sort_keys=False))
        with path.open('w', newline='') as file:
            writer = csv.writer(file)
            writer.writerow(['overrides', 'status', *metrics, 'seconds', 'folder', 'error'])
            for member in group:
                writer.writerow([' '.join(member.overrides), member.status,
                                 *[member.evaluation.get(key, '') for key in metrics],
                                 round(member.seconds, 2), member.folder or '', member.error])
    def name(member):
        return ' '.join(o for o in member.overrides if o.split('=', 1)[0].lstrip('+') in varying) or 'member'
    width = max([len(name(member)) for member in members] + [6])
    print(f'{"member":<{width}}  {"status":<11}  ' + '  '.join(f'{key:>10}' for key in metrics))
    for member in members:
        print(f'{name(member):<{width}}  {member.status:<11}  ' + '  '.join(
            f'{_cell(member.evaluation.get(key)):>10}' for key in metrics))
    print(f'ML: sweep of {len(members)} members: ' + ', '.join(
        f'{sum(m.status == status for m in members)} {status}' for status in
        ('completed', 'skipped', 'crashed', 'interrupted', 'pruned', 'not started')
        if any(m.status == status for m in members))
        + f'; {", ".join(f"Benchmarking/{e}/sweep.csv" for e in by_experiment)}')


def _cell(value) -> str:
    if value is None:
        return '-'
    return f'{value:.4g}' if isinstance(value, float) else str(value)
