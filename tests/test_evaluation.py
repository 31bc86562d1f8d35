"""Evaluation on demand, early stopping, the best checkpoint and schedulers stepped with the evaluation's metric: what
a user sees in eval.csv, train.csv, the checkpoints and the last line, through the real ML command."""
import csv
import textwrap

import pytest
import torch

from conftest import checkpoint, ml, run_dir
from ML.records import checkpoints, runs
from ML.records.monitor import Monitor, minimizes
from ML.specs import Counters

QUICK = ['progress=false', 'batch_size=32', 'log_per_steps=5', 'eval_per_steps=5']
FROZEN = ['Optim=torch.optim.SGD', 'optim.lr=0']  # weights that never change: every evaluation scores the same
PLATEAU = ['Scheduler=torch.optim.lr_scheduler.ReduceLROnPlateau', 'scheduler.patience=1', 'scheduler.factor=0.1',
           'scheduler.eps=0', 'Optim=torch.optim.SGD', 'lr=1e-9']  # a step too small to change a prediction: a plateau


def rows(path) -> list:
    with open(path, newline='') as file:
        return list(csv.DictReader(file))


def stopping_step(table: list, metric: str, patience: int, min_delta: float, maximize: bool = True):
    """The step where early stopping must end a run that logged `table`: the evaluation after which `patience`
    evaluations in a row did not better the best so far by more than min_delta (None: it never stops)."""
    best, waited = None, 0
    for row in table:
        score = float(row[metric]) * (1 if maximize else -1)
        if best is None or score > best + min_delta:
            best, waited = score, 0
        else:
            waited += 1
            if waited == patience:
                return int(row['step'])
    return None


def test_early_stopping_ends_the_run_at_the_evaluation_where_patience_ran_out(user_dir):
    result = ml(*QUICK, 'train_steps=100', 'early_stop.patience=2', 'early_stop.min_delta=0.02', cwd=user_dir)
    table = rows(run_dir(user_dir) / 'eval.csv')
    expected = stopping_step(table, 'accuracy', patience=2, min_delta=0.02)
    assert expected is not None and expected < 100  # learning slows below 2% per evaluation well before step 100
    assert int(table[-1]['step']) == expected  # no evaluation after it
    assert f'stopped early at evaluation {len(table)} (step {expected})' in result.stdout.splitlines()[-1]
    assert (run_dir(user_dir) / 'status').read_text() == 'completed\n'
    saved = torch.load(checkpoint(user_dir), weights_only=True)
    assert saved['counters']['step'] == expected and saved['loop']['monitor']['waited'] == 2


def test_a_resumed_run_goes_on_counting_and_one_stopped_early_writes_nothing_again(user_dir):
    line = [*QUICK, *FROZEN, 'early_stop.patience=3']
    ml(*line, 'train_steps=10', cwd=user_dir)  # evaluations at 5 (the best) and 10 (one without improvement)
    ml(*line, 'train_steps=100', 'load=true', cwd=user_dir)
    # counting went on from the checkpoint: 15 and 20 make three; a count started afresh would stop at 30
    assert [row['step'] for row in rows(run_dir(user_dir) / 'eval.csv')] == ['5', '10', '15', '20']
    logs = {name: (run_dir(user_dir) / name).read_bytes() for name in ('train.csv', 'eval.csv')}
    again = ml(*line, 'train_steps=100', 'load=true', cwd=user_dir)
    assert {name: (run_dir(user_dir) / name).read_bytes() for name in logs} == logs
    assert 'stopped early at evaluation 4 (step 20)' in again.stdout
    assert torch.load(checkpoint(user_dir), weights_only=True)['counters']['step'] == 20


