"""End to end: the real ML command and ML.launch, as a user runs them, with tiny budgets."""
import csv
import subprocess
import sys
import time

import pytest
import torch
import yaml

import ML
from conftest import FAST, checkpoint, ml, run_dir
from ML.cli import main


def rows(path):
    with open(path) as file:
        return list(csv.DictReader(file))


def test_the_default_task_trains_a_digits_classifier_past_95_percent(user_dir):
    result = ml(cwd=user_dir)
    evaluation = rows(run_dir(user_dir) / 'eval.csv')
    assert float(evaluation[-1]['accuracy']) >= 0.95
    assert int(evaluation[-1]['step']) == 1000
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith('ML: 1000 steps') and 'test accuracy' in summary
    assert 'logs Benchmarking/Exp/Classifier/classify/Digits_1' in summary
    assert 'checkpoint Checkpoints/Exp/Classifier/classify/Digits_1.pt' in summary
    assert '%' in result.stderr  # the progress bar
    assert (run_dir(user_dir) / 'status').read_text() == 'completed\n'


@pytest.mark.parametrize('line', [
    pytest.param(['Model=Run.model'], id='object-in-Run.py'),
    pytest.param(['Model=Run.Model', 'model.hidden=16'], id='class-with-twin'),
    pytest.param(['Model=./Run.py.Model'], id='explicit-file'),
    pytest.param(['Model=pkg.Nets.Tiny'], id='sub-package'),
    pytest.param(['Eyes=torch.nn.Flatten', 'Model=torch.nn.Linear'], id='importable-path'),
    pytest.param(['Model=[nn.Flatten(),nn.Linear]'], id='code-value-in-list'),
    pytest.param(['Eyes=[CNN,Transformer]', '+eyes.1.depth=1', 'eyes.0.depth=1'], id='indexed-routing'),
    pytest.param(['Model=ViT', 'model.depth=1'], id='ViT'),
    pytest.param(['Model=ResNet18', 'model.width=8'], id='ResNet18'),
    pytest.param(['task=recipe'], id='recipe-with-imports'),
    pytest.param(['Optim=torch.optim.SGD', 'optim.lr=0.1', 'optim.momentum=0.9'], id='optimizer'),
    pytest.param(['Scheduler=torch.optim.lr_scheduler.StepLR', 'scheduler.step_size=5'], id='scheduler'),
])
def test_every_form_of_the_language_trains(line, user_dir, capsys):
    main([*FAST, *line])
    assert 'test accuracy' in capsys.readouterr().out
    assert float(rows(run_dir(user_dir) / 'eval.csv')[-1]['accuracy']) > 0.15  # above chance (0.1) already


def test_the_run_leaves_its_config_logs_and_checkpoint(user_dir):
    subprocess.run(['git', 'init', '-q'], cwd=user_dir, check=True)
    subprocess.run(['git', '-c', 'user.name=u', '-c', 'user.email=u@x', 'commit', '-qm', 'init', '--allow-empty'],
                   cwd=user_dir, check=True)
    subprocess.run(['git', 'add', 'Run.py'], cwd=user_dir, check=True)
    main([*FAST, 'Model=Run.Model', 'seed=3', 'log_per_steps=5'])
    folder = run_dir(user_dir, seed=3)
    config = yaml.safe_load((folder / 'config.yaml').read_text())
    assert config['Model'] == 'Run.Model' and config['seed'] == 3 and config['lr'] == 1e-3
    assert config['provenance']['versions']['torch'] == torch.__version__.split('+')[0] or \
        config['provenance']['versions']['torch'].startswith(torch.__version__.split('+')[0])
    assert len(config['provenance']['git']['commit']) == 40
    assert 'class Model(nn.Module)' in config['provenance']['git']['diff']  # the uncommitted code, as it ran
    assert config['provenance']['specs']['obs_spec']['shape'] == [1, 8, 8]
    train = rows(folder / 'train.csv')
    assert [row['step'] for row in train] == ['5', '10', '15', '20'] and float(train[-1]['loss']) > 0
    assert list(train[0])[:5] == ['step', 'frame', 'episode', 'epoch', 'time']
    state = torch.load(checkpoint(user_dir, seed=3), weights_only=True)
    assert state['counters']['step'] == 20 and state['config']['Model'] == 'Run.Model'


def test_save_false_writes_no_checkpoint(user_dir):
    main([*FAST, 'save=false'])
    assert (run_dir(user_dir) / 'eval.csv').exists() and not checkpoint(user_dir).exists()


def test_save_per_steps_keeps_a_checkpoint_a_crash_cannot_take(user_dir, monkeypatch):
    monkeypatch.setenv('CRASH_AFTER', '15')
    with pytest.raises(FloatingPointError):
        ML.launch(*FAST, 'save_per_steps=10', Model='Crash.Model')
    assert torch.load(checkpoint(user_dir), weights_only=True)['counters']['step'] == 10


def test_a_resumed_run_continues_its_counters_and_logs(user_dir):
    main([*FAST, 'log_per_steps=10'])
    main(['train_steps=40', 'eval_per_steps=null', 'progress=false', 'log_per_steps=10', 'load=true'])
    assert [row['step'] for row in rows(run_dir(user_dir) / 'train.csv')] == ['10', '20', '30', '40']
    assert torch.load(checkpoint(user_dir), weights_only=True)['counters']['step'] == 40


