"""Bad input: one short line on stderr naming the key or path and what would fix it, a non-zero exit, no
traceback unless HYDRA_FULL_ERROR=1, and nothing a user already has overwritten."""
import pytest

from conftest import FAST, checkpoint, ml, run_dir
from ML.cli import main

CASES = [
    pytest.param(['lerning_rate=0.1'], r"ConfigError: lerning_rate: unknown key", id='unknown-key'),
    pytest.param(['+lerning_rate=0.1'], r"ConfigError: lerning_rate: unknown key", id='unknown-key-with-plus'),
    pytest.param(['replay.capacty=3'], r"replay\.capacty: unknown key \(did you mean 'capacity'\?\)",
                 id='unknown-subkey'),
    pytest.param(['Model=Run.modle'], r"PathError: Model=Run\.modle: not found; tried \./Run\.py has no 'modle' "
                                      r"\(did you mean 'model'\?\)", id='unresolvable-path'),
    pytest.param(['Eyes=CNNN'], r"PathError: Eyes=CNNN: not found; .*short names \(did you mean 'CNN'\?\)",
                 id='short-name'),
    pytest.param(['task=recipee'], r"RecipeError: task=recipee: no recipe \./recipee\.yaml .*did you mean 'recipe'",
                 id='missing-recipe'),
    pytest.param(['task=broken'], r"RecipeError: .*broken\.yaml, line 2: ", id='recipe-yaml-error'),
    pytest.param(['lr=abc'], r"ConfigError: lr=abc: expected a number \(the default is 0\.001\)", id='wrong-type'),
    pytest.param(['train_steps=many'], r"train_steps=many: expected an integer", id='wrong-type-int'),
    pytest.param(['save=maybe'], r"save=maybe: expected true or false", id='wrong-type-bool'),
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


@pytest.mark.parametrize('argv, message', CASES)
def test_bad_input_is_one_clear_line(argv, message, user_dir, capsys):
    (user_dir / 'broken.yaml').write_text('lr: 0.1\n  batch_size: [3\n')
    with pytest.raises(SystemExit) as exit:
        main([*FAST, *argv])
    assert exit.value.code == 1
    stderr = capsys.readouterr().err.strip()
    assert len(stderr.splitlines()) == 1 and 'Traceback' not in stderr, stderr
    assert __import__('re').search(message, stderr), stderr
    assert not (user_dir / 'Benchmarking').exists() and not (user_dir / 'Checkpoints').exists()


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
    # the earlier run's checkpoint moved aside with its logs, byte for byte; the crashed run saved none
    assert (checkpoint(user_dir).parent / f'{earlier[0].name}.pt').read_bytes() == saved
    assert not checkpoint(user_dir).exists()
