"""Sweeps whose members stay whole: a folder, checkpoint and replay each; a failing member never stops the others;
the same command resumes a stopped sweep; launchers; records and sweep.csv; a clean git option."""
import csv
import os
import signal
import subprocess
import time

import pytest
import torch
import yaml

import ML
from conftest import FAST, checkpoint, ml, run_dir


def table(path) -> list:
    with open(path) as file:
        return list(csv.DictReader(file))


def test_every_member_keeps_its_own_checkpoint_and_load_true_finds_it(user_dir):
    result = ml('-m', 'lr=0.01,0.001', 'seed=1,2', *FAST, cwd=user_dir)
    assert 'ML: sweep of 4 members: 4 completed; Benchmarking/Exp/sweep.csv' in result.stdout
    for lr in (0.01, 0.001):
        for seed in (1, 2):
            path = checkpoint(user_dir, experiment=f'Exp/lr={lr}', seed=seed)
            state = torch.load(path, weights_only=True)
            assert state['stateful']['optim']['param_groups'][0]['lr'] == lr and state['config']['seed'] == seed
    rows = table(user_dir / 'Benchmarking/Exp/sweep.csv')
    assert [(row['overrides'].split()[:2], row['status']) for row in rows] == [
        (['lr=0.01', 'seed=1'], 'completed'), (['lr=0.01', 'seed=2'], 'completed'),
        (['lr=0.001', 'seed=1'], 'completed'), (['lr=0.001', 'seed=2'], 'completed')]
    assert rows[0]['folder'] == 'Benchmarking/Exp/lr=0.01/Classifier/classify/Digits_1' and float(rows[0]['accuracy'])
    assert not (user_dir / 'Benchmarking/Exp/Classifier').exists()  # no folder named after the defaults

    assert yaml.safe_load((user_dir / 'Benchmarking/Exp/sweep.yaml').read_text())['command'] == [
        'ML', '-m', 'lr=0.01,0.001', 'seed=1,2', *FAST]

    # a member's config.yaml re-runs it as a recipe: its = and , are no sweep
    again = ml('task=Benchmarking/Exp/lr=0.001/Classifier/classify/Digits_2/config', 'experiment=Again', cwd=user_dir)
    assert 'logs Benchmarking/Again/lr=0.001/Classifier/classify/Digits_2' in again.stdout
    def accuracies(experiment):
        return [row['accuracy'] for row in table(user_dir / f'Benchmarking/{experiment}/lr=0.001/Classifier/classify/'
                                                            f'Digits_2/eval.csv')]
    assert accuracies('Again') == accuracies('Exp')  # the same settings and seed: the same run again

    ml(*FAST, cwd=user_dir)  # a run of the defaults (lr=0.001) beside the sweep: not the run of lr=0.01
    resumed = ml('lr=0.01', 'train_steps=30', 'eval_per_steps=null', 'progress=false', 'load=true', cwd=user_dir)
    assert 'resuming Checkpoints/Exp/lr=0.01/Classifier/classify/Digits_1.pt at step 20' in resumed.stdout
    state = torch.load(checkpoint(user_dir, experiment='Exp/lr=0.01'), weights_only=True)
    assert state['counters']['step'] == 30 and state['config']['variant'] == 'lr=0.01'


