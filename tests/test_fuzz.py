"""The command line's promise, fuzzed: any key of Hyperparams/args.yaml set to any kind of value either trains
(exit 0) or prints exactly one `ML:` line, exits non-zero, shows no traceback and writes nothing.

Benchmarking/fuzz_cli.py runs the same promise over ~540 lines and also judges which values are bad."""
import contextlib
import io
import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ML.cli import main
from ML.language import compose

BASES = {
    'classify': ['train_steps=2', 'train_frames=512', 'eval_per_steps=null', 'progress=false'],
    'RL': ['task=RL', 'train_steps=4', 'train_frames=16', 'learn_after=2', 'eval_episodes=1', 'eval_per_steps=null',
           'progress=false'],
}
# arguments of the things the two runs build (MLP, Adam, LinearLR, DQN, CartPole, Digits), and some nothing takes
ARGUMENTS = ['model.depth', 'model.hidden', 'model.dropout', 'model.nope', 'optim.weight_decay', 'optim.fused',
             'scheduler.end_factor', 'agent.double', 'agent.epsilon_frames', 'env.max_episode_steps', 'dataset.size',
             'eyes.depth']


def every_key() -> list:
    keys = []
    for key, value in compose.defaults().items():
        is_group = isinstance(value, dict) and key not in compose.twins(compose.defaults())
        keys += [f'{key}.{inner}' for inner in value] if is_group else [key]
    return keys + ARGUMENTS


# Small numbers only where a number is a size: the promise is about what a value means, not how long a million
# environments take to step.
numbers = st.one_of(st.integers(-64, 64).map(str), st.floats(-64, 64).map(repr),
                    st.sampled_from(['inf', '-inf', 'nan', '1e-300', '1_000', '0x10', '-0.0']))
words = st.text(st.characters(codec='utf-8', exclude_characters='\x00'), max_size=12)
lists = st.lists(st.one_of(st.integers(-3, 3).map(str), st.sampled_from(['a', 'CNN', 'null', "'x'"])),
                 max_size=3).map(lambda items: f"[{','.join(items)}]")
mappings = st.dictionaries(st.sampled_from(['a', 'depth', 'lr']), st.integers(-3, 3).map(str), max_size=2).map(
    lambda items: '{' + ','.join(f'{k}:{v}' for k, v in items.items()) + '}')
VALUES = st.one_of(
    numbers, words, lists, mappings,
    st.sampled_from(['', 'null', 'true', 'false', 'True']),                                        # empty, null, bools
    st.sampled_from(['nn.Flatten()', 'nn.Linear(3,2)', 'print(1)', '1/0', 'CNN', 'MLP', 'Digits', 'CartPole-v1',
                     'torch.optim.SGD', "'a,b'", '${lr}', 'choice(1,2)']),                           # code, names
    st.sampled_from(['./x', '../..', '/tmp', 'a/b', '..', '.', '~', 'x.py', './Run.py.model', 'cuda:7', 'tpu']))


def run(argv: list) -> tuple:
    """(exit code, stderr, whether Benchmarking/, Checkpoints/ or Datasets/ appeared) of `ML *argv` in a fresh
    folder; an exception that escapes the command line fails the test as it is."""
    here, folder = Path.cwd(), Path(tempfile.mkdtemp(prefix='ML-fuzz-'))
    stderr = io.StringIO()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr):
            try:
                main(argv)
                code = 0
            except SystemExit as exit:
                code = exit.code
        wrote = any((folder / name).exists() for name in ('Benchmarking', 'Checkpoints', 'Datasets'))
    finally:
        os.chdir(here)
        shutil.rmtree(folder, ignore_errors=True)
    return code, stderr.getvalue(), wrote


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(every_key()), value=VALUES, task=st.sampled_from(sorted(BASES)))
def test_any_value_of_any_key_trains_or_is_one_clean_line(key, value, task, monkeypatch):
    monkeypatch.delenv('HYDRA_FULL_ERROR', raising=False)  # the promise as users see it
    code, stderr, wrote = run([*BASES[task], f'{key}={value}'])
    assert 'Traceback' not in stderr, stderr
    if code != 0:
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith('ML: '), stderr
        assert code == 1 and not wrote
