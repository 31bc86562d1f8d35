"""Training runs: launch() merges the sources, composes and checks them; train() builds world -> specs -> agent ->
replay -> logger for one run, owns its folder, checkpoints and signals, and hands them to the loop (ML/run.py). The
only reader of the config: everything downstream gets plain arguments. (Hydra's launchers, which run a sweep's
members, are another thing: ML/sweep.py hands them train.)"""
import os
import random
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from ML import crossval, distributed, mini, resume, run
from ML.agents.update import metric_schedulers
from ML.builders import make_agent, make_replay, make_world
from ML.errors import CheckpointError, ConfigError, CrashedRun, Interrupted, MLError, RunError
from ML.language import compose
from ML.language.paths import is_users_error
from ML.records import checkpoints, provenance, trackers
from ML.records.logger import Logger, busy, scores, shown
from ML.records.monitor import Monitor, evaluation_metrics, task_score
from ML.records.run_folder import RunFolder, remove_replay
from ML.specs import Counters, RunResult, Spec


def launch(*overrides, **hyperparams):
    """Trains with the language of the command line and returns the agent.

        ML.launch('eyes.depth=5', task='classify', Model=my_model, Dataset='MNIST')

    Positional strings are overrides (`key=value`, or '-m' for a sweep, which returns every member's agent);
    keywords are values or live objects (an instance is used as
    it is, a class is built with its arguments). A script that calls launch also reads its own command line,
    which wins over the code: `python Run.py Eyes=CNN`.
    """
    code, live = compose.from_code(hyperparams)
    command_line = own_command_line()
    merged = compose.merge([*overrides, *code], [arg for arg in command_line if arg != '-m'])
    if '-m' in overrides or '-m' in command_line:
        return sweep([o for o in merged if o != '-m'], live)
    return train(compose.compose(merged, Path.cwd()), live).agent


def sweep(overrides: list, live: dict = None) -> list:
    """-m: every member of the sweep, run by ML.sweep on Hydra's launchers; their Member records, in order."""
    from ML.sweep import sweep as run_sweep
    mini.refuse_sweep(overrides)
    return run_sweep(overrides, live, train)


def own_command_line() -> list:
    """The overrides on the command line of the user's own script (`python Run.py Eyes=CNN`); none when Python
    runs an installed tool (pytest, a notebook kernel) or the ML command, which passes its own."""
    main_file = getattr(sys.modules.get('__main__'), '__file__', None)
    if not main_file or Path(sys.argv[0]).resolve() != Path(main_file).resolve():
        return []
    installed = {Path(p).resolve() for p in (sys.prefix, sys.exec_prefix, sys.base_prefix)}
    if any(parent in installed for parent in Path(main_file).resolve().parents):
        return []
    return [arg for arg in sys.argv[1:] if arg == '-m' or ('=' in arg and not arg.startswith('-'))]


