"""-m with a search space: optuna chooses the trials (ask/tell) instead of enumerating them; Hydra's launcher runs them.

    ML -m 'lr=tag(log,interval(1e-4,1e-1))' 'model.hidden=choice(64,128,256)' search.trials=20
    ML -m task=Benchmarking/Exp/best seed=1,2,3,4,5        # retrain the best trial over seeds

The space is written in Hydra's sweep grammar (ML/search_space.py), on the command line or in a recipe's
`search.params`; every other override is fixed. The study lives in Benchmarking/<experiment>/search.db, so the same
command run again continues it: finished trials count towards search.trials, and a trial that a killed or
interrupted search left unfinished is failed and asked again with the same parameters. After each batch of trials
the best so far is written as a recipe, Benchmarking/<experiment>/best.yaml, that `task=` loads (ML/search_study.py).

Each trial is a member of the sweep (ML/sweep.py): its job returns a Member, whose evaluation holds the objective.
The member reports each evaluation to the study through pruning_callback, so the median rule stops a bad trial
early in whichever process the launcher runs it.
"""
import math
import os
from dataclasses import dataclass
from pathlib import Path

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper

from ML import search_space, search_study
from ML.errors import ConfigError, MLError, Pruned
from ML.records.monitor import minimizes
from ML.specs import Member

SWEEPER = 'ML_search'  # hydra/sweeper=ML_search
SAMPLERS, PRUNERS, DIRECTIONS = ('tpe', 'random', 'cmaes'), ('median', 'none'), ('minimize', 'maximize', None)
NO_VERDICT = ('interrupted', 'not started')  # members whose trial is asked again when the search resumes


def is_search(overrides: list) -> bool:
    """Whether `-m` with these overrides (the command line's) searches rather than enumerates: an override uses
    interval(...) or tag(...), or search.trials is set, on the command line or by the recipe. Raises ConfigError for
    overrides that do not compose."""
    return searched_keys(overrides) is not None