def test_the_best_checkpoint_holds_the_best_evaluations_weights(user_dir):
    result = ml(*QUICK, 'train_steps=40', 'lr=0.05', 'save_best=true', cwd=user_dir)
    table = rows(run_dir(user_dir) / 'eval.csv')
    best_row = max(table, key=lambda row: float(row['accuracy']))  # the first of equal ones: a tie is no better
    best = checkpoints.best_path(checkpoint(user_dir))
    assert torch.load(best, weights_only=True)['counters']['step'] == int(best_row['step'])
    assert f'best {best.relative_to(user_dir)} (accuracy' in result.stdout
    ml('progress=false', 'evaluate=true', 'load=best', cwd=user_dir)
    again = rows(run_dir(user_dir) / 'eval.csv')[-1]
    assert (again['step'], again['accuracy'], again['loss']) == (best_row['step'], best_row['accuracy'],
                                                                 best_row['loss'])
    assert again['checkpoint'] == 'Checkpoints/Exp/Classifier/classify/Digits_1.best.pt'
    ml('progress=false', 'evaluate=true', "load=Exp Digits", cwd=user_dir)  # words find the last, not the best
    assert rows(run_dir(user_dir) / 'eval.csv')[-1]['checkpoint'] == 'Checkpoints/Exp/Classifier/classify/Digits_1.pt'


def test_an_evaluation_on_demand_writes_one_marked_row_and_nothing_else(user_dir):
    ml(*QUICK, 'train_steps=10', cwd=user_dir)
    folder, saved = run_dir(user_dir), checkpoint(user_dir)
    before = {path: path.read_bytes() for path in (saved, folder / 'train.csv', folder / 'status',
                                                   folder / 'config.yaml')}
    trained = rows(folder / 'eval.csv')
    result = ml('progress=false', 'evaluate=true', 'load=true', cwd=user_dir)
    assert {path: path.read_bytes() for path in before} == before  # the checkpoint's bytes, the logs, the status
    table = rows(folder / 'eval.csv')
    assert len(table) == len(trained) + 1 and table[-1]['evaluation'] == 'on demand'
    assert table[-1]['step'] == '10' and table[-1]['accuracy'] == trained[-1]['accuracy']
    assert f"test accuracy {float(trained[-1]['accuracy']):.2%}" in result.stdout
    assert list(runs.read(folder).eval['step']) == [5, 10]  # Plot leaves the row out of the learning curves
    assert not list(folder.parent.glob('*~*'))  # nothing moved aside


def test_evaluating_online_runs_eval_episodes_episodes(user_dir):
    line = ['task=RL', 'progress=false', 'train_frames=200', 'learn_after=100', 'eval_per_steps=null',
            'eval_episodes=1']
    ml(*line, cwd=user_dir)
    ml(*line, 'evaluate=true', 'load=true', 'eval_episodes=3', cwd=user_dir)
    marked = rows(run_dir(user_dir, agent='DQN', suite='gym', task='CartPole-v1') / 'eval.csv')[-1]
    assert (marked['evaluation'], marked['episodes']) == ('on demand', '3')


@pytest.mark.parametrize('line, message', [
    (['evaluate=true'], "ML: CheckpointError: evaluate=true: no checkpoint to evaluate; give load=true"),
    (['evaluate=true', 'load=true'], 'ML: CheckpointError: load=true: no checkpoint at '),
    (['early_stop.metric=f1', 'early_stop.patience=2'],
     'ML: ConfigError: early_stop.metric=f1: the evaluation has no such metric; it has accuracy, loss'),
    (['early_stop.mode=up'], 'ML: ConfigError: early_stop.mode=up: expected min or max'),
    ([*PLATEAU, 'scheduler.mode=min'], 'ML: ConfigError: scheduler.mode=min: the scheduler steps with accuracy, '
                                        'which is maximized (early_stop.mode=max)'),
])
def test_what_cannot_be_monitored_or_evaluated_is_one_line_before_anything_is_written(line, message, user_dir):
    result = ml(*line, *QUICK, 'train_steps=10', cwd=user_dir, check=False)
    assert result.returncode == 1 and result.stderr.strip() == result.stderr.strip().splitlines()[0]
    assert result.stderr.startswith(message)
    assert not (user_dir / 'Benchmarking').exists() and not (user_dir / 'Checkpoints').exists()


