"""A search: the space in Hydra's sweep grammar, trials chosen by optuna and run on Hydra's launchers, pruned from
their evaluations, stored so that an interrupted search resumes, and its best trial written as a recipe that task=
loads again."""
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from conftest import ml
from ML.errors import ConfigError, Interrupted, MLError, Pruned
from ML.search import Settings, is_search, multirun, pruning_callback, searched_keys
from ML.search_space import parse
from ML.specs import Counters, Member

optuna = pytest.importorskip('optuna')
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution  # noqa: E402

TINY = ['train_steps=20', 'eval_per_steps=10', 'progress=false']
SPACE = ['lr=tag(log,interval(1e-4,1e-1))', 'model.hidden=choice(16,32)']


# ---- a sweep's member, as ML/sweep.py makes one: a run of the trial's config, reported as a Member -------------

def member(config):
    """One trial: trains with the search's pruning hook, in a folder of its own. $KILL_AT_TRIAL kills the process
    (as kill -9 does) when that trial starts; $TERM_AT_TRIAL sends it SIGTERM at that trial's first evaluation."""
    from hydra.core.hydra_config import HydraConfig
    from ML.language import compose
    from ML.training import train
    values = compose.validate(config)
    trial, overrides = values['search']['trial'], tuple(HydraConfig.get().overrides.task)
    if trial == int(os.environ.get('KILL_AT_TRIAL', -1)):
        os.kill(os.getpid(), signal.SIGKILL)
    prune = pruning_callback(values)

    def on_evaluation(counters, evaluation):
        if trial == int(os.environ.get('TERM_AT_TRIAL', -1)):
            os.kill(os.getpid(), signal.SIGTERM)  # the run saves and stops at its next step
        if prune is not None:
            prune(counters, evaluation)
    values['experiment'] = f"{values['experiment']}/trial_{trial}"  # each trial its own run folder
    started = time.perf_counter()
    try:
        result = train(values, None, on_evaluation=on_evaluation)
    except Pruned as error:
        return Member(overrides, 'pruned', {}, None, time.perf_counter() - started, str(error))
    except Interrupted as error:
        return Member(overrides, 'interrupted', {}, None, time.perf_counter() - started, str(error))
    except MLError as error:
        return Member(overrides, 'crashed', {}, None, time.perf_counter() - started, str(error))
    return Member(overrides, 'completed', result.evaluation, str(result.folder), time.perf_counter() - started,
                  agent=result.agent)


def search(*overrides) -> list:
    """`ML -m <overrides>` as a search: every member, in the order the launcher returned them."""
    from ML.language import compose
    cwd = Path.cwd()
    batches = multirun(compose.hydra_app(cwd), 'args', member, [
        'hydra.job.chdir=false', 'hydra.output_subdir=null', 'hydra/job_logging=none', 'hydra/hydra_logging=none',
        'hydra.sweep.dir=Benchmarking/${experiment}/sweeps', *compose.prepare(list(overrides), cwd)])
    return [job.return_value for batch in batches for job in batch]


def study(cwd: Path, experiment='Exp'):
    return optuna.load_study(study_name=experiment, storage=f'sqlite:///{cwd}/Benchmarking/{experiment}/search.db')


def states(cwd: Path) -> list:
    return [trial.state.name for trial in study(cwd).trials]


# ---- the space ------------------------------------------------------------------------------------------------

FORMS = {
    'lr=tag(log,interval(1e-4,1e-1))': FloatDistribution(1e-4, 0.1, log=True),
    'lr=interval(0.1,0.9)': FloatDistribution(0.1, 0.9),
    'model.depth=int(interval(1,8))': IntDistribution(1, 8),
    'model.hidden=int(tag(log,interval(16,512)))': IntDistribution(16, 512, log=True),
    'model.depth=range(1,4)': IntDistribution(1, 3),
    'model.depth=range(10,0,-3)': IntDistribution(1, 10, step=3),
    'optim.momentum=range(0.8,1,0.05)': FloatDistribution(0.8, 0.95, step=0.05),
    'model.hidden=choice(64,128,256)': CategoricalDistribution([64, 128, 256]),
    'model.hidden=64,128': CategoricalDistribution([64, 128]),
    'model.hidden=shuffle(64,128)': CategoricalDistribution([64, 128]),
    "Model=MLP,'nn.Flatten()'": CategoricalDistribution(['MLP', 'nn.Flatten()']),
    'eyes.channels=choice([8,8],[16])': CategoricalDistribution(['[8,8]', '[16]']),
}


