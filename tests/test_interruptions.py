"""Interruptions save, and a run always says how it ended: signals, kill -9, two runs of one experiment, a later run
of the same experiment, a nan loss, temporaries of killed saves, and a disk that refuses a write."""
import os
import signal
import socket
import subprocess
import textwrap
import time

import pytest
import torch

from conftest import FAST, checkpoint, ml, run_dir
from ML.cli import main
from ML.interruptions import Interruptions

LONG = ['train_steps=1000000', 'log_per_steps=10', 'eval_per_steps=null', 'progress=false']  # until stopped

NAN = '''
    import os

    import torch
    from torch import nn


    class Model(nn.Linear):
        """Its output turns nan from forward pass number $NAN_AFTER on, as a diverging run's does."""

        def __init__(self, in_shape, out_shape):
            super().__init__(64, out_shape[0])
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            output = super().forward(x.flatten(1))
            return output * torch.nan if self.calls > int(os.environ.get('NAN_AFTER', 10 ** 9)) else output
'''


def start(cwd, *args) -> subprocess.Popen:
    """The real ML command in the background, and back once it has written its first training row."""
    environment = {**os.environ, 'PYTHONUNBUFFERED': '1', 'OMP_NUM_THREADS': '1'}
    environment.pop('HYDRA_FULL_ERROR', None)
    process = subprocess.Popen(['ML', *args], cwd=cwd, env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    log = run_dir(cwd) / 'train.csv'
    while not log.exists() or len(log.read_text().splitlines()) < 2:
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    return process


@pytest.mark.parametrize('sent', [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signal_saves_the_run_marks_it_interrupted_and_exits_as_the_shell_expects(sent, user_dir):
    process = start(user_dir, *LONG)
    process.send_signal(sent)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 128 + sent
    assert (run_dir(user_dir) / 'status').read_text() == 'interrupted\n'
    step = torch.load(checkpoint(user_dir), weights_only=True)['counters']['step']
    assert err.strip().splitlines()[-1] == (f'ML: Interrupted: {sent.name} at step {step}: saved '
                                           f'Checkpoints/Exp/Classifier/classify/Digits_1.pt; load=true resumes it')
    resumed = ml(*LONG, f'train_steps={step + 10}', 'load=true', cwd=user_dir)
    assert f'at step {step}' in resumed.stdout
    assert (run_dir(user_dir) / 'status').read_text() == 'completed\n'


def test_a_second_signal_stops_at_once(user_dir):
    with Interruptions() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested == signal.SIGINT  # the first only asks the loop to stop
        with pytest.raises(KeyboardInterrupt, match='SIGTERM again: stopped at once'):
            os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the earlier handler is back


def test_after_kill_9_the_next_run_says_what_load_true_would_resume(user_dir):
    process = start(user_dir, *LONG, 'save_per_steps=20')
    while not checkpoint(user_dir).exists():
        time.sleep(0.05)
    process.kill()
    process.communicate()
    assert (run_dir(user_dir) / 'status').read_text() == 'running\n'
    killed_checkpoint = checkpoint(user_dir).read_bytes()

    result = ml(*FAST, cwd=user_dir)
    assert (f'ML: Benchmarking/Exp/Classifier/classify/Digits_1: the run there (pid {process.pid} on '
            f'{socket.gethostname()}, started ') in result.stdout
    assert ('was killed; load=true resumes it from Checkpoints/Exp/Classifier/classify/Digits_1.pt. '
            'This fresh run moves it aside (<name>~<time>)') in result.stdout
    aside = [path for path in run_dir(user_dir).parent.iterdir() if path.name.startswith('Digits_1~')]
    assert len(aside) == 1 and (aside[0] / 'status').read_text() == 'running\n'
    assert (checkpoint(user_dir).parent / f'{aside[0].name}.pt').read_bytes() == killed_checkpoint


def test_a_second_run_of_a_running_experiment_refuses_and_names_the_first(user_dir):
    first = start(user_dir, *LONG)
    try:
        second = ml(*FAST, cwd=user_dir, check=False)
        assert second.returncode == 1
        assert second.stderr.strip() == (
            f'ML: RunError: {run_dir(user_dir)} is being written by a running run (pid {first.pid} on '
            f'{socket.gethostname()}, started {second.stderr.split("started ")[1].split(")")[0]}); run beside it '
            f'with another experiment= or seed=, or stop that run first')
        ml(*FAST, 'seed=2', cwd=user_dir)  # beside it
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=300)
    log = (run_dir(user_dir) / 'train.csv').read_text().splitlines()
    assert sum(line.startswith('step,') for line in log) == 1  # one header: nobody else wrote into it
    assert not [path for path in run_dir(user_dir).parent.iterdir() if '~' in path.name]  # nothing moved aside


def test_a_fresh_rerun_moves_the_earlier_checkpoint_aside_with_its_logs(user_dir):
    ml(*FAST, cwd=user_dir)
    first = checkpoint(user_dir).read_bytes()
    ml(*FAST, 'lr=0.01', cwd=user_dir)
    aside = [path for path in run_dir(user_dir).parent.iterdir() if path.name.startswith('Digits_1~')]
    assert len(aside) == 1 and (aside[0] / 'eval.csv').exists()
    assert (checkpoint(user_dir).parent / f'{aside[0].name}.pt').read_bytes() == first
    assert checkpoint(user_dir).read_bytes() != first


def test_a_nan_loss_stops_the_run_and_never_saves_over_a_good_checkpoint(user_dir):
    (user_dir / 'Nan.py').write_text(textwrap.dedent(NAN).lstrip())
    ml('Model=Nan.Model', *FAST, cwd=user_dir)
    good = checkpoint(user_dir).read_bytes()
    # resumed at step 20: the shape check and 20 steps were the first run's; here 1 shape check and 6 steps pass
    result = ml('Model=Nan.Model', 'train_steps=40', 'save_per_steps=5', 'eval_per_steps=null', 'progress=false',
                'load=true', cwd=user_dir, check=False, env={'NAN_AFTER': '7'})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == 'ML: NonFiniteLoss: loss is nan at step 27'
    assert (run_dir(user_dir) / 'status').read_text() == 'crashed\n'
    assert torch.load(checkpoint(user_dir), weights_only=True)['counters']['step'] == 25  # the last good save
    ml('Model=Nan.Model', *FAST, 'lr=0.01', cwd=user_dir)
    assert good != checkpoint(user_dir).read_bytes()


def test_no_temporary_of_a_killed_save_survives_the_next_run(user_dir):
    folder = checkpoint(user_dir).parent
    folder.mkdir(parents=True)
    (folder / '.Digits_1.pt.4242.tmp').write_bytes(b'half a checkpoint')
    ml(*FAST, cwd=user_dir)
    assert sorted(path.name for path in folder.iterdir()) == ['Digits_1.pt']


def test_a_folder_that_cannot_be_written_is_one_line_before_training(user_dir):
    (user_dir / 'Checkpoints').write_text('a file where a folder should be')
    result = ml(*FAST, cwd=user_dir, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (f'ML: RunError: {user_dir}/Checkpoints/Exp/Classifier/classify: cannot create '
                                     f'the checkpoint\'s folder (Not a directory)')
    assert not (user_dir / 'Benchmarking').exists()


def test_a_full_disk_is_one_line_and_keeps_the_last_good_checkpoint(user_dir, monkeypatch, capsys):
    saves = []

    def save(state, path):
        saves.append(path)
        if len(saves) == 2:
            raise OSError(28, 'No space left on device')
        real_save(state, path)
    real_save = torch.save
    monkeypatch.setattr(torch, 'save', save)
    with pytest.raises(SystemExit) as exit_:
        main(['train_steps=30', 'save_per_steps=10', 'eval_per_steps=null', 'progress=false'])
    assert exit_.value.code == 1
    assert capsys.readouterr().err.strip() == (
        f'ML: RunError: {checkpoint(user_dir)}: cannot save the checkpoint (No space left on device); '
        f'the last one saved is kept')
    monkeypatch.undo()
    assert torch.load(checkpoint(user_dir), weights_only=True)['counters']['step'] == 10
    assert (run_dir(user_dir) / 'status').read_text() == 'crashed\n'
    assert sorted(path.name for path in checkpoint(user_dir).parent.iterdir()) == ['Digits_1.pt']