def train(config: dict, live: dict = None, on_evaluation=None, member: bool = False,
          root: Path = None) -> RunResult:
    """One run of a composed config: build everything, then hand it to the loop. Returns the RunResult (the agent in
    eval mode, its last evaluation, counters, folder and checkpoint). on_evaluation(counters, evaluation) is
    called after every evaluation (see run.run).

    member: the run is a sweep's member, which picks up where an earlier run of the same sweep left it: a member
    that completed with this config is not trained again (its result is read back), one that was interrupted,
    crashed or killed resumes from its checkpoint, and one that completed a shorter budget goes on to this one.

    root: where the run writes Benchmarking/, Checkpoints/ and Datasets/ReplayBuffer/ (None: the working
    directory; mini=true picks a fresh temporary folder, ML/mini.py). cv.folds runs every fold (ML/crossval.py).

    Raises MLError subclasses for what the user can fix (before anything is written), RunError when the run's
    folder is held by a live run or a disk refuses a write, NonFiniteLoss when the loss turns nan, and Interrupted
    after a signal stopped the run (its checkpoint saved)."""
    if config['mini'] and root is None:
        return mini.check(config, live, train)
    if config['cv']['folds'] is not None and config['cv']['fold'] is None:
        return crossval.cross_validate(config, live, train, on_evaluation, root)
    c = compose.live_objects(config, live or {})
    cwd = Path.cwd()
    root = root or cwd
    if c['evaluate'] and not c['load']:
        raise CheckpointError("evaluate=true: no checkpoint to evaluate; give load=true (this experiment's), "
                              "load=best, load='words' or load=path.pt")
    device = distributed.start(_device(c['device']), c['num_processes'])
    tracker_writers = trackers.chosen(c)  # each one installed
    _seed(distributed.process_seed(c['seed']))

    # build: world -> specs -> agent (everything that can fail on bad input fails here, before any write)
    world = make_world(c, cwd, device)
    if c['mini']:
        world = mini.shorten(world)  # one short evaluation episode
    specs = {'obs_spec': world.obs_spec,
             **({'action_spec': world.action_spec} if world.online else {'label_spec': world.label_spec})}
    plain_specs = {key: spec.plain() for key, spec in specs.items()}
    computing = []  # how the run computes (precision, compile, layout), said once it starts
    agent = make_agent(c, specs, cwd, device, computing)
    paths = resume.run_paths(root, c, type(agent).__name__, world)
    if c['load'] is True and not c['variant'] and not resume.same_run(paths, config):
        found = resume.sweep_member_variant(cwd, c, type(agent).__name__, world, config)
        if found:  # the sweep member with these settings: the run goes on in its folder
            c['variant'] = config['variant'] = found
            paths = resume.run_paths(cwd, c, type(agent).__name__, world)
    if member and not c['load']:
        earlier = resume.member_state(paths, config)
        if earlier == 'completed':
            return resume.completed(paths, agent)
        c['load'] = earlier == 'resume'

    # resume: the checkpoint's weights, optimizers and schedules, the world's envs where they were, its replay
    counters, state, notes, resuming = Counters(), {}, [], False
    if c['load']:
        path = checkpoints.find(c['load'], paths.checkpoint, cwd / 'Checkpoints')
        with busy(f'loading checkpoint {path.name}', show=c['progress']):
            state = checkpoints.read(path)
        notes += checkpoints.restore(agent, state, path)
        counters = Counters(**state['counters'])
        notes.insert(0, resume.line(path, counters, state['config'], config, cwd))
        resuming = path.resolve() == paths.checkpoint.resolve()  # its own folder goes on; another run's starts one
        if resuming and not c['evaluate'] and resume.finished(paths, counters, c['train_steps'], c['train_frames']):
            if distributed.is_main():  # nothing to train: the run's folder and files are left as they are
                print(f'ML: {shown(paths.folder, cwd)} completed at step {counters.step}, as far as {resume.budget(c)} '
                      f'goes: nothing to train (a larger budget goes on; evaluate=true evaluates it)')
            return resume.completed(paths, agent, state)
        if c['evaluate']:  # the checkpoint evaluated, one marked row in eval.csv, nothing else written
            from ML.evaluation import evaluate_checkpoint
            return evaluate_checkpoint(world, agent, counters, checkpoint=path, paths=paths,
                                       elapsed=state.get('elapsed', 0.0), video=c['video'], cwd=cwd)
    distributed.check_agent(agent)
    distributed.broadcast_state(agent)  # every process starts from process 0's weights
    # online, each process takes back its own environments, replay and random generators (ML/distributed.py)
    part = distributed.own_part(state) if state and world.online else {}
    envs_resumed = bool(part.get('world')) and world.load_state_dict(part['world'])
    if part.get('world') is not None and not envs_resumed:
        notes.append(f'Env={world.name} could not be saved mid-episode: its environments start new episodes')
    missing = distributed.gather([distributed.rank()] if state and world.online and not part else [])
    if missing:  # a checkpoint saved by fewer processes than this run has
        notes.append(f'process{"es" if len(missing) > 1 else ""} {", ".join(map(str, missing))}: new episodes and '
                     f'an empty replay (the checkpoint was saved by fewer processes); learning goes on once every '
                     f'replay holds learn_after')
    replay_folder = distributed.replay_folder(paths.replay)  # where this process saves its replay
    resumed_loop = dict(state.get('loop') or {})  # what the loop carried between steps ({}: a fresh run)
    if state and world.online:  # the episode returns this process had not logged yet
        resumed_loop['episode_returns'] = part.get('episode_returns', [])
    replay = make_replay(c, world, device, paths.replay, resume=part.get('replay'), resume_folder=replay_folder,
                         restart=not envs_resumed)
    if state and world.online and not c['stream'] and not c['offline'] and len(replay) == 0 and counters.step:
        notes.append('this checkpoint was saved without its replay (replay.save=true keeps it with every '
                     'checkpoint): the replay refills before learning goes on')
    if state and not world.online and callable(getattr(replay, 'load_state_dict', None)) and 'replay' in state:
        replay.load_state_dict(state['replay'])  # the data's order and the place in the current pass

    # the monitored metric: early stopping, the best checkpoint and the schedulers stepped with a metric
    stop_early = c['early_stop']
    monitor = Monitor(stop_early['metric'] or task_score(world), stop_early['mode'], stop_early['patience'],
                      stop_early['min_delta'], keep_best=c['save_best'], schedulers=metric_schedulers(agent),
                      scheduler_mode=(c['scheduler'] or {}).get('mode'))
    monitor.check(evaluation_metrics(world, agent))

    git = provenance.git_state(cwd)
    if c['git_clean'] and provenance.dirty(git):
        unclean = provenance.dirty(git)
        raise ConfigError(f'git_clean=true: the repository of {cwd} has {", ".join(unclean[:3])}'
                          f'{" and more" if len(unclean) > 3 else ""}; commit them, or run with git_clean=false')

    # the run's folder: claimed (one writer at a time), an earlier run moved aside or its logs cut back
    folder = RunFolder(paths) if distributed.is_main() else distributed.Silent()  # one writer: process 0
    earlier = folder.claim(checkpoints=c['save'])
    try:
        if distributed.is_main():
            checkpoints.remove_temporaries(paths.checkpoint)
        if earlier is not None and earlier.status in ('running', 'interrupted') and not resuming:
            notes.append(resume.earlier_line(earlier, paths, cwd))
        history = resume.history(paths.folder, counters) if resuming else []
        saved = {**config, 'provenance': {
            'agent': type(agent).__name__, 'suite': world.suite, 'task': world.name, 'seed': c['seed'],
            'specs': plain_specs, 'versions': provenance.versions(), 'git': git,
            **({'cuda_visible_devices': os.environ['CUDA_VISIBLE_DEVICES']}
               if 'CUDA_VISIBLE_DEVICES' in os.environ else {}),
            **({'resumed': history} if history else {})}}
        moved = folder.start(yaml.safe_dump(saved, sort_keys=False), fresh=not resuming, resume_step=counters.step)
        if moved is not None and (earlier is None or earlier.status not in ('running', 'interrupted')):
            notes.append(f'{shown(paths.folder, cwd)}: the {earlier.status if earlier else "earlier"} run there moved '
                         f'aside to {moved.name} (its checkpoint and replay, if any, alike)')
    except BaseException:
        folder.release()
        raise
    if c['video'] and distributed.is_main():
        world.video_folder = paths.folder / 'media'
    if state and (part.get('random') or not world.online):  # offline, every process draws as process 0 did
        checkpoints.set_random_state(part.get('random') or state['random'], agent)
    for line in [getattr(world, 'description', None), *computing, *notes]:
        if line and distributed.is_main():
            print(f'ML: {line}')

    unit = 'step' if c['train_steps'] is not None or c['train_frames'] is None else 'frame'
    tracking = c['tracking']
    tracked = trackers.TrackedRun(
        paths.folder, name='/'.join(filter(None, [c['variant'], paths.folder.name])),
        project=tracking['project'] or c['experiment'],
        group=tracking['group'] or (c['experiment'] if member else None),  # a sweep's members, shown together
        entity=tracking['entity'], tags=tuple(tracking['tags']), uri=tracking['uri'], start_step=counters.step)
    logger = Logger(tracked, total=c['train_steps'] if unit == 'step' else c['train_frames'], unit=unit,
                    progress=c['progress'], elapsed=state.get('elapsed', 0.0), trackers=tracker_writers, config=config,
                    main_process=distributed.is_main())  # the other processes log nothing
    online_replay = world.online and not c['stream'] and not c['offline']
    stop = distributed.AgreedInterruptions()  # a signal to any process stops every process on the same step

    def checkpoint(counters, loop):
        """The run saved as one unit: the replay's arrays (each process its own), then the checkpoint naming them
        (process 0's, holding every process's environments, replay state and random generators), then the replays
        made current. An interrupted run keeps its replay even when replay.save=false, so that it can resume."""
        keep_replay = online_replay and (c['replay']['save'] or stop.requested is not None)
        replay_state = replay.save_arrays(replay_folder) if keep_replay else None
        if world.online:
            own = {'world': world.state_dict(), 'replay': replay_state, 'random': checkpoints.random_state(agent),
                   'episode_returns': loop['episode_returns']}
            others = distributed.gather_parts(own)[1:]
            parts = {'world': own['world'], **({'replay': replay_state} if replay_state is not None else {}),
                     **({'processes': others} if others else {})}
        else:
            parts = {'replay': getattr(replay, 'state_dict', dict)()}  # the data's order: the same in every process
        if c['save'] and distributed.is_main():
            checkpoints.save(paths.checkpoint, agent, {**config, 'specs': plain_specs}, counters,
                             elapsed=logger.elapsed(), loop=loop, parts=parts)
        if world.online:  # every process saves its part: the checkpoint naming every replay is written first
            distributed.barrier()
        if replay_state is not None:
            replay.commit(replay_folder, replay_state)

    # process 0 alone writes checkpoints; online, every process saves its part with it
    saves = (c['save'] or online_replay) and (distributed.is_main() or world.online)

    def save_best(counters, loop):
        """The best evaluation's weights, its optimizers' states and counters, beside the last checkpoint."""
        checkpoints.save(checkpoints.best_path(paths.checkpoint), agent, {**config, 'specs': plain_specs}, counters,
                         elapsed=logger.elapsed(), loop=loop)

    started = time.perf_counter()
    try:
        with stop:
            evaluation = run.run(world, agent, replay, logger, counters,
                                 train_steps=c['train_steps'], train_frames=c['train_frames'],
                                 eval_per_steps=c['eval_per_steps'], log_per_steps=c['log_per_steps'],
                                 save_per_steps=c['save_per_steps'],
                                 learn_after=1 if c['stream'] else c['learn_after'],
                                 learn_per_steps=c['learn_per_steps'], learn_steps=c['learn_steps'],
                                 offline=c['offline'], checkpoint=checkpoint if saves else None,
                                 stop_requested=stop.agree, resumed=resumed_loop,
                                 on_evaluation=on_evaluation, monitor=monitor,
                                 save_best=save_best if c['save_best'] and distributed.is_main() else None)
        logger.log_artifact(paths.folder / 'config.yaml')
        if c['save'] and c['tracking']['log_model']:
            logger.log_artifact(paths.checkpoint)
        logger.close('completed' if stop.requested is None else 'interrupted')
    except KeyboardInterrupt as error:  # a second signal: stopped at once, the last checkpoint kept
        logger.close('interrupted')
        folder.set_status('interrupted')
        folder.release()
        raise Interrupted(f'{error or "interrupted"} at step {counters.step}; the last checkpoint saved is kept',
                          signal.SIGINT) from None
    except BaseException as error:
        logger.close('crashed')
        folder.crash(error)
        folder.release()
        if isinstance(error, OSError):  # a full disk, a folder made read-only: the path and the system's reason
            raise RunError(f'{error.filename or paths.folder}: cannot write ({error.strerror or error})') from error
        if not isinstance(error, MLError) and is_users_error(error, cwd):
            error.crashed_run = CrashedRun(counters.step, shown(paths.folder / 'crash.txt', cwd))
        raise
    finally:
        if hasattr(world, 'close'):
            world.close()
    if stop.requested is not None:
        folder.set_status('interrupted')
        folder.release()
        saved_to = f'saved {shown(paths.checkpoint, cwd)}; load=true resumes it' if c['save'] else \
            'nothing saved (save=false)'
        raise Interrupted(f'{stop.name} at step {counters.step}: {saved_to}', stop.requested)
    if online_replay and not c['replay']['save'] and not c['replay']['load'] and distributed.is_main():
        remove_replay(paths.replay)  # kept only to survive an interruption
    folder.set_status('completed')
    folder.release()
    saved_to = f', checkpoint {shown(paths.checkpoint, cwd)}' if c['save'] else ''
    if c['save_best'] and monitor.best is not None:
        saved_to += (f', best {shown(checkpoints.best_path(paths.checkpoint), cwd)} ({monitor.metric} '
                     f'{monitor.shown(monitor.best)} at step {monitor.best_step})')
    stopped = f'; {monitor.summary()}' if monitor.stopped else ''
    if distributed.is_main():
        print(f'ML: {counters.step} steps, {counters.frame} frames in {time.perf_counter() - started:.1f}s; '
              f'{"evaluation" if world.online else world.evaluated_on} {scores(evaluation or {})}{stopped}; '
              f'logs {shown(paths.folder, cwd)}'
              f'{saved_to}')
    return RunResult(agent.train(False), evaluation or {}, counters, paths.folder,
                     paths.checkpoint if c['save'] else None)