@pytest.mark.parametrize('form', FORMS)
def test_every_form_of_the_sweep_grammar_is_an_optuna_distribution(form):
    space, fixed = parse([form, 'seed=3'])
    (param,) = space.values()
    assert param.distribution == FORMS[form] and fixed == ['seed=3']


@pytest.mark.parametrize('form, value, config_value', [
    ("Model=MLP,'nn.Flatten()'", 'nn.Flatten()', 'nn.Flatten()'),
    ('eyes.channels=choice([8,8],[16])', '[8,8]', [8, 8]),
    ('++model.hidden=choice(64,128)', 128, 128),
])
def test_a_chosen_value_goes_back_into_an_override_and_a_recipe(form, value, config_value):
    from hydra.core.override_parser.overrides_parser import OverridesParser
    (param,) = parse([form])[0].values()
    override = OverridesParser.create().parse_override(param.override(value))
    assert (override.get_key_element(), override.value()) == (form.split('=')[0], config_value)
    assert param.value(value) == config_value


@settings(max_examples=50, deadline=None)
@given(low=st.floats(1e-8, 1e3), width=st.floats(1e-6, 1e3), fraction=st.floats(0, 1), log=st.booleans())
def test_a_trial_s_value_in_an_interval_reaches_its_run_unchanged(low, width, fraction, log):
    from hydra.core.override_parser.overrides_parser import OverridesParser
    high = low + width
    form = f'lr=tag(log,interval({low!r},{high!r}))' if log else f'lr=interval({low!r},{high!r})'
    (param,) = parse([form])[0].values()
    assert param.distribution == FloatDistribution(low, high, log=log)
    value = low + fraction * (high - low)
    assert OverridesParser.create().parse_override(param.override(value)).value() == value


@pytest.mark.parametrize('form, message', [
    ('task=glob(*)', r'task=glob\(\*\): a search takes choice'),
    ('lr=tag(fine,interval(0.1,1))', 'lr: tag fine means nothing to a search'),
    ('model.hidden=tag(log,choice(16,32))', 'takes an interval or a range, not a choice'),
    ('lr=interval(0.1,0.01)', r'lr: interval\(0.1,0.01\) needs low < high'),
    ('lr=tag(log,interval(0,1))', 'low > 0 on a log scale'),
    ('model.depth=range(3,3)', r'range\(3,3,1\) holds no value'),
])
def test_a_space_that_cannot_be_searched_is_one_line_naming_the_key(form, message):
    with pytest.raises(ConfigError, match=message):
        parse([form])


@pytest.mark.parametrize('overrides, searches', [
    (SPACE, True),
    (['model.hidden=int(interval(16,64))'], True),
    (['model.hidden=choice(16,32)', 'search.trials=4'], True),
    (['seed=1,2,3', 'lr=0.01,0.001'], False),
    (['model.hidden=choice(16,32)'], False),
    (['task=searching'], True),
    (['seed=1,2', 'hydra/launcher=ray'], False),  # the sweep says the launcher is not installed
])
def test_is_search(overrides, searches, user_dir):
    (user_dir / 'searching.yaml').write_text("imports: [classify, self]\nsearch: {trials: 3}\n")
    assert is_search(overrides) is searches


def test_the_searched_keys_are_the_command_line_s_sweeps_and_the_recipe_s_space(user_dir):
    (user_dir / 'tuned.yaml').write_text(
        "imports: [classify, self]\nsearch: {params: {lr: 'interval(0.001,0.1)', model.hidden: 'choice(16,32)'}}\n")
    assert searched_keys(['task=tuned', 'lr=0.01', 'model.depth=1,2', 'search.trials=4']) == {
        'model.hidden', 'model.depth'}
    assert searched_keys(['task=tuned', 'model.depth=1,2']) is None  # a space, but no trials: an enumeration


def test_the_objective_s_direction_follows_its_name():
    from omegaconf import OmegaConf
    from ML.language import compose

    def read(**search):
        config = OmegaConf.create({**compose.defaults(), 'hydra': {'launcher': {'n_jobs': -1}}})
        config.search.trials = 5
        config.search.update(search)
        return Settings.read(config)
    assert (read().objective, read().direction) == ('accuracy', 'maximize')
    assert (read(objective='mse').direction, read(objective='loss').direction) == ('minimize', 'minimize')
    assert read(objective='mse', direction='maximize').direction == 'maximize'
    assert read().n_jobs == len(os.sched_getaffinity(0)) and read(n_jobs=3).n_jobs == 3
    with pytest.raises(ConfigError, match='search.sampler=grid: expected one of tpe, random, cmaes'):
        read(sampler='grid')


