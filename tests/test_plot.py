"""Plot: figures and tables from runs' logs. A hand-made sweep with known numbers (2 agents x 3 seeds x 2 tasks)
checks the figures exist and the table equals a hand computation; the real Plot command checks the command line
and its errors; one end-to-end test plots two tiny runs of the real ML command."""
import csv
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings, strategies as st
from PIL import Image

import ML
from conftest import ml
from ML.records import scores
from ML.records.plot import main

SWEEP = 'Benchmarking/Sweep/lr=0.1'  # where a sweep put SAC's runs: a member's variant folder, one deeper
FINAL = {  # the last evaluation return of each (agent, task), seeds 1, 2, 3
    ('DrQV2', 'cheetah_run'): [500, 520, 570], ('DrQV2', 'walker_walk'): [700, 650, 900],
    ('SAC', 'cheetah_run'): [300, 330, 360], ('SAC', 'walker_walk'): [400, 460, 430],
}
PEAK = 1.1  # each run's best evaluation is 1.1 times its last one, at 2000 frames


def write_run(folder: Path, config: dict, evaluations: list, metric='return', x='frame', extra=None):
    """A run's folder as ML leaves it: config.yaml, status, eval.csv (a row per evaluation) and train.csv."""
    folder.mkdir(parents=True)
    (folder / 'config.yaml').write_text(yaml.safe_dump({**config, 'provenance': {'seed': config['seed']}}))
    (folder / 'status').write_text('completed\n')
    xs = [1000 * (i + 1) for i in range(len(evaluations))]
    with (folder / 'eval.csv').open('w', newline='') as file:
        writer = csv.writer(file)
        writer.writerow(['step', 'frame', 'episode', 'epoch', 'time', metric, *(extra or {})])
        for i, value in enumerate(evaluations):
            writer.writerow([xs[i], xs[i], 10 * i, 0, i, value, *[v[i] for v in (extra or {}).values()]])
    with (folder / 'train.csv').open('w', newline='') as file:
        writer = csv.writer(file)
        writer.writerow(['step', 'frame', 'episode', 'epoch', 'time', 'return', 'loss'])
        for i in range(1, 7):
            writer.writerow([500 * i, 500 * i, 5 * i, 0, i, 10 * i, '' if i == 1 else 1 / i])  # no loss at first


def write_sweep(root: Path) -> Path:
    """Benchmarking/Sweep: DrQV2 at the usual depth, SAC inside a sweep's folder, and one run moved aside."""
    for (agent, task), finals in FINAL.items():
        for seed, final in enumerate(finals, start=1):
            base = root / (SWEEP if agent == 'SAC' else 'Benchmarking/Sweep')
            config = {'Agent': agent, 'Env': 'DMC', 'env': {'task': task}, 'experiment': 'Sweep', 'seed': seed,
                      'lr': 1e-4}
            write_run(base / agent / 'dmc' / f'{task}_{seed}', config, [0.2 * final, PEAK * final, final])
    aside = root / 'Benchmarking/Sweep/DrQV2/dmc/cheetah_run_1~20250101-120000'  # superseded: never counted
    write_run(aside, {'Agent': 'DrQV2', 'Env': 'DMC', 'experiment': 'Sweep', 'seed': 1}, [99999, 99999, 99999])
    return root