def test_a_crashing_member_never_stops_the_others_and_the_sweep_says_so(user_dir):
    result = ml('-m', 'Model=Crash.Model,MLP', *FAST, cwd=user_dir, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == ('ML: 1 of 2 members crashed, the first (Model=Crash.Model '
                                                      'train_steps=20 eval_per_steps=null progress=False) '
                                                      'with FloatingPointError: the loss went to nan')
    rows = table(user_dir / 'Benchmarking/Exp/sweep.csv')
    assert [row['status'] for row in rows] == ['crashed', 'completed']
    assert rows[0]['error'] == 'FloatingPointError: the loss went to nan' and float(rows[1]['accuracy']) > 0.1


def test_a_bad_value_of_one_member_is_one_line_before_any_member_runs(user_dir):
    result = ml('-m', 'lr=0.1,-1', 'seed=1,2', *FAST, cwd=user_dir, check=False)
    assert (result.returncode, result.stdout) == (1, '')
    assert result.stderr.strip() == 'ML: ConfigError: lr=-1: expected a number > 0 (the default is 0.001)'
    assert not (user_dir / 'Benchmarking').exists() and not (user_dir / 'Checkpoints').exists()


def test_a_sweep_stopped_by_a_signal_resumes_with_the_same_command(user_dir):
    line = ['-m', 'lr=0.01,0.002,0.001', 'train_steps=400', 'eval_per_steps=100', 'log_per_steps=10',
            'progress=false', 'save_per_steps=50']
    environment = {**os.environ, 'OMP_NUM_THREADS': '1'}
    environment.pop('HYDRA_FULL_ERROR', None)
    process = subprocess.Popen(['ML', *line], cwd=user_dir, env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    second = user_dir / 'Benchmarking/Exp/lr=0.002/Classifier/classify/Digits_1/train.csv'
    while not second.exists():  # the first member done, the second under way
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 128 + signal.SIGTERM
    assert 'ML: Interrupted: SIGTERM: the sweep stopped; the same command resumes it (1 of 3 members done)' in err
    statuses = [row['status'] for row in table(user_dir / 'Benchmarking/Exp/sweep.csv')]
    assert statuses == ['completed', 'interrupted', 'not started']
    first = checkpoint(user_dir, experiment='Exp/lr=0.01').read_bytes()

    again = ml(*line, cwd=user_dir)
    assert 'ML: sweep of 3 members: 2 completed, 1 skipped' in again.stdout
    assert [row['status'] for row in table(user_dir / 'Benchmarking/Exp/sweep.csv')] == [
        'skipped', 'completed', 'completed']
    assert checkpoint(user_dir, experiment='Exp/lr=0.01').read_bytes() == first  # not run again
    for lr in ('0.01', '0.002', '0.001'):
        folder = run_dir(user_dir, experiment=f'Exp/lr={lr}')
        steps = [row['step'] for row in table(folder / 'eval.csv')]
        assert steps == ['100', '200', '300', '400'] and (folder / 'status').read_text() == 'completed\n'
    assert not [path for path in (user_dir / 'Benchmarking/Exp').rglob('*~*')]  # nothing moved aside


@pytest.mark.parametrize('launcher', ['joblib', 'submitit_local'])
def test_parallel_launchers_run_every_member_each_on_its_own_gpu(launcher, user_dir):
    extra = ['hydra.launcher.n_jobs=2'] if launcher == 'joblib' else ['hydra.launcher.timeout_min=10']
    result = ml('-m', 'seed=1,2,3', f'hydra/launcher={launcher}', *extra, *FAST, cwd=user_dir,
                env={'CUDA_VISIBLE_DEVICES': '0,1'})
    assert 'ML: sweep of 3 members: 3 completed' in result.stdout
    seen = [yaml.safe_load((run_dir(user_dir, seed=seed) / 'config.yaml').read_text())['provenance']
            .get('cuda_visible_devices') for seed in (1, 2, 3)]
    assert seen == ['0', '1', '0']  # round-robin over the machine's GPUs, by job number


def test_a_launcher_that_is_not_installed_is_one_line(user_dir):
    result = ml('-m', 'seed=1,2', 'hydra/launcher=ray', *FAST, cwd=user_dir, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == 'ML: ConfigError: hydra/launcher=ray: not installed; pip install hydra-ray-launcher'


def test_git_clean_refuses_a_dirty_repository_and_config_keeps_the_untracked_files(user_dir):
    subprocess.run(['git', 'init', '-q'], cwd=user_dir, check=True)
    result = ml(*FAST, 'git_clean=true', cwd=user_dir, check=False)
    assert result.returncode == 1 and not (user_dir / 'Benchmarking').exists()
    assert result.stderr.strip().startswith('ML: ConfigError: git_clean=true: the repository of ')
    ml(*FAST, cwd=user_dir)
    git = yaml.safe_load((run_dir(user_dir) / 'config.yaml').read_text())['provenance']['git']
    assert git['commit'] is None and 'Run.py' in git['untracked'] and 'class Model' in git['untracked']['Run.py']


def test_the_same_seed_on_the_same_machine_gives_the_same_metrics(user_dir):
    first = ML.launch('-m', 'seed=1', 'experiment=A', *FAST)[0]
    second = ML.launch('-m', 'seed=1', 'experiment=B', *FAST)[0]
    assert first.evaluation == second.evaluation and first.score() == second.score()
