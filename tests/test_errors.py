"""Bad input: one short line on stderr naming the key or path and what would fix it, a non-zero exit, no
traceback unless HYDRA_FULL_ERROR=1, and nothing a user already has overwritten."""
import re
import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import FAST, checkpoint, ml, run_dir
from ML.cli import main

RL = ['task=RL', 'train_frames=null', 'eval_episodes=1']

CASES = [
    pytest.param(['lerning_rate=0.1'], r"ConfigError: lerning_rate: unknown key", id='unknown-key'),
    pytest.param(['+lerning_rate=0.1'], r"ConfigError: lerning_rate: unknown key", id='unknown-key-with-plus'),
    pytest.param(['replay.capacty=3'], r"replay\.capacty: unknown key \(did you mean 'capacity'\?\)",
                 id='unknown-subkey'),
    pytest.param(['Model=Run.modle'], r"PathError: Model=Run\.modle: not found; tried \./Run\.py has no 'modle' "
                                      r"\(did you mean 'model'\?\)", id='unresolvable-path'),
    pytest.param(['Eyes=CNNN'], r"PathError: Eyes=CNNN: not found; .*short names \(did you mean 'CNN'\?\)",
                 id='short-name'),
    pytest.param(['Model=Nope.model'], r"PathError: Model=Nope\.model: not found; tried \./Nope\.py \(no such file\); "
                                       r"importable modules \(no module 'Nope'\); short names \(none like it\)$",
                 id='nothing-alike'),
    pytest.param(['task=recipee'], r"RecipeError: task=recipee: no recipe \./recipee\.yaml .*did you mean 'recipe'",
                 id='missing-recipe'),
    pytest.param(['task=broken'], r"RecipeError: .*broken\.yaml, line 2: ", id='recipe-yaml-error'),
    pytest.param(['lr=abc'], r"ConfigError: lr=abc: expected a number > 0 \(the default is 0\.001\)", id='wrong-type'),
    pytest.param(['train_steps=many'], r"train_steps=many: expected an integer", id='wrong-type-int'),
    pytest.param(['save=maybe'], r"save=maybe: expected true or false", id='wrong-type-bool'),
    pytest.param(['save=[true]'], r"save=\[true\]: expected true or false", id='list-for-bool'),
    pytest.param(['Model=nn.Linear'], r"ShapeError: Model \(Linear\): expected an input it can take, got shape "
                                      r"\(1, 8, 8\): .*; flatten first: Model=\[nn\.Flatten\(\),\.\.\.\]",
                 id='shape-mismatch'),
    pytest.param(['Model=torch.nn.Sequential'], r"ShapeError: Model=torch\.nn\.Sequential: outputs shape "
                 r"\(1, 8, 8\) from input \(1, 8, 8\); expected \(10,\) \(10 classes or actions\)",
                 id='wrong-output-shape'),
    pytest.param(['Model=[nn.Flatten(),nn.Linear(3,5)]'], r"ShapeError: Model\.1 \(Linear\): .*got shape \(64,\)",
                 id='shape-mismatch-inside'),
    pytest.param(['Model=nn.Flatten('], r"ConfigError: Model=nn\.Flatten\(: code value does not parse", id='bad-code'),
    pytest.param(['load=true'], r"CheckpointError: load=true: no checkpoint at .*Digits_1\.pt", id='nothing-to-load'),
    pytest.param(['Eyes=CNN', 'eyes.dept=2'], r"eyes\.dept: CNN takes no argument 'dept' \(did you mean 'depth'\?\)",
                 id='unused-argument'),
    pytest.param(['env.game=pong'], r"env\.game: Env is null, so nothing takes it", id='unused-twin'),
    pytest.param(['Scheduler=torch.optim.lr_scheduler.StepLR'], r"Scheduler=torch\.optim\.lr_scheduler\.StepLR: "
                 r"needs 'step_size'; give scheduler\.step_size=", id='missing-argument'),
    pytest.param(['Env=CartPole-v1', 'Dataset=Digits'], r"Env=CartPole-v1 and Dataset=Digits: give one; .*task=RL",
                 id='env-and-dataset'),
    pytest.param(['--bogus'], r"--bogus: unknown flag", id='unknown-flag'),
]


