"""mini=true: the real pipeline (build, learn, evaluate, save, reload) in seconds, in a fresh temporary folder that
never mixes with the user's runs."""
import csv
import re
import textwrap
from pathlib import Path

import pytest
import yaml

from conftest import ml

LAST_LINE = re.compile(r'^ML: mini=true: built, learned, evaluated, saved and reloaded in [\d.]+s; nothing written '
                       r'here: it is all in (?P<folder>\S+)$')


@pytest.fixture(autouse=True)
def temporary(tmp_path_factory, monkeypatch):
    """The temporary directory the checks' folders go to: TMPDIR, which tempfile reads and the ML command inherits
    (cleared with the tests' own folders)."""
    folder = tmp_path_factory.mktemp('TMPDIR')
    monkeypatch.setenv('TMPDIR', str(folder))
    return folder


def rows(path: Path) -> list:
    with open(path) as file:
        return list(csv.DictReader(file))


def scratch(result) -> Path:
    """The temporary folder the check names on its last line."""
    match = LAST_LINE.match(result.stdout.strip().splitlines()[-1])
    assert match, result.stdout
    return Path(match['folder'])


def nothing_written(user_dir: Path):
    assert not (user_dir / 'Benchmarking').exists() and not (user_dir / 'Checkpoints').exists()
    assert not (user_dir / 'Datasets' / 'ReplayBuffer').exists()


def test_the_default_task_is_checked_in_a_temporary_folder_and_nothing_is_written_here(user_dir, temporary):
    result = ml('mini=true', 'progress=false', cwd=user_dir)
    folder = scratch(result)
    nothing_written(user_dir)
    assert folder.parent == temporary and folder.name.startswith('ML-mini-')  # in TMPDIR, as tempfile has it
    assert 'Digits: 512 training and 256 test samples of 10 classes' in result.stdout  # 2 batches and 1 of 256
    run = folder / 'Benchmarking/Exp/Classifier/classify/Digits_1'
    assert [row['step'] for row in rows(run / 'train.csv')] == ['1', '2', '3', '4'] and \
        all(float(row['loss']) > 0 for row in rows(run / 'train.csv'))
    assert [row['step'] for row in rows(run / 'eval.csv')] == ['4']  # one evaluation, at the end
    assert (run / 'status').read_text() == 'completed\n'
    assert (folder / 'Checkpoints/Exp/Classifier/classify/Digits_1.pt').is_file()
    assert yaml.safe_load((run / 'config.yaml').read_text())['train_steps'] == 4

    again = scratch(ml('mini=true', 'progress=false', cwd=user_dir))
    assert again != folder and run.is_dir()  # each check has a folder of its own


def test_reinforcement_learning_is_checked_with_learning_and_one_short_evaluation_episode(user_dir):
    result = ml('mini=true', 'task=RL', 'progress=false', cwd=user_dir)
    nothing_written(user_dir)
    run = scratch(result) / 'Benchmarking/Exp/DQN/gym/CartPole-v1_1'
    learned = [row for row in rows(run / 'train.csv') if row['loss']]
    assert learned[0]['step'] == '33' and len({row['loss'] for row in learned}) == 4  # learn_after=32 transitions,
    # then 4 learning steps, one every learn_per_steps=2 steps
    evaluation = rows(run / 'eval.csv')
    assert len(evaluation) == 1 and evaluation[0]['episodes'] == '1' and float(evaluation[0]['return']) <= 100


def test_mini_composes_with_other_keys_and_a_user_s_model_and_dataset(user_dir):
    result = ml('mini=true', 'Eyes=CNN', 'eyes.depth=1', 'progress=false', cwd=user_dir)
    config = yaml.safe_load((scratch(result) / 'Benchmarking/Exp/Classifier/classify/Digits_1/config.yaml')
                            .read_text())
    assert (config['Eyes'], config['eyes'], config['mini']) == ('CNN', {'depth': 1}, True)

    users = ml('mini=true', 'Dataset=Run.Dataset', 'Model=Run.Model', 'model.hidden=8', 'progress=false', cwd=user_dir)
    assert 'Dataset: 48 training and 12 test samples of 2 classes' in users.stdout  # fewer than a batch: all of it
    assert (scratch(users) / 'Checkpoints/Exp/Classifier/classify/Dataset_1.pt').is_file()

    folds = ml('mini=true', 'cv.folds=2', 'progress=false', cwd=user_dir)  # each fold checked, the summary there too
    summary = scratch(folds) / 'Benchmarking/Exp/cv.folds=2/Classifier/classify/Digits_1/cv.csv'
    assert [row['fold'] for row in rows(summary)] == ['1', '2', 'mean', 'std'] and str(summary) in folds.stdout
    nothing_written(user_dir)


def test_an_agent_whose_checkpoint_misses_its_state_fails_the_check(user_dir):
    (user_dir / 'Forgetful.py').write_text(textwrap.dedent('''
        from ML.agents.classifier import Classifier


        class Agent(Classifier):
            """Shifts its predictions by a count it keeps outside its state_dict: a reloaded copy predicts otherwise."""

            def __init__(self, eyes, model, optim, label_spec, scheduler=None, update=None):
                super().__init__(eyes, model, optim, label_spec, scheduler, update)
                self.shift = 0

            def learn(self, batch, counters):
                self.shift += 1
                return super().learn(batch, counters)

            def act(self, obs, counters=None, greedy=True):
                return (super().act(obs, counters, greedy) + self.shift) % 10
    '''))
    result = ml('mini=true', 'Agent=Forgetful.Agent', 'progress=false', cwd=user_dir, check=False)
    assert result.returncode == 1
    assert re.fullmatch(r'ML: RunError: \S+/Checkpoints/Exp/Agent/classify/Digits_1\.pt: the agent reloaded from it '
                        r'acts otherwise than the trained one; its state_dict\(\) misses some of the state it acts '
                        r'from', result.stderr.strip())


def test_what_a_check_cannot_do_is_one_line_before_anything_is_written(user_dir):
    for args, message in [
        (['-m', 'mini=true', 'lr=0.1,0.01'], 'ML: ConfigError: mini=true: checks one run, and a sweep writes its '
                                              'table into the experiment; run it without -m (one value of each '
                                              'swept key)'),
        (['mini=true', 'load=true'], 'ML: ConfigError: load=true: mini=true runs in a fresh folder, which holds no '
                                     'checkpoint of its own; give load=path.pt (a real checkpoint is read, never '
                                     'written) or drop load'),
        (['mini=true', 'task=RL', 'offline=true'], 'ML: ConfigError: offline=true: mini=true runs in a fresh folder, '
                                                   'which holds no saved replay; drop offline'),
    ]:
        result = ml(*args, cwd=user_dir, check=False)
        assert (result.returncode, result.stderr.strip()) == (1, message)
    nothing_written(user_dir)