def test_load_by_words_and_by_path(user_dir, capsys):
    main([*FAST, 'experiment=MyExp'])
    path = checkpoint(user_dir, experiment='MyExp')
    main(['train_steps=25', 'eval_per_steps=null', 'progress=false', 'experiment=Other', "load=MyExp Digits"])
    assert torch.load(checkpoint(user_dir, experiment='Other'), weights_only=True)['counters']['step'] == 25
    main(['train_steps=30', 'eval_per_steps=null', 'progress=false', 'experiment=Third', f'load={path}'])
    assert torch.load(checkpoint(user_dir, experiment='Third'), weights_only=True)['counters']['step'] == 30


def test_launch_returns_the_agent_and_load_agent_rebuilds_it(user_dir):
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    agent = ML.launch(*FAST, Model=net, lr=0.01)
    assert agent.model is net
    obs = torch.rand(5, 1, 8, 8)
    loaded = ML.load_agent('Exp Digits', Model=torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)))
    assert torch.equal(loaded.act(obs, None), agent.act(obs, None))
    with pytest.raises(ML.MLError, match=r"Model=live:Model: was an object passed from code; pass it again"):
        ML.load_agent('Exp Digits')


def test_code_classes_and_lists_of_live_objects(user_dir):
    agent = ML.launch(*FAST, Model=[torch.nn.Flatten(), torch.nn.Linear], Eyes=torch.nn.Identity)
    assert agent.model[1].in_features == 64 and agent.model[1].out_features == 10


def test_a_script_reads_its_own_command_line_which_wins_over_its_code(user_dir):
    (user_dir / 'ML.py').unlink()  # Python puts a script's own folder first: there `import ML` means ./ML.py
    (user_dir / 'train.py').write_text(
        'import ML\n'
        'agent = ML.launch("train_steps=5", "eval_per_steps=null", "progress=false", Model="MLP", lr=0.5)\n'
        'print(type(agent.model).__name__, agent.optim.defaults["lr"])\n')
    result = subprocess.run([sys.executable, 'train.py', 'Model=Run.Model', 'lr=0.25'], cwd=user_dir,
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == 'Model 0.25'


def test_help_lists_every_key_quickly(user_dir):
    started = time.perf_counter()
    result = ml('--help', cwd=user_dir)
    elapsed = time.perf_counter() - started
    assert 'usage: ML' in result.stdout and 'eval_per_steps:' in result.stdout and 'recipe' in result.stdout
    print(f'ML --help took {elapsed:.2f}s')


def test_cfg_job_prints_the_composed_config_without_training(user_dir, capsys):
    main(['--cfg', 'job', 'task=recipe', 'lr=0.3'])
    config = yaml.safe_load(capsys.readouterr().out)
    assert (config['Eyes'], config['lr'], config['optim']['lr']) == ('CNN', 0.3, 0.3)
    assert not (user_dir / 'Benchmarking').exists()


def test_a_sweep_runs_every_member(user_dir):
    result = ml('-m', 'seed=1,2', *FAST, cwd=user_dir)
    assert result.stdout.count('test accuracy') == 2
    assert (run_dir(user_dir, seed=1) / 'eval.csv').exists() and (run_dir(user_dir, seed=2) / 'eval.csv').exists()


def test_a_sweep_from_code_returns_every_members_record_with_its_agent(user_dir):
    members = ML.launch('-m', 'Model=MLP,CNN', 'model.depth=1', *FAST)
    assert [type(member.agent.model).__name__ for member in members] == ['MLP', 'CNN']
    assert [member.status for member in members] == ['completed', 'completed']
    assert all(0.1 < member.score() <= 1 for member in members)


def test_dqn_learns_cartpole_through_the_same_loop(user_dir):
    ml('task=RL', 'Env=CartPole-v1', 'train_frames=10000', 'eval_per_steps=5000', 'progress=false', cwd=user_dir)
    evaluation = rows(run_dir(user_dir, agent='DQN', suite='gym', task='CartPole-v1') / 'eval.csv')
    assert [row['step'] for row in evaluation][:2] == ['5000', '10000'] and evaluation[-1]['frame'] == '10000'
    assert float(evaluation[-1]['return']) > 100  # a random policy averages about 22
    train = rows(run_dir(user_dir, agent='DQN', suite='gym', task='CartPole-v1') / 'train.csv')
    assert max(float(row['return']) for row in train if row['return']) > 100 and float(train[-1]['loss']) > 0


def test_help_shows_each_keys_type_and_range(user_dir, capsys):
    main(['--help'])
    output = capsys.readouterr().out
    assert 'batch_size: 256                  # (int >= 1) samples per learning step' in output
    assert 'train_frames: null               # (int >= 1 | null) stop after' in output


def test_a_string_from_code_names_the_experiments_folder_as_given(user_dir):
    ML.launch(*FAST, experiment='2024')
    ML.launch(*FAST, experiment='a,b')
    assert (run_dir(user_dir, experiment='2024') / 'eval.csv').exists()
    assert (run_dir(user_dir, experiment='a,b') / 'eval.csv').exists()


def test_replacing_the_recipes_optimizer_trains_without_its_arguments(user_dir, capsys):
    main(['task=RL', 'Optim=torch.optim.RMSprop', 'train_frames=null', 'train_steps=40', 'learn_after=20',
          'eval_episodes=1', 'eval_per_steps=null', 'progress=false'])
    assert 'evaluation return' in capsys.readouterr().out
    folder = run_dir(user_dir, agent='DQN', suite='gym', task='CartPole-v1')
    config = yaml.safe_load((folder / 'config.yaml').read_text())
    assert (config['Optim'], config['optim']) == ('torch.optim.RMSprop', {'lr': 2.3e-3})