def searched_keys(overrides: list):
    """The keys a `-m` with these overrides (the command line's) searches: its sweeps, and the recipe's search.params
    but those the command line fixes; None when it enumerates instead (see is_search). A sweep names its members'
    folders by these keys. Raises ConfigError for overrides that do not compose."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Sweep
    from hydra.errors import HydraException
    from ML.language import compose

    twin_keys, parser = compose.twins(compose.defaults()), OverridesParser.create()
    searching, swept, fixed, fixed_keys = False, set(), [], set()
    for text in overrides:
        try:
            override = parser.parse_override(compose.normalize(text, twin_keys))
        except HydraException:
            fixed.append(text)  # composing says what is wrong with it
            continue
        if override.is_hydra_override():  # the launcher and Hydra's own settings: the sweep checks them
            continue
        value = override.value()
        searching = searching or override.is_interval_sweep() or (isinstance(value, Sweep) and bool(value.tags)) or (
            override.key_or_group == 'search.trials' and value is not None)
        if override.is_sweep_override():
            swept.add(override.key_or_group)
        else:
            fixed.append(text)
            fixed_keys.add(override.key_or_group)
    try:
        search = compose.compose(fixed, Path.cwd())['search']
    except MLError:
        if searching:
            raise
        return None  # the fixed overrides compose only with a swept one (task=atari/pong,breakout): no recipe's search
    if not searching and search['trials'] is None:
        return None
    return swept | (set(search['params'] if isinstance(search['params'], dict) else ()) - fixed_keys)


def multirun(app, config_name: str, task_function, overrides: list) -> list:
    """Hydra's multirun (Hydra.multirun in hydra/_internal/hydra.py) searching with ML's sweeper,
    hydra/sweeper=ML_search: `app` is a Hydra instance (Hydra.create_main_hydra2), the other arguments are
    Hydra.multirun's. Returns the sweeper's batches of JobReturns, as Hydra's BasicSweeper does.

    Hydra's own multirun builds a sweeper only from a plugin class in the hydra_plugins namespace, found by importing
    every installed hydra_plugins package (Plugins._instantiate in hydra/core/plugins.py refuses any other
    _target_); here the sweeper is built from its ConfigStore node with hydra.utils.instantiate, so ML needs no
    package in that namespace. Raises ConfigError for a search that cannot run, before any trial."""
    from hydra._internal.callbacks import Callbacks
    from hydra.types import HydraContext, RunMode
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    config = app.compose_config(config_name, [*overrides, f'hydra/sweeper={SWEEPER}'], run_mode=RunMode.MULTIRUN,
                                with_log_configuration=True)
    callbacks = Callbacks(config)
    callbacks.on_multirun_start(config=config, config_name=config_name)
    sweeper = instantiate(config.hydra.sweeper)
    sweeper.setup(hydra_context=HydraContext(config_loader=app.config_loader, callbacks=callbacks),
                  task_function=task_function, config=config)
    returns = sweeper.sweep(arguments=OmegaConf.to_container(config.hydra.overrides.task))
    callbacks.on_multirun_end(config=config, config_name=config_name)
    return returns


def pruning_callback(config: dict):
    """The on_evaluation hook of a trial's run (ML.training.train), or None when the run is no trial of a search
    (search.trial is null) or the search does not prune (search.pruner=none).

    `config` is the member's composed config as Hydra gave it: its experiment names the study. The hook reports
    evaluation[objective] at counters.step to the stored study, and raises ML.errors.Pruned when the pruner finds the
    trial worse than its peers at that step; the budget's last evaluation is reported, never pruned. The study is
    loaded here, so this works in a launcher's worker processes too. Raises ConfigError when the storage holds no
    such trial."""
    search = config.get('search') or {}
    if search.get('trial') is None or search.get('pruner') == 'none':
        return None
    name, number = config['experiment'], search['trial']
    url = search_study.storage_url(search.get('storage'), name, Path.cwd())
    storage, optuna = search_study.storage(url), search_study.optuna()
    try:
        study = optuna.load_study(study_name=name, storage=storage, pruner=search_study.pruner(search['pruner']))
        trial = optuna.trial.Trial(study, storage.get_trial_id_from_study_id_trial_number(
            storage.get_study_id_from_name(name), number))
    except KeyError as error:
        raise ConfigError(f'search.trial={number}: the study {name} in {search_study.shown(url)} has no such trial; '
                          f'a search sets search.trial itself') from error
    objective = study.user_attrs['objective']
    train_steps, train_frames = config.get('train_steps'), config.get('train_frames')

    def on_evaluation(counters, evaluation: dict):
        if objective not in evaluation:
            return
        value = float(evaluation[objective])
        trial.report(value, counters.step)
        last = ((train_steps is not None and counters.step >= train_steps)
                or (train_frames is not None and counters.frame >= train_frames))
        if not last and trial.should_prune():
            raise Pruned(f'trial {number}: {objective} {value:.4g} at step {counters.step} is worse than the median '
                         f'of earlier trials at that step (search.pruner=median)')
    return on_evaluation


@dataclass
class SearchSweeperConf:
    _target_: str = 'ML.search.SearchSweeper'


ConfigStore.instance().store(group='hydra/sweeper', name=SWEEPER, node=SearchSweeperConf, provider='ML')


class SearchSweeper(Sweeper):
    """Hydra's Sweeper interface around an optuna study (hydra/sweeper=ML_search). Its settings are the config's
    `search` keys (Hyperparams/args.yaml), so that a recipe can hold them. sweep() returns the batches of JobReturns
    it launched, as Hydra's BasicSweeper does; each job's return value is a Member (ML/specs.py)."""

    def __init__(self):
        super().__init__()
        self.config = self.launcher = self.hydra_context = None
        self.job_index, self.best = 0, None  # the JobReturn of the best trial run here, which keeps its agent

    def setup(self, *, hydra_context, task_function, config) -> None:
        from hydra.core.plugins import Plugins
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                                task_function=task_function, config=config)

    def sweep(self, arguments: list) -> list:
        """Asks the study for n_jobs trials at a time, launches them, tells it how each ended, and writes best.yaml,
        until search.trials trials have finished or a member was interrupted."""
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException
        settings = Settings.read(self.config)
        space, fixed = self.space(arguments)
        experiment, cwd = str(self.config.experiment), Path.cwd()
        folder, url = cwd / 'Benchmarking' / experiment, search_study.storage_url(settings.storage, experiment, cwd)
        returns = []
        with search_study.Lock(folder / 'search.lock', url):
            study = search_study.open_study(url, experiment, settings, space, fixed)
            for trial in search_study.trials(study, 'RUNNING'):  # left by a search that was killed
                search_study.ask_again(study, trial.number, trial.params)
            while (left := settings.trials - search_study.finished(study)) > 0:
                asked = [study.ask({name: param.distribution for name, param in space.items()})
                         for _ in range(min(settings.n_jobs, left))]
                batch = [[*fixed, *(param.override(trial.params[name]) for name, param in space.items()),
                          f'search.trial={trial.number}'] for trial in asked]
                try:
                    self.validate_batch_is_legal(batch)
                    results = self.launcher.launch(batch, initial_job_idx=self.job_index)
                except BaseException as error:
                    for trial in asked:
                        search_study.ask_again(study, trial.number, trial.params)
                    if isinstance(error, (HydraException, OmegaConfBaseException)):  # a job's config does not compose
                        raise ConfigError(' '.join(str(error).split())) from error
                    raise
                self.job_index += len(batch)
                returns.append(results)
                going_on = self.tell(study, settings.objective, asked, results)
                search_study.write_best(study, space, fixed, folder, self.task_import(folder),
                                        unsearch='search.trials' not in map(search_study.key_of, fixed))
                if not going_on:
                    break
            print(f'ML: {search_study.summary(study, settings.trials, folder)}')
        return returns

    def space(self, arguments: list) -> tuple:
        """The searched params {name: Param}: the recipe's search.params, then the command line's sweeps, which win;
        and the fixed overrides. A key the command line fixes is not searched."""
        from omegaconf import DictConfig, OmegaConf
        from ML.language import compose
        params = self.config.search.params
        if params is not None and not isinstance(params, DictConfig):
            raise ConfigError(f'search.params={params}: expected a mapping of keys to sweeps, as a recipe writes it: '
                              "search: {params: {lr: 'tag(log,interval(1e-4,1e-1))'}}")
        twin_keys = compose.twins(compose.defaults())
        given = OmegaConf.to_container(params, resolve=True) if params is not None else {}
        in_recipe, _ = search_space.parse([compose.normalize(f'{key}={value}', twin_keys)
                                           for key, value in given.items()])
        space, fixed = search_space.parse(arguments)
        fixed_keys = set(map(search_study.key_of, fixed))
        space = {**{name: param for name, param in in_recipe.items() if name not in fixed_keys}, **space}
        if not space:
            raise ConfigError('search.trials: there is nothing to search; give a space in the sweep grammar, e.g. '
                              "'lr=tag(log,interval(1e-4,1e-1))' 'model.hidden=choice(64,128)', or search.params "
                              'in a recipe')
        return space, fixed

    def tell(self, study, objective: str, asked: list, results: list) -> bool:
        """Tells the study how each trial of a batch ended, and prints it. Returns False when the search must stop
        (a member was interrupted); raises ConfigError, after telling them all, when the evaluations lack the
        objective."""
        state = search_study.optuna().trial.TrialState
        going_on, missing = True, None
        for trial, result in zip(asked, results):
            try:
                member = result.return_value
            except Exception as error:  # the job itself failed (a launcher's error): a crashed trial, as a sweep has
                member = Member(tuple(result.overrides or ()), 'crashed', {}, None, error=f'{type(error).__name__}: '
                                f'{error}')
            score = member.score(objective)
            if member.status in ('completed', 'skipped') and score is not None and math.isfinite(score):
                study.tell(trial, score)
            elif member.status == 'pruned':
                study.tell(trial, state=state.PRUNED)
            elif member.status in NO_VERDICT:
                search_study.ask_again(study, trial.number, trial.params)
                going_on = False
            else:
                missing = missing or (member.evaluation if member.status != 'crashed' and score is None else None)
                trial.set_user_attr('error', member.error or f'{objective} is {score}')
                study.tell(trial, state=state.FAIL)
            shown = f', {search_study.score_text(objective, score)}' if score is not None else ''
            print(f'ML: trial {trial.number}: {member.status}{shown} ({search_study.params_text(trial.params)})')
        self.keep_best_agent(study, asked, results)
        if missing:
            raise ConfigError(f'search.objective={objective}: the trials\' evaluations hold {", ".join(missing)}; '
                              f'set search.objective to one of them')
        return going_on

    def keep_best_agent(self, study, asked: list, results: list):
        """Drops the agents of members run in this process (basic launcher) but the best trial's: a search of many
        trials would otherwise hold every trained network in memory, on the GPU too."""
        from hydra.core.utils import JobStatus
        best = study.best_trial.number if search_study.trials(study, 'COMPLETE') else None
        for trial, result in [*zip(asked, results), *([self.best] if self.best else [])]:
            if result.status != JobStatus.COMPLETED or getattr(result.return_value, 'agent', None) is None:
                continue
            if trial.number == best:
                self.best = (trial, result)
            else:
                result.return_value = result.return_value._replace(agent=None)

    def task_import(self, folder: Path) -> str:
        """The searched task as best.yaml imports it: a built-in recipe by name, a user's by its path from there."""
        task = str(self.config.hydra.runtime.choices.get('task') or 'classify')
        user_recipe = Path.cwd() / f'{task}.yaml'
        return str(Path(os.path.relpath(user_recipe, folder)).with_suffix('')) if user_recipe.is_file() else task


