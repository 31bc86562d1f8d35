"""What the config asks for, built: the world (a dataset or an environment), the agent with its networks sized
to the world's specs, and the replay. training.py calls these in that order, before the run writes anything: every
setting that cannot work, alone or with another, is refused here."""
import inspect
from pathlib import Path

from ML import distributed
from ML.errors import CheckpointError, ConfigError, MLError, ShapeError
from ML.language import build, paths


def _name(value) -> str:
    if isinstance(value, str):
        return value.rsplit('.', 1)[-1] if '(' not in value else value
    return getattr(value, '__name__', type(value).__name__)


def _label(value) -> str:
    """A value as the user wrote it, for messages."""
    if isinstance(value, (list, tuple)):
        return f"[{','.join(_label(v) for v in value)}]"
    return value if isinstance(value, str) else _name(value)


def _check_twins_used(c: dict):
    """Arguments for something that is not built are never silently ignored."""
    for key in ('Eyes', 'Scheduler', 'Agent', 'Aug', 'Dataset', 'Env'):
        if c[key] is None and c[key.lower()]:
            raise ConfigError(f'{key.lower()}.{next(iter(c[key.lower()]))}: {key} is null, so nothing takes it; '
                              f'set {key}=... too')


def make_world(c: dict, cwd: Path, device: str):
    _check_twins_used(c)
    if c['Env'] is not None and c['Dataset'] is not None:
        raise ConfigError(f'Env={_name(c["Env"])} and Dataset={_name(c["Dataset"])}: give one; '
                          f'for reinforcement learning use task=RL Env=...')
    if c['Env'] is not None and c['Aug'] is not None:
        raise ConfigError(f'Aug={_label(c["Aug"])}: augments the batches of a Dataset; in Env={_name(c["Env"])} an '
                          f'agent augments its own (Agent=DrQV2 shifts by agent.aug_pad)')
    if c['Env'] is not None:
        return make_env(c, cwd, device)
    if c['Dataset'] is None:
        raise ConfigError('Dataset and Env are both null: give Dataset=... (e.g. Digits) or task=RL Env=...')
    if c['video']:
        raise ConfigError(f'video=true: records evaluation episodes of an Env; Dataset={_name(c["Dataset"])} has none')
    try:
        return make_dataset(c, cwd, device)
    except ValueError as error:  # the world refuses a split with no samples on one side, naming the dataset
        raise ConfigError(f'{error} (test_split={c["test_split"]})') from error


def make_env(c: dict, cwd: Path, device: str):
    import gymnasium
    from ML.world.gym import GymWorld, register_namespace
    env = c['Env']
    if isinstance(env, str):
        register_namespace(env)  # ALE/Pong-v5 exists once ale_py registered it
    if isinstance(env, str) and env not in gymnasium.registry and not env.rsplit('-v', 1)[-1].isdigit():
        env = build.resolve(env, 'Env', cwd)  # a built-in suite or a user's environment class, by path
    if isinstance(env, str):
        _check_env_arguments(env, c['env'])
    else:
        build.check_arguments('Env', env, c['env'])
    try:
        return GymWorld(env, num_envs=c['num_envs'], eval_episodes=c['eval_episodes'], seed=c['seed'],
                        device=device, video=c['video'], process=distributed.rank(),
                        processes=distributed.world_size(), **c['env'])
    except (KeyboardInterrupt, MLError):
        raise
    except BaseException as error:  # the environment's constructor raised, or exited
        if isinstance(error, TypeError) and build.SIGNATURE_MISMATCH.search(str(error)) and \
                not paths.is_users_error(error, cwd):
            raise ConfigError(f'Env={_label(c["Env"])} with env.*={c["env"]}: {error}') from error
        raise paths.explain(f'Env={_label(c["Env"])}', error, cwd) from error


def _check_env_arguments(env_id: str, args: dict):
    """env.* of a registered id, checked against what gymnasium.make takes itself (max_episode_steps, ...) and,
    for the rest, the signature of the environment it builds."""
    import gymnasium
    creator = paths.env_creator(env_id)
    own = [name for name in inspect.signature(gymnasium.make).parameters if name not in ('id', 'kwargs')]
    build.check_arguments('Env', gymnasium.make, {name: value for name, value in args.items() if name in own},
                          name='gymnasium.make')
    if creator is not None:  # a `module:Env-v0` id is registered when gymnasium.make imports its module
        build.check_arguments('Env', creator, {name: value for name, value in args.items() if name not in own})