# Each line as it prints, whole: a value outside its key's type or range (Hyperparams/args.yaml states both), the
# arguments of a built thing against its signature, keys the run does not use, settings that cannot work together
WHOLE_LINES = [
    pytest.param(['batch_size=0'], 'ConfigError: batch_size=0: expected an integer >= 1 (the default is 256)',
                 id='batch_size-zero'),
    pytest.param(['train_steps=-1'], 'ConfigError: train_steps=-1: expected an integer >= 1 or null (the default is '
                                     '1000)', id='train_steps-negative'),
    pytest.param(['lr=-1'], 'ConfigError: lr=-1: expected a number > 0 (the default is 0.001)', id='lr-negative'),
    pytest.param(['lr=nan'], 'ConfigError: lr=nan: expected a number > 0 (the default is 0.001)', id='lr-nan'),
    pytest.param(['seed=-1'], 'ConfigError: seed=-1: expected an integer >= 0 and < 4294967296 (the default is 1)',
                 id='seed-negative'),
    pytest.param(['eval_per_steps=-5'], 'ConfigError: eval_per_steps=-5: expected an integer >= 1 or null (the '
                                        'default is 500)', id='eval_per_steps-negative'),
    pytest.param(['eval_per_steps=true'], 'ConfigError: eval_per_steps=true: expected an integer >= 1 or null (the '
                                          'default is 500)', id='a-bool-is-no-integer'),
    pytest.param([*RL, 'learn_steps=0'], 'ConfigError: learn_steps=0: expected an integer >= 1 (the default is 1)',
                 id='learn_steps-zero'),
    pytest.param(['train_frames=abc'], 'ConfigError: train_frames=abc: expected an integer >= 1 or null (the default '
                                       'is null)', id='null-default-typed'),
    pytest.param(['save_per_steps=[1,2]'], 'ConfigError: save_per_steps=[1,2]: expected an integer >= 1 or null '
                                           '(the default is null)', id='list-for-int'),
    pytest.param(['test_split=1'], 'ConfigError: test_split=1: expected a number > 0 and < 1 (the default is 0.2)',
                 id='open-range'),
    pytest.param(['experiment='], "ConfigError: experiment='': expected a folder name (letters, digits and _ - . , "
                                  "+ = @; not . or ..) (the default is Exp)", id='experiment-empty'),
    pytest.param(['experiment=..'], 'ConfigError: experiment=..: expected a folder name (letters, digits and _ - . , '
                                    '+ = @; not . or ..) (the default is Exp)', id='experiment-outside'),
    pytest.param(['experiment=a/../../b'], 'ConfigError: experiment=a/../../b: expected a folder name (letters, '
                                           'digits and _ - . , + = @; not . or ..) (the default is Exp)',
                 id='experiment-path'),
    pytest.param(['Model=5'], 'ConfigError: Model=5: expected a name to build (CNN, Run.model, torch.nn.GRU, '
                              'nn.Flatten()) or a list of them (the default is MLP)', id='target-number'),
    pytest.param(['eyes=3'], 'ConfigError: eyes=3: expected arguments by name (<key>.<argument>=value)',
                 id='twin-not-arguments'),
    pytest.param(['replay=5'], 'ConfigError: replay=5: a group of keys; set them one at a time: replay.capacity=...',
                 id='group-not-a-group'),
    pytest.param(['model.depth=abc'], 'ConfigError: model.depth=abc: MLP takes depth as an integer (its default is '
                                      '2)', id='argument-by-default-type'),
    pytest.param(['Optim=torch.optim.SGD', 'optim.momentum=fast'], 'ConfigError: optim.momentum=fast: SGD takes '
                 'momentum as a number (its default is 0)', id='argument-by-annotation'),
    pytest.param(['optim.fused=maybe'], 'ConfigError: optim.fused=maybe: Adam takes fused as true or false or null '
                                        '(its default is null)', id='argument-optional'),
    pytest.param(['optim.lr=-1'], 'ConfigError: Optim=torch.optim.Adam: Adam(lr=-1) raised ValueError: Invalid '
                                  'learning rate: -1', id='optimizer-tried-before-the-run'),
    pytest.param(['Model=CNN', 'model.stride=0'], 'ConfigError: Model=CNN: CNN(stride=0) raised RuntimeError: '
                 'non-positive stride is not supported', id='constructor-raises'),
    pytest.param(['num_envs=4'], 'ConfigError: num_envs=4: this run does not use it: only a run in an Env uses it; '
                                 'this one learns from Dataset=Digits', id='unused-online-key'),
    pytest.param(['replay.nstep=5'], 'ConfigError: replay.nstep=5: this run does not use it: only a run in an Env '
                                     'uses it; this one learns from Dataset=Digits', id='unused-replay-key'),
    pytest.param([*RL, 'test_split=0.5'], 'ConfigError: test_split=0.5: this run does not use it: only a Dataset '
                 'without a test split of its own uses it; this run acts in Env=CartPole-v1', id='unused-in-RL'),
    pytest.param([*RL, 'replay.alpha=0.5'], 'ConfigError: replay.alpha=0.5: this run does not use it: only a '
                 'prioritized replay uses it; set replay.prioritized=true', id='unused-without-priorities'),
    pytest.param([*RL, 'stream=true', 'replay.nstep=3'], 'ConfigError: replay.nstep=3: this run does not use it: '
                 'stream=true learns from each step as it comes, without a replay', id='unused-with-stream'),
    pytest.param(['save=false', 'save_per_steps=5'], 'ConfigError: save_per_steps=5: this run does not use it: '
                 'save=false writes no checkpoints', id='unused-without-saving'),
    pytest.param([*RL, 'replay.capacity=500'], 'ConfigError: learn_after=1000: the replay holds at most 500 '
                 'transitions (replay.capacity=500), so learning would never start; lower learn_after or raise '
                 'replay.capacity', id='learn_after-beyond-capacity'),
    pytest.param([*RL, 'replay.capacity=100', 'learn_after=50', 'batch_size=200'], 'ConfigError: batch_size=200: '
                 'more than the 100 transitions the replay holds (replay.capacity=100); lower batch_size or raise '
                 'replay.capacity', id='batch-beyond-capacity'),
    pytest.param([*RL, 'replay.capacity=100', 'learn_after=50', 'batch_size=8', 'replay.nstep=200'],
                 'ConfigError: replay.capacity=100: keeps 100 steps of each of num_envs=1 envs, fewer than '
                 'replay.nstep=200 spans; raise replay.capacity', id='nstep-beyond-capacity'),
    pytest.param([*RL, 'num_envs=4', 'replay.capacity=6', 'learn_after=0', 'batch_size=4', 'replay.nstep=3'],
                 'ConfigError: replay.capacity=6: keeps 1 steps of each of num_envs=4 envs, fewer than replay.nstep=3 '
                 'spans; raise replay.capacity', id='capacity-shared-by-envs'),
    pytest.param([*RL, 'eval_episodes=0'], 'ConfigError: eval_episodes=0: expected an integer >= 1 (the default is '
                                           '10)', id='no-evaluation-episodes'),
    pytest.param([*RL, 'env.size=3'], "ConfigError: env.size: CartPoleEnv takes no argument 'size'",
                 id='env-argument-by-signature'),
    pytest.param([*RL, 'env.max_episode_steps=abc'], 'ConfigError: env.max_episode_steps=abc: gymnasium.make takes '
                 'max_episode_steps as an integer or null (its default is null)', id='gymnasium-make-argument'),
    pytest.param(['test_split=0.0001'], 'MLError: Dataset=Digits: 1797 training and 0 test samples; both must be > 0 '
                                        '(test_split sets the test fraction of a dataset without a test split)',
                 id='empty-test-split'),
    pytest.param(['device=tpu'], 'ConfigError: device=tpu: not a device (auto, cpu, cuda, cuda:1, ...)',
                 id='device-torch-refuses'),
    pytest.param(['device=meta'], 'ConfigError: device=meta: this machine has no meta device; use device=auto or cpu',
                 id='device-not-for-training'),
    pytest.param(['device=cuda:99'], 'ConfigError: device=cuda:99: this machine has no cuda device; use device=auto or '
                                     'cpu' if not torch.cuda.is_available() else
                 f'ConfigError: device=cuda:99: this machine has {torch.cuda.device_count()} cuda device'
                 f'{"s" if torch.cuda.device_count() > 1 else ""} (cuda:0 to cuda:{torch.cuda.device_count() - 1})',
                 id='device-this-machine-lacks'),
]