@pytest.fixture
def sweep(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return write_sweep(tmp_path)


@pytest.fixture(scope='module')
def plotted(tmp_path_factory):
    """The hand-made sweep, plotted once by `ML.plot(experiment='Sweep', pdf=True)` for the tests that read it."""
    root = write_sweep(tmp_path_factory.mktemp('plotted'))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        return ML.plot(experiment='Sweep', pdf=True)


def table(path: Path) -> dict:
    """Each method and task's first row: its score's (a dataset's test loss follows its accuracy)."""
    rows = {}
    with path.open() as file:
        for row in csv.DictReader(file):
            rows.setdefault((row.get('experiment'), row['agent'], row['task'], row.get('variant', '')), row)
    return rows


def image(path: Path) -> Image.Image:
    with Image.open(path) as picture:
        picture.verify()  # a whole, valid PNG
    return Image.open(path)


def test_the_summary_equals_the_mean_and_std_over_seeds_by_hand(plotted):
    out = plotted.folder
    assert out.parts[-3:] == ('Benchmarking', 'Sweep', 'Plots')
    rows = table(out / 'summary.csv')
    cheetah = rows['Sweep', 'DrQV2', 'cheetah_run', '']  # finals 500, 520, 570 (the run moved aside is not there)
    assert cheetah['seeds'] == '3' and cheetah['metric'] == 'return' and cheetah['at'] == '3000'
    assert float(cheetah['final_mean']) == pytest.approx(530)
    assert float(cheetah['final_std']) == pytest.approx(math.sqrt((30 ** 2 + 10 ** 2 + 40 ** 2) / 2))  # 36.06
    assert float(cheetah['best_mean']) == pytest.approx(583)  # 550, 572, 627
    assert float(cheetah['best_std']) == pytest.approx(1.1 * 36.0555, rel=1e-4)
    walker = rows['Sweep', 'DrQV2', 'walker_walk', '']  # 700, 650, 900
    assert float(walker['final_mean']) == pytest.approx(750)
    assert float(walker['final_std']) == pytest.approx(math.sqrt((50 ** 2 + 100 ** 2 + 150 ** 2) / 2))  # 132.3
    sac = rows['Sweep', 'SAC', 'walker_walk', '']  # found one folder deeper, in the sweep's folder
    assert (float(sac['final_mean']), float(sac['final_std'])) == (pytest.approx(430), pytest.approx(30))
    assert len(rows) == 4
    markdown = (out / 'summary.md').read_text()
    assert '| Sweep | DrQV2 | dmc | cheetah_run | return | 3 | 530 ± 36 | 583 ± 40 | 3,000 frames |' in markdown
    assert plotted.summary[0]['final_mean'] == pytest.approx(530)


def test_the_figures_are_valid_images_sized_for_a_paper(plotted, monkeypatch):
    out = plotted.folder
    assert sorted(p.name for p in out.glob('*.png')) == ['aggregate_dmc.png', 'eval_return.png', 'train_loss.png',
                                                         'train_return.png']
    figure = image(out / 'eval_return.png')
    assert figure.size[0] == 6.8 * 300  # two tasks: the page width at 300 dpi
    assert min(figure.info['dpi']) >= 200
    assert (out / 'eval_return.pdf').read_bytes().startswith(b'%PDF')
    monkeypatch.chdir(out.parents[2])
    one_task = ML.plot(experiment='Sweep', task='walker_walk')
    assert one_task.folder == out / 'task=walker_walk'  # a filtered plot does not overwrite the whole one
    assert image(one_task.folder / 'eval_return.png').size[0] == 3.3 * 300  # one task: one column


def test_aggregates_over_tasks_are_rliable_iqm_median_and_mean(plotted):
    pytest.importorskip('rliable')
    with (plotted.folder / 'aggregate.csv').open() as file:
        rows = {row['method']: row for row in csv.DictReader(file)}
    drqv2 = rows['DrQV2']  # finals: 500 520 570 | 700 650 900
    assert drqv2['score'] == 'final return' and (drqv2['tasks'], drqv2['runs']) == ('2', '3')
    assert float(drqv2['IQM']) == pytest.approx((520 + 570 + 650 + 700) / 4)  # the middle half of six runs
    assert float(drqv2['median']) == pytest.approx((530 + 750) / 2)  # of the two tasks' means
    assert float(drqv2['mean']) == pytest.approx(640)
    assert float(rows['SAC']['IQM']) == pytest.approx((330 + 360 + 400 + 430) / 4)
    for name in ('IQM', 'median', 'mean'):
        assert float(drqv2[f'{name}_low']) <= float(drqv2[name]) <= float(drqv2[f'{name}_high'])
    assert float(drqv2['IQM_low']) < float(drqv2['IQM_high'])


def test_without_rliable_the_aggregates_are_one_line_naming_the_extra(sweep, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, 'rliable', None)  # import rliable now raises ImportError
    ML.plot(experiment='Sweep')
    output = capsys.readouterr().out
    assert "need rliable: pip install -e '.[plot]'" in output
    out = sweep / 'Benchmarking/Sweep/Plots'
    assert (out / 'eval_return.png').is_file() and not (out / 'aggregate.csv').exists()


def test_atari_aggregates_human_normalized_scores(tmp_path, monkeypatch):
    pytest.importorskip('rliable')
    normalized = {'pong': [0.5, 1.0], 'breakout': [2.0, 3.0]}
    for game, values in normalized.items():
        for seed, value in enumerate(values, start=1):
            config = {'Agent': 'DQN', 'Env': 'Atari', 'experiment': 'Atari', 'seed': seed}
            write_run(tmp_path / 'Benchmarking/Atari/DQN/atari' / f'{game}_{seed}', config, [0, 100 * value],
                      extra={'human_normalized': [0, value]})
    monkeypatch.chdir(tmp_path)
    ML.plot()  # the only experiment here
    out = tmp_path / 'Benchmarking/Atari/Plots'
    assert (out / 'eval_human_normalized.png').is_file() and (out / 'aggregate_atari.png').is_file()
    with (out / 'aggregate.csv').open() as file:
        row = next(csv.DictReader(file))
    assert row['score'] == 'final human_normalized'
    assert float(row['mean']) == pytest.approx((0.75 + 2.5) / 2)


def test_runs_a_sweep_set_apart_are_separate_methods(tmp_path, monkeypatch):
    for member, lr in enumerate([0.1, 0.01]):  # a sweep over lr, each member in its own folder
        for seed in (1, 2):
            config = {'Agent': 'DQN', 'Env': 'CartPole-v1', 'experiment': 'LR', 'seed': seed, 'lr': lr,
                      'progress': member == 0}  # progress is no hyperparameter: it sets nothing apart
            write_run(tmp_path / f'Benchmarking/LR/{member}/DQN/gym/CartPole-v1_{seed}', config,
                      [10, 100 * lr * seed])
    monkeypatch.chdir(tmp_path)
    ML.plot('experiment=LR')
    rows = table(tmp_path / 'Benchmarking/LR/Plots/summary.csv')
    assert rows['LR', 'DQN', 'CartPole-v1', 'lr=0.1']['final_mean'] == '15.0'  # 10 and 20
    assert rows['LR', 'DQN', 'CartPole-v1', 'lr=0.01']['final_mean'] == '1.5'


def test_gym_tasks_on_different_scales_get_no_aggregate(tmp_path, monkeypatch, capsys):
    for task, final in (('CartPole-v1', 500), ('Acrobot-v1', -80)):
        config = {'Agent': 'DQN', 'Env': task, 'experiment': 'Gym', 'seed': 1}
        write_run(tmp_path / 'Benchmarking/Gym/DQN/gym' / f'{task}_1', config, [0, final])
    monkeypatch.chdir(tmp_path)
    ML.plot()
    assert "no aggregate over gym's tasks: their returns are on different scales" in capsys.readouterr().out
    assert not (tmp_path / 'Benchmarking/Gym/Plots/aggregate.csv').exists()


# ---- the command line ---------------------------------------------------------------------------------------------

def plot_command(*args, cwd: Path) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != 'HYDRA_FULL_ERROR'}
    return subprocess.run(['Plot', *args], cwd=cwd, capture_output=True, text=True, env=environment, timeout=300)