@dataclass
class Settings:
    """The config's search.* keys, checked, with their defaults filled in."""
    trials: int
    objective: str
    direction: str
    sampler: str
    pruner: str
    n_jobs: int
    storage: str
    seed: int

    @classmethod
    def read(cls, config) -> 'Settings':
        """From the composed multirun config; raises ConfigError naming a search.* key that cannot be."""
        search = config.search
        if not isinstance(search.trials, int) or isinstance(search.trials, bool) or search.trials < 1:
            given = 'null' if search.trials is None else search.trials
            raise ConfigError(f'search.trials={given}: a search needs its number of trials, e.g. search.trials=20')
        for key, known in (('sampler', SAMPLERS), ('pruner', PRUNERS), ('direction', DIRECTIONS)):
            if search[key] not in known:
                raise ConfigError(f'search.{key}={search[key]}: expected one of {", ".join(map(str, known))}')
        objective = search.objective or ('return' if config.Env is not None else 'accuracy')
        direction = search.direction or ('minimize' if minimizes(objective) else 'maximize')
        n_jobs = search.n_jobs if search.n_jobs is not None else _launcher_jobs(config.hydra.launcher)
        if not isinstance(n_jobs, int) or n_jobs < 1:
            raise ConfigError(f'search.n_jobs={n_jobs}: expected the number of trials launched at once, 1 or more')
        return cls(search.trials, objective, direction, search.sampler, search.pruner, n_jobs, search.storage,
                   config.seed)


def _launcher_jobs(launcher) -> int:
    """How many jobs the launcher runs at once: joblib's n_jobs (-1: every core, -2: all but one), else 1."""
    jobs = launcher.get('n_jobs')
    if jobs is None:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1
    return jobs if jobs > 0 else max(1, cores + 1 + jobs)