def one_line(argv: list, capsys) -> str:
    """The one line ML prints for a bad command line, after checking it is one line, exit 1, and no traceback."""
    with pytest.raises(SystemExit) as exit:
        main([*FAST, *argv])
    assert exit.value.code == 1
    stderr = capsys.readouterr().err.strip()
    assert len(stderr.splitlines()) == 1 and 'Traceback' not in stderr, stderr
    return stderr


def nothing_written(folder) -> bool:
    return not any((folder / name).exists() for name in ('Benchmarking', 'Checkpoints', 'Datasets'))


@pytest.mark.parametrize('argv, message', CASES)
def test_bad_input_is_one_clear_line(argv, message, user_dir, capsys):
    (user_dir / 'broken.yaml').write_text('lr: 0.1\n  batch_size: [3\n')
    assert re.search(message, one_line(argv, capsys))
    assert nothing_written(user_dir)


@pytest.mark.parametrize('argv, line', WHOLE_LINES)
def test_every_value_is_checked_before_anything_is_written(argv, line, user_dir, capsys):
    assert one_line(argv, capsys) == f'ML: {line}'
    assert nothing_written(user_dir)


def test_a_users_recipe_setting_a_key_the_run_does_not_use_is_refused(user_dir, capsys):
    (user_dir / 'online.yaml').write_text('imports: [classify, self]\nlearn_after: 10\n')
    assert one_line(['task=online'], capsys) == ('ML: ConfigError: learn_after=10: this run does not use it: only a '
                                                 'run in an Env uses it; this one learns from Dataset=Digits')