def test_reduce_lr_on_plateau_steps_with_the_evaluation_and_survives_a_resume(user_dir):
    ml(*QUICK, *PLATEAU, 'train_steps=30', cwd=user_dir)
    scheduler = torch.load(checkpoint(user_dir), weights_only=True)['stateful']['scheduler']
    # six evaluations of the same accuracy, maximized: the 3rd and the 5th are each the 2nd without improvement
    assert scheduler['mode'] == 'max' and scheduler['_last_lr'][0] == pytest.approx(1e-11)
    ml(*QUICK, *PLATEAU, 'train_steps=40', 'load=true', cwd=user_dir)
    state = torch.load(checkpoint(user_dir), weights_only=True)
    assert state['stateful']['scheduler']['_last_lr'][0] == pytest.approx(1e-12)  # the 7th reduces once more
    assert state['stateful']['optim']['param_groups'][0]['lr'] == pytest.approx(1e-12)


REGRESSION = '''
    import torch


    class Targets(torch.utils.data.Dataset):
        """Points whose targets are two floats: a regression."""

        def __init__(self):
            self.x = torch.randn(200, 4, generator=torch.Generator().manual_seed(0))
            self.y = torch.stack([self.x.sum(1), self.x[:, 0] - self.x[:, 1]], 1)

        def __len__(self):
            return len(self.x)

        def __getitem__(self, index):
            return self.x[index], self.y[index]
'''


def test_eval_csv_has_the_test_loss_and_train_csv_the_training_accuracy(user_dir):
    ml(*QUICK, 'train_steps=40', 'lr=0.01', cwd=user_dir)
    evaluations, training = rows(run_dir(user_dir) / 'eval.csv'), rows(run_dir(user_dir) / 'train.csv')
    assert float(evaluations[-1]['loss']) < float(evaluations[0]['loss']) < 2.5  # cross-entropy of 10 classes falls
    assert all(0 <= float(row['accuracy']) <= 1 for row in training)
    assert float(training[-1]['accuracy']) > float(training[0]['accuracy'])  # the learning batches come out right
    (user_dir / 'Targets.py').write_text(textwrap.dedent(REGRESSION).lstrip())
    ml(*QUICK, 'Dataset=Targets.Targets', 'train_steps=10', cwd=user_dir)
    for row in rows(run_dir(user_dir, suite='regress', task='Targets') / 'eval.csv'):
        assert float(row['loss']) == pytest.approx(float(row['mse']), rel=1e-4)  # the mse it trains with


def test_the_last_checkpoint_is_found_before_the_best_and_best_finds_the_best(tmp_path):
    own = tmp_path / 'Checkpoints' / 'Exp' / 'Classifier' / 'classify' / 'Digits_1.pt'
    agent = torch.nn.Linear(2, 2)
    for path in (checkpoints.best_path(own), own):
        checkpoints.save(path, agent, {}, Counters())
    assert checkpoints.find('Exp Digits', own, tmp_path / 'Checkpoints') == own
    assert checkpoints.find('Digits best', own, tmp_path / 'Checkpoints') == checkpoints.best_path(own)
    assert checkpoints.find('best', own, tmp_path / 'Checkpoints') == own.with_name('Digits_1.best.pt')


@pytest.mark.parametrize('metric, lower_is_better', [
    ('accuracy', False), ('return', False), ('mse', True), ('loss', True), ('test_error', True)])
def test_lower_is_better_for_an_mse_a_loss_or_an_error(metric, lower_is_better):
    assert minimizes(metric) is lower_is_better
    assert Monitor(metric).mode == ('min' if lower_is_better else 'max')


def test_min_delta_is_the_least_change_that_counts():
    monitor = Monitor('loss', patience=2, min_delta=0.1)
    improved = [monitor.update({'loss': loss}, step) for step, loss in enumerate([1.0, 0.95, 0.85, 0.8], 1)]
    assert improved == [True, False, True, False] and not monitor.stopped
    assert monitor.update({'loss': 0.76}, 5) is False and monitor.stopped_at == 5