def make_dataset(c: dict, cwd: Path, device: str):
    from ML.world.datasets import DatasetWorld, split
    value = c['Dataset']
    target = build.resolve(value, 'Dataset', cwd) if isinstance(value, str) else value
    fill = {'root': str(cwd / 'Datasets'), 'download': True}
    arguments = dict(c['dataset'])
    reading = {key: arguments.pop(key) for key in ('keys', 'random') if key in arguments}  # ML's, not the dataset's
    try:
        if build._is_built(target) and 'train' in (build._parameters(target) or {}):
            train, test = (build.build('Dataset', target, arguments, cwd=cwd, fill={**fill, 'train': flag})
                           for flag in (True, False))
        else:
            train, test = split(build.build('Dataset', target, arguments, cwd=cwd, fill=fill),
                                c['test_split'], c['seed'])
    except (OSError, RuntimeError) as error:
        raise MLError(f'Dataset={_name(value)}: could not load it ({str(error).strip().splitlines()[0]})') from error
    if c['cv']['fold'] is not None:  # cross-validation: the training part's folds; the test split is never seen
        from ML.crossval import split as fold_split
        train, test = fold_split(train, c['cv']['folds'], c['cv']['fold'], c['seed'], c['cv']['stratified'],
                                 reading.get('keys'), _name(value))
    if c['mini']:
        from ML.mini import few
        train, test = few(train, test, c['batch_size'], c['seed'])
    world = DatasetWorld(train, test, name=_name(value), batch_size=c['batch_size'], device=device, seed=c['seed'],
                         num_workers=c['num_workers'], evaluated_on='test' if c['cv']['fold'] is None else 'held-out',
                         **reading)
    if c['Aug'] is not None:
        world.replay.augment = make_augmentation(c, cwd, world.obs_spec.shape, device)
        world.description += f'; each training batch augmented by Aug={_label(c["Aug"])} on {device}'
    return world


def make_augmentation(c: dict, cwd: Path, obs_shape: tuple, device: str):
    """Aug with its twin's arguments, drawing from a generator seeded by the run's seed (given to every element
    that takes `generator`), checked on a dummy batch to keep the observations' shape."""
    from torch import nn
    from ML.world.augment import Augmentation, seeded_generator
    generator = seeded_generator(c['seed'])
    seeded = generator.get_state()
    transform = build.build('Aug', c['Aug'], c['aug'], cwd=cwd, in_shape=obs_shape, fill={'generator': generator})
    produced = build.output_shape('Aug', transform, obs_shape)
    if produced != tuple(obs_shape):
        raise ShapeError(f'Aug={_label(c["Aug"])}: turns observations of shape {tuple(obs_shape)} into {produced}; '
                         f'an augmentation keeps the shape the networks were sized to')
    generator.set_state(seeded)  # the checks' draws are not the run's
    return Augmentation(transform.to(device) if isinstance(transform, nn.Module) else transform, generator)


def make_agent(c: dict, specs: dict, cwd: Path, device: str, lines: list = None):
    """Eyes -> Model sized to the data, the optimizer and the optimizer step (precision, clipping, accumulation),
    then the agent that holds them, its networks laid out and compiled as asked. `lines`, when given, receives
    what the run says of how it computes (precision, compile, channels_last, and why a layout was not taken)."""
    from ML.agents.compiling import choose_layout, prepare
    from ML.agents.update import Update, describe
    obs_spec = specs['obs_spec']
    out_spec = specs.get('label_spec') or specs.get('action_spec')
    eyes = build.build('Eyes', c['Eyes'] if c['Eyes'] is not None else 'Identity', c['eyes'], cwd=cwd,
                       in_shape=obs_spec.shape)
    features = build.output_shape('Eyes', eyes, obs_spec.shape)
    model = build.build('Model', c['Model'], c['model'], cwd=cwd, in_shape=features, out_shape=out_spec.head_shape)
    produced, expected = build.output_shape('Model', model, features), tuple(out_spec.head_shape)
    if produced != expected:
        what = f'{out_spec.n} classes or actions' if out_spec.discrete else 'the targets'
        hint = '; flatten first: Model=[nn.Flatten(),...]' if len(produced) > len(expected) else ''
        raise ShapeError(f'Model={_label(c["Model"])}: outputs shape {produced} from input {features}; '
                         f'expected {expected} ({what}){hint}')
    optim = build.build('Optim', c['Optim'], c['optim'], cwd=cwd, partial=True)
    scheduler = build.build('Scheduler', c['Scheduler'], c['scheduler'], cwd=cwd, partial=True) \
        if c['Scheduler'] is not None else None
    update = Update(precision=c['precision'], accelerate=c['accelerate'], device=device,
                    max_grad_norm=c['max_grad_norm'], accumulate_grad_batches=c['accumulate_grad_batches'])
    agent_name = c['Agent'] or default_agent(specs)
    agent = build.build('Agent', agent_name, c['agent'], cwd=cwd, fill={
        'eyes': eyes.to(device), 'model': model.to(device), 'optim': optim, 'scheduler': scheduler,
        'update': update, **specs})
    # an agent that steps its own optimizers cannot honour a precision or an accumulation; max_grad_norm is not
    # refused, as the RL recipes set it for the built-in agents and a user's agent there clips as it likes
    plain = {'precision': 'fp32', 'accelerate': False, 'accumulate_grad_batches': 1}
    asked = [f'{key}={str(c[key]).lower()}' for key in plain if c[key] != plain[key]]
    if asked and not any(value is update for value in vars(agent).values()):
        raise ConfigError(f'{asked[0]}: Agent={_label(agent_name)} keeps no update, so nothing would apply it; '
                          f'take `update` in its constructor and call self.update(loss, optimizer) in learn()')
    layout = choose_layout(c['channels_last'], agent, {'Eyes': eyes, 'Model': model}, obs_spec.shape, device)
    if lines is not None:
        if (c['precision'], c['accelerate'], c['compile'], layout.channels_last) != ('fp32', False, False, False):
            lines.append(describe(c['precision'], c['accelerate'], device, c['compile'], layout.channels_last))
        lines += [layout.note] if layout.note else []
    return prepare(agent.to(device), compile=c['compile'], channels_last=layout.channels_last)