# ---- pruning --------------------------------------------------------------------------------------------------

@pytest.fixture
def stored_study(user_dir):
    """Exp's study after five trials that reached accuracy 0.8 at step 10, and a sixth, running."""
    storage = f'sqlite:///{user_dir}/Benchmarking/Exp/search.db'
    (user_dir / 'Benchmarking' / 'Exp').mkdir(parents=True)
    stored = optuna.create_study(storage=storage, study_name='Exp', direction='maximize')
    stored.set_user_attr('objective', 'accuracy')
    distributions = {'lr': FloatDistribution(1e-4, 0.1, log=True)}
    for accuracy in (0.8, 0.82, 0.79, 0.81, 0.8):
        stored.add_trial(optuna.trial.create_trial(params={'lr': 0.01}, distributions=distributions,
                                                   value=accuracy, intermediate_values={10: accuracy}))
    return stored.ask(distributions).number


def config(trial, **search):
    from ML.language import compose
    values = compose.defaults()
    return {**values, 'train_steps': 20, 'search': {**values['search'], 'trial': trial, **search}}


def test_a_trial_worse_than_the_median_of_earlier_trials_is_pruned(stored_study, user_dir):
    pruning_callback(config(stored_study))(Counters(step=10), {'accuracy': 0.85})  # better than the median: goes on
    worse = study(user_dir).ask({'lr': FloatDistribution(1e-4, 0.1, log=True)}).number
    with pytest.raises(Pruned, match=r'trial 6: accuracy 0.2 at step 10 is worse than the median'):
        pruning_callback(config(worse))(Counters(step=10), {'accuracy': 0.2})


def test_the_last_evaluation_of_the_budget_is_reported_never_pruned(stored_study, user_dir):
    pruning_callback(config(stored_study))(Counters(step=20), {'accuracy': 0.1})
    assert study(user_dir).trials[stored_study].intermediate_values == {20: 0.1}


def test_no_pruning_outside_a_search_or_with_pruner_none(stored_study):
    assert pruning_callback(config(None)) is None
    assert pruning_callback(config(stored_study, pruner='none')) is None
    with pytest.raises(ConfigError, match='search.trial=42: the study Exp in Benchmarking/Exp/search.db has no'):
        pruning_callback(config(42))


# ---- searches -------------------------------------------------------------------------------------------------

def test_a_search_runs_its_trials_and_writes_the_best_as_a_recipe_task_loads(user_dir):
    members = search(*SPACE, 'search.trials=3', *TINY)
    assert [member.status for member in members] == ['completed'] * 3
    assert (user_dir / 'Benchmarking' / 'Exp' / 'search.db').is_file()
    best = study(user_dir).best_trial
    assert best.value == max(member.score() for member in members)
    assert [member.agent is not None for member in members] == [trial.number == best.number for trial in
                                                                study(user_dir).trials]

    recipe = yaml.safe_load((user_dir / 'Benchmarking' / 'Exp' / 'best.yaml').read_text())
    assert recipe == {'imports': ['classify', 'self'], 'experiment': 'Exp_best', 'train_steps': 20,
                      'eval_per_steps': 10, 'lr': best.params['lr'],
                      'model': {'hidden': best.params['model.hidden']}}
    retrain = yaml.safe_load(ml('--cfg', 'job', 'task=Benchmarking/Exp/best', cwd=user_dir).stdout)
    assert (retrain['lr'], retrain['model'], retrain['experiment'], retrain['train_steps']) == (
        best.params['lr'], {'hidden': best.params['model.hidden']}, 'Exp_best', 20)