def test_the_plot_command_draws_several_experiments_side_by_side(sweep):
    other = sweep / 'Benchmarking/Other/DrQV2/dmc/cheetah_run_1'
    write_run(other, {'Agent': 'DrQV2', 'Env': 'DMC', 'experiment': 'Other', 'seed': 1}, [0, 100])
    result = plot_command('experiments=[Sweep,Other]', 'band=se', cwd=sweep)
    assert result.returncode == 0, result.stderr
    out = sweep / 'Benchmarking/Plots/Other+Sweep'
    assert result.stdout.strip().splitlines()[-1] == (
        'Plot: 13 runs; 4 figures, summary.md, aggregate.md in Benchmarking/Plots/Other+Sweep')
    assert '| Other | DrQV2 | dmc | cheetah_run | return | 1 | 100 | 100 | 2,000 frames |' in result.stdout
    assert image(out / 'eval_return.png').size[0] == 2040
    rows = table(out / 'summary.csv')
    assert rows['Sweep', 'SAC', 'cheetah_run', '']['final_mean'] == '330.0'


def test_plot_of_a_folder_writes_into_it(sweep):
    result = plot_command(SWEEP, cwd=sweep)
    assert result.returncode == 0, result.stderr
    rows = table(sweep / SWEEP / 'Plots/summary.csv')
    assert {(agent, task) for _, agent, task, _ in rows} == {('SAC', 'cheetah_run'), ('SAC', 'walker_walk')}
    main(['experiment=Sweep'])
    everything = table(sweep / 'Benchmarking/Sweep/Plots/summary.csv')
    (sweep / 'Benchmarking/Sweep/Plots/summary.csv').unlink()
    (sweep / 'Benchmarking/Sweep/sweep.csv').write_text('overrides,status\n')
    main(['sweep=Sweep'])  # a sweep, by the experiment it ran in: all its members
    assert table(sweep / 'Benchmarking/Sweep/Plots/summary.csv') == everything