def default_agent(specs: dict) -> str:
    """The learner a task gets when it names none: by what it learns to output."""
    if 'label_spec' in specs:
        return 'Classifier'
    return 'DQN' if specs['action_spec'].discrete else 'DrQV2'


def make_replay(c: dict, world, device: str, saved: Path, resume: dict = None, resume_folder: Path = None,
                restart: bool = True):
    """The dataset itself offline; online a replay (new, or the one saved in the folder `saved`), or none at all
    with stream=true. resume: the state of the replay a checkpoint was saved with (Replay.save_arrays), in
    resume_folder (None: saved); restart: whether the world starts new episodes (it does unless its environments
    were restored mid-episode)."""
    if not world.online:
        if c['stream']:
            raise ConfigError('stream=true: learns from an environment\'s steps as they come; a Dataset has none')
        return world.replay
    options = c['replay']
    if c['stream']:
        if c['offline'] or options['save'] or options['load'] or options['prioritized']:
            raise ConfigError('stream=true learns without a replay: drop offline, replay.save, replay.load and '
                              'replay.prioritized')
        from ML.world.stream import Stream
        return Stream(gamma=options['gamma'], device=device)
    from ML.world.replay import Replay
    # several processes: each samples its slice of the global batch_size from its own replay, with its own draws
    learning = dict(batch_size=len(distributed.shard(range(c['batch_size']))), nstep=options['nstep'],
                    gamma=options['gamma'], device=device, seed=distributed.process_seed(c['seed']),
                    clip_reward=options['clip_reward'], prioritized=options['prioritized'],
                    alpha=options['alpha'], beta=options['beta'], beta_steps=options['beta_steps'],
                    placement=options['device'], memmap_folder=saved)
    from_disk = options['load'] or c['offline']
    if from_disk and not saved.is_dir():
        key = 'offline=true' if c['offline'] else 'replay.load=true'
        raise CheckpointError(f'{key}: no saved replay at {saved}; save one with replay.save=true')
    if not from_disk:
        _check_capacity(options['capacity'], world.num_envs, options['nstep'], world.frame_stack)
    try:
        resume_folder = resume_folder or saved
        if resume and (resume_folder / resume['data']).is_dir():  # the replay saved with the checkpoint, as it was
            return Replay.load(resume_folder, state=resume, restart=restart, **learning)
        if from_disk:
            replay = Replay.load(saved, **learning)  # what the saved data fixes (capacity, stacking) stays
        else:
            replay = Replay(world.obs_spec, world.action_spec, capacity=options['capacity'],
                            frame_stack=world.frame_stack, **learning)
    except ValueError as error:  # the replay refuses impossible options (or a saved one that differs), naming the key
        raise ConfigError(str(error)) from error
    holds = replay.capacity // world.num_envs * world.num_envs  # a row of num_envs transitions at a time
    if c['batch_size'] > holds:
        raise ConfigError(f'batch_size={c["batch_size"]}: more than the {holds} transitions the replay holds '
                          f'(replay.capacity={replay.capacity}); lower batch_size or raise replay.capacity')
    if not c['offline'] and c['learn_after'] >= holds:
        raise ConfigError(f'learn_after={c["learn_after"]}: the replay holds at most {holds} transitions '
                          f'(replay.capacity={replay.capacity}), so learning would never start; lower learn_after '
                          f'or raise replay.capacity')
    return replay


def _check_capacity(capacity: int, num_envs: int, nstep: int, frame_stack: int):
    """A ring that keeps fewer steps of each env than an n-step return or a frame stack spans cannot sample one."""
    steps = capacity // num_envs
    if steps < max(nstep, frame_stack):
        spans = f'replay.nstep={nstep}' if nstep >= frame_stack else f'a stack of {frame_stack} frames'
        raise ConfigError(f'replay.capacity={capacity}: keeps {steps} steps of each of num_envs={num_envs} envs, '
                          f'fewer than {spans} spans; raise replay.capacity')