# The user's own code raising or exiting while a key is built: the user's frames alone, then one line naming the key,
# the user's file and line
USER_CODE = {
    'Raises.py': """
        from torch import nn


        class Model(nn.Module):
            def __init__(self, in_shape, out_shape):
                super().__init__()
                self.scale = 1 / 0
    """,
    'AtImport.py': 'import torch\nraise RuntimeError("needs a GPU")\n',
    'Broken.py': 'def model(:\n    pass\n',
    'Exits.py': 'import sys\nsys.exit(3)\n',
}


@pytest.mark.parametrize('argv, line', [
    pytest.param(['Model=Raises.Model'], 'UserCodeError: Model=Raises.Model: ./Raises.py, line 7: ZeroDivisionError: '
                                         'division by zero', id='constructor-raises'),
    pytest.param(['Model=AtImport.model'], 'UserCodeError: Model=AtImport.model: ./AtImport.py, line 2: '
                                           'RuntimeError: needs a GPU', id='raises-at-import'),
    pytest.param(['Model=Broken.model'], 'UserCodeError: Model=Broken.model: ./Broken.py, line 1: SyntaxError: '
                                         'invalid syntax', id='syntax-error'),
    pytest.param(['Model=Exits.model'], 'UserCodeError: Model=Exits.model: ./Exits.py, line 2: sys.exit(3) ended it',
                 id='sys-exit'),
    pytest.param(['Model=[nn.Flatten(),Raises.Model((64,),(10,))]'], 'UserCodeError: Model.1=Raises.Model((64,),'
                 '(10,)): ./Raises.py, line 7: ZeroDivisionError: division by zero', id='code-value-calls-it'),
])
def test_an_error_in_the_users_code_shows_the_users_line_not_MLs(argv, line, user_dir, capsys):
    for name, text in USER_CODE.items():
        (user_dir / name).write_text(textwrap.dedent(text).lstrip())
    with pytest.raises(SystemExit) as exit:
        main([*FAST, *argv])
    assert exit.value.code == 1
    stderr = capsys.readouterr().err.strip().splitlines()
    assert stderr[-1] == f'ML: {line}'
    assert [text for text in stderr if text.startswith('ML:')] == [stderr[-1]]
    frames = [text for text in stderr if text.strip().startswith('File ')]
    assert frames and all(str(user_dir) in frame for frame in frames), stderr  # the user's frames, none of ML's
    assert nothing_written(user_dir)