@pytest.mark.parametrize('args, message', [
    (['experiment=Nope'], 'Plot: PathError: experiment=Nope: no folder Benchmarking/Nope; experiments here: Sweep'),
    (['experimnt=Sweep'], "Plot: ConfigError: experimnt: not a key of Plot (did you mean 'experiment'?)"),
    (['band=wide'], 'Plot: ConfigError: band=wide: not a band; use ci (95% bootstrap CI of the mean)'),
    (['task=pong'], 'Plot: ConfigError: task=pong: no run of that task; tasks here: cheetah_run, walker_walk'),
    (['pdf=maybe'], 'Plot: ConfigError: pdf=maybe: expected true or false'),
    (['experiments=[Sweep'], 'Plot: ConfigError: experiments=[Sweep: '),
    (['no/such/folder'], 'Plot: PathError: no/such/folder: no such folder'),
    (['sweep=yesterday'], 'Plot: PathError: sweep=yesterday: no such folder, nor an experiment with a sweep.csv'),
    (['-m'], 'Plot: ConfigError: -m: unknown flag; Plot takes folders, key=value and --help'),
])
def test_bad_input_is_one_line_naming_the_key_and_nothing_is_written(sweep, capsys, args, message):
    with pytest.raises(SystemExit) as exit:
        main(args)
    assert exit.value.code == 1
    error = capsys.readouterr().err
    assert error.startswith(message) and error.count('\n') == 1
    assert not list(sweep.rglob('Plots'))


def test_the_real_command_fails_in_one_line_where_there_are_no_runs(tmp_path):
    result = plot_command(cwd=tmp_path)
    assert result.returncode == 1 and not result.stdout
    assert result.stderr == (f'Plot: PathError: ./Benchmarking: no such folder in {tmp_path}; train first (ML ...), '
                             'or name a folder of runs: Plot path/to/runs\n')
    (tmp_path / 'Benchmarking/Empty').mkdir(parents=True)
    result = plot_command('experiment=Empty', cwd=tmp_path)
    assert result.stderr.startswith('Plot: PathError: Benchmarking/Empty: no runs here')
    assert not list(tmp_path.rglob('Plots'))