def _device(device: str) -> str:
    if device == 'auto':
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ConfigError(f'device={device}: not a device (auto, cpu, cuda, cuda:1, ...)') from error
    if parsed.type == 'cpu':
        return device
    backend = getattr(torch, parsed.type, None)  # torch.cuda, torch.mps, torch.xpu: each says what this machine has
    if backend is None or not hasattr(backend, 'is_available') or not backend.is_available():
        raise ConfigError(f'device={device}: this machine has no {parsed.type} device; use device=auto or cpu')
    count = backend.device_count() if hasattr(backend, 'device_count') else 1
    if parsed.index is not None and parsed.index >= count:
        raise ConfigError(f'device={device}: this machine has {count} {parsed.type} device{"s" if count > 1 else ""} '
                          f'({parsed.type}:0 to {parsed.type}:{count - 1})')
    return device


def _seed(seed: int):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_agent(path_or_words, **hyperparams):
    """The agent of a checkpoint, rebuilt from the config it holds (no data needed) and loaded.

    `path_or_words`: a path.pt, or words its path under ./Checkpoints holds (`'MyExp MNIST'`). Objects that
    were passed from code to the run are passed again here, by the same key (`Model=my_model`)."""
    cwd = Path.cwd()
    path = checkpoints.find(path_or_words, cwd / 'Checkpoints' / 'none.pt', cwd / 'Checkpoints')
    return rebuilt_agent(path, hyperparams)[0]


def rebuilt_agent(path: Path, hyperparams: dict = None, live: dict = None, device: str = None) -> tuple:
    """(agent, specs): the agent of the checkpoint at `path`, built from the config it holds with `hyperparams` over
    it (keys added since it was written take their defaults) and `live` objects by key, on `device` (None: its
    config's), loaded and in eval mode; specs maps obs_spec and label_spec or action_spec to their Spec."""
    state = checkpoints.read(path)
    c = compose.live_objects({**compose.defaults(), **state['config'], **(hyperparams or {})}, live or {})
    specs = {key: Spec.from_plain(spec) for key, spec in c.pop('specs').items()}
    agent = make_agent(c, specs, Path.cwd(), device or _device(c['device']))
    checkpoints.restore(agent, state, path)
    return agent.train(False), specs