TRAINING_ONLY_BUG = """
    import torch
    from torch import nn


    class Model(nn.Module):
        \"\"\"Builds and evaluates; its training branch adds a head of the wrong size.\"\"\"

        def __init__(self, in_shape, out_shape):
            super().__init__()
            self.head, self.auxiliary = nn.Linear(64, 10), nn.Linear(32, 10)

        def forward(self, x):
            x = x.flatten(1)
            return self.head(x) + self.auxiliary(x) if self.training else self.head(x)
"""


def test_an_error_in_the_users_code_during_training_shows_the_users_line_and_keeps_the_whole_traceback(user_dir):
    (user_dir / 'Bug.py').write_text(textwrap.dedent(TRAINING_ONLY_BUG).lstrip())
    result = ml(*FAST, 'Model=Bug.Model', cwd=user_dir, check=False)
    assert result.returncode == 1
    stderr = result.stderr.strip().splitlines()
    assert stderr[-1] == ('ML: UserCodeError: the run at step 0: ./Bug.py, line 14: RuntimeError: mat1 and mat2 shapes '
                          'cannot be multiplied (256x64 and 32x10); the whole traceback is in '
                          'Benchmarking/Exp/Classifier/classify/Digits_1/crash.txt')
    frames = [text for text in stderr if text.strip().startswith('File ')]
    assert frames and all(str(user_dir) in frame for frame in frames), stderr  # the user's frames, none of ML's
    assert (run_dir(user_dir) / 'status').read_text().strip() == 'crashed'
    assert 'ML/run.py' in (run_dir(user_dir) / 'crash.txt').read_text(), 'every frame kept there'


def test_an_ALE_id_registers_its_namespace_first(tmp_path):
    pytest.importorskip('ale_py')
    code = ('import gymnasium; from ML.world.gym import register_namespace; register_namespace("ALE/Pong-v5"); '
            'print("ALE/Pong-v5" in gymnasium.registry)')  # a fresh process: no other test imported ale_py yet
    result = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == 'True'


def test_the_real_command_prints_one_line_and_the_traceback_only_when_asked(user_dir):
    result = ml('Model=Run.modle', cwd=user_dir, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "ML: PathError: Model=Run.modle: not found; tried ./Run.py has no 'modle' (did you mean 'model'?)"]
    full = ml('Model=Run.modle', cwd=user_dir, check=False, env={'HYDRA_FULL_ERROR': '1'})
    assert full.returncode != 0 and 'Traceback' in full.stderr and 'PathError' in full.stderr


def test_a_failing_run_overwrites_nothing_that_existed(user_dir):
    ml(*FAST, cwd=user_dir)
    logs, saved = run_dir(user_dir), checkpoint(user_dir)
    before = {path: path.read_bytes() for path in [*logs.iterdir(), saved]}
    for bad in (['Model=nn.Linear'], ['Model=Run.modle'], ['lr=abc'], ['Eyes=CNN', 'eyes.dept=1']):
        with pytest.raises(SystemExit):
            main([*FAST, *bad])
    assert {path: path.read_bytes() for path in [*logs.iterdir(), saved]} == before


def test_a_run_that_crashes_says_so_and_keeps_the_earlier_checkpoint(user_dir):
    ml(*FAST, cwd=user_dir)
    saved = checkpoint(user_dir).read_bytes()
    result = ml('Model=Crash.Model', *FAST, cwd=user_dir, check=False)
    assert result.returncode == 1 and 'FloatingPointError' in result.stderr
    assert (run_dir(user_dir) / 'status').read_text() == 'crashed\n'
    assert 'the loss went to nan' in (run_dir(user_dir) / 'crash.txt').read_text()
    earlier = [path for path in run_dir(user_dir).parent.iterdir() if path.name.startswith('Digits_1~')]
    assert len(earlier) == 1 and (earlier[0] / 'status').read_text() == 'completed\n'
    assert (f'ML: Benchmarking/Exp/Classifier/classify/Digits_1: the completed run there moved aside to '
            f'{earlier[0].name} (its checkpoint and replay, if any, alike)') in result.stdout.splitlines()
    # the earlier run's checkpoint moved aside with its logs, byte for byte; the crashed run saved none
    assert (checkpoint(user_dir).parent / f'{earlier[0].name}.pt').read_bytes() == saved
    assert not checkpoint(user_dir).exists()