def test_importing_ML_loads_no_plotting_library():
    code = 'import sys, ML; print(sorted(m for m in ("matplotlib", "rliable", "scipy") if m in sys.modules))'
    assert subprocess.run([sys.executable, '-c', code], capture_output=True, text=True).stdout == '[]\n'


# ---- the statistics ---------------------------------------------------------------------------------------------

def test_a_seed_cut_short_counts_only_as_far_as_it_went():
    rng = np.random.default_rng(0)
    line = scores.curve([(np.array([1., 2, 3]), np.array([1., 2, 3])), (np.array([1., 2]), np.array([3., 4]))],
                        'se', rng)
    assert line.x.tolist() == [1, 2, 3] and line.mean.tolist() == [2, 3, 3] and line.seeds.tolist() == [2, 2, 1]
    assert line.low[:2].tolist() == pytest.approx([1, 2]) and line.high[:2].tolist() == pytest.approx([3, 4])
    assert math.isnan(line.low[2])  # one seed has no spread


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.floats(-1e3, 1e3), min_size=4, max_size=4), min_size=2, max_size=6),
       st.sampled_from(sorted(scores.BANDS)))
def test_the_mean_is_numpys_and_the_band_brackets_it(values, band):
    y = np.array(values)
    line = scores.curve([(np.arange(4.), row) for row in y], band, np.random.default_rng(0))
    assert line.mean == pytest.approx(y.mean(axis=0))
    assert np.all(line.low <= line.mean + 1e-9) and np.all(line.mean <= line.high + 1e-9)
    if band == 'ci':  # a bootstrap mean never leaves the seeds' range
        assert np.all(line.low >= y.min(axis=0) - 1e-9) and np.all(line.high <= y.max(axis=0) + 1e-9)


def test_plus_minus_rounds_the_mean_to_the_std():
    assert scores.plus_minus(530, 36.0555) == '530 ± 36'
    assert scores.plus_minus(96.6612, 0.5234) == '96.66 ± 0.52'
    assert scores.plus_minus(100.0, math.nan) == '100'


# ---- end to end, and the README ---------------------------------------------------------------------------------

def test_two_real_runs_are_plotted(user_dir):
    for seed in (1, 2):
        ml('train_steps=20', 'eval_per_steps=10', 'log_per_steps=5', 'progress=false', f'seed={seed}', 'save=false',
           cwd=user_dir)
    result = plot_command(cwd=user_dir)
    assert result.returncode == 0, result.stderr
    out = user_dir / 'Benchmarking/Exp/Plots'
    assert image(out / 'eval_accuracy.png').size[0] == 990 and (out / 'train_loss.png').is_file()
    row = table(out / 'summary.csv')['Exp', 'Classifier', 'Digits', '']
    assert row['metric'] == 'accuracy (%)' and row['seeds'] == '2' and row['at'] == '20' and row['unit'] == 'steps'
    assert 0 < float(row['final_mean']) <= 100 and not (out / 'aggregate.csv').exists()  # no RL, no aggregate


def readme_plot_lines() -> list:
    readme = (Path(__file__).parents[1] / 'README.md').read_text()
    section = readme.split('## Plots', 1)[1].split('\n## ', 1)[0]
    return [line.split('#')[0].split() for line in re.findall(r'^Plot.*$', section, re.MULTILINE)]


def test_every_plot_line_in_the_readme_runs(tmp_path, monkeypatch, capsys):
    for experiment in ('DQN', 'DoubleDQN'):
        for seed in (1, 2, 3):
            config = {'Agent': 'DQN', 'Env': 'CartPole-v1', 'experiment': experiment, 'seed': seed}
            write_run(tmp_path / f'Benchmarking/{experiment}/DQN/gym/CartPole-v1_{seed}', config, [10, 100 + seed])
    monkeypatch.chdir(tmp_path)
    lines = readme_plot_lines()
    assert len(lines) >= 4
    for words in lines:
        main(words[1:])
        assert capsys.readouterr().out.splitlines()[-1].startswith('Plot: '), words