def test_a_recipe_holds_the_space_and_its_best_retrains_without_searching(user_dir):
    (user_dir / 'tuned.yaml').write_text(
        "imports: [classify, self]\nEyes: CNN\neyes: {depth: 1}\n"
        "search:\n  trials: 2\n  params: {lr: 'tag(log,interval(1e-3,1e-1))', model.hidden: 'choice(16,32)'}\n")
    assert is_search(['task=tuned'])
    members = search('task=tuned', 'search.pruner=none', *TINY)
    assert len(members) == 2
    best = study(user_dir).best_trial
    assert set(best.params) == {'lr', 'model.hidden'}
    retrain = yaml.safe_load(ml('--cfg', 'job', 'task=Benchmarking/Exp/best', cwd=user_dir).stdout)
    assert (retrain['Eyes'], retrain['lr'], retrain['model']['hidden'], retrain['search']['trials']) == (
        'CNN', best.params['lr'], best.params['model.hidden'], None)
    assert 'imports: [../../tuned, self]' in (user_dir / 'Benchmarking' / 'Exp' / 'best.yaml').read_text()


def test_a_killed_search_resumes_to_exactly_its_trials(user_dir):
    """The process dies (kill -9) as trial 2 starts; the same command again fails that trial, asks its parameters
    again first, and ends with 4 completed trials."""
    tests = Path(__file__).parent
    # -P: the working directory stays off sys.path, so that the user's ML.py there cannot shadow ML
    command = [sys.executable, '-P', '-c', f'import sys; sys.path.insert(0, {str(tests)!r}); '
               f'from test_search import search; search(*sys.argv[1:])', *SPACE, 'search.trials=4', *TINY]
    environment = {**os.environ, 'OMP_NUM_THREADS': '1', 'KILL_AT_TRIAL': '2'}
    killed = subprocess.run(command, cwd=user_dir, env=environment, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert states(user_dir) == ['COMPLETE', 'COMPLETE', 'RUNNING']

    environment.pop('KILL_AT_TRIAL')
    resumed = subprocess.run(command, cwd=user_dir, env=environment, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    trials = study(user_dir).trials
    assert [trial.state.name for trial in trials] == ['COMPLETE', 'COMPLETE', 'FAIL', 'COMPLETE', 'COMPLETE']
    assert (trials[3].params, trials[3].user_attrs) == (trials[2].params, {'retry_of': 2})
    assert 'search Exp: 4 completed, 1 failed (search.trials=4)' in resumed.stdout


def test_an_interrupted_search_stops_and_resumes_with_the_interrupted_trial(user_dir, monkeypatch):
    monkeypatch.setenv('TERM_AT_TRIAL', '1')
    assert [member.status for member in search(*SPACE, 'search.trials=3', *TINY)] == ['completed', 'interrupted']
    assert states(user_dir) == ['COMPLETE', 'FAIL', 'WAITING']

    monkeypatch.delenv('TERM_AT_TRIAL')
    assert [member.status for member in search(*SPACE, 'search.trials=3', *TINY)] == ['completed', 'completed']
    trials = study(user_dir).trials
    assert [trial.state.name for trial in trials] == ['COMPLETE', 'FAIL', 'COMPLETE', 'COMPLETE']
    assert trials[2].params == trials[1].params


def test_a_search_of_another_space_or_budget_is_refused_in_the_same_study(user_dir):
    search(*SPACE, 'search.trials=1', *TINY)
    with pytest.raises(ConfigError, match=r'Benchmarking/Exp/search.db: its study Exp holds 1 finished trials of '
                                          r'another search \(the space of model.hidden; train_steps=20 -> '
                                          r'train_steps=30\)'):
        search(SPACE[0], 'model.hidden=choice(16,64)', 'search.trials=2', 'train_steps=30', *TINY[1:])


def test_joblib_runs_n_jobs_trials_at_once(user_dir):
    pytest.importorskip('hydra_plugins.hydra_joblib_launcher')
    result = ml('-m', *SPACE, 'search.trials=2', *TINY, 'hydra/launcher=joblib', 'hydra.launcher.n_jobs=2',
                cwd=user_dir)
    assert 'ML: sweep of 2 members: 2 completed' in result.stdout
    assert [math.isfinite(trial.value) for trial in study(user_dir).trials] == [True, True]


@pytest.mark.parametrize('overrides, message', [
    ([SPACE[0]], r'search.trials=null: a search needs its number of trials, e.g. search.trials=20'),
    (['search.trials=2'], 'search.trials: there is nothing to search'),
    ([*SPACE, 'search.trials=2', 'search.objective=return'],
     "search.objective=return: the trials' evaluations hold accuracy, loss; set search.objective to one of them"),
])
def test_a_search_that_cannot_run_is_one_line(overrides, message, user_dir):
    with pytest.raises(ConfigError, match=message):
        search(*overrides, *TINY)
