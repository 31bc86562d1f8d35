"""Tracking: what TensorBoard, wandb (offline) and MLflow hold after a real `ML` run, read back with each tool's own
reader and compared with train.csv and eval.csv; the one line a tracker that is not installed gets; a sweep's
members grouped; the logger of a process other than the main one writing nothing."""
import csv
import json
import struct
from pathlib import Path

import pytest

from conftest import FAST, ml, run_dir
from ML.errors import ConfigError
from ML.language import schema
from ML.records.logger import Logger
from ML.records.trackers import TrackedRun
from ML.specs import Counters

# wandb offline, quiet, without its system monitor; MLflow without telemetry: nothing reaches for the network
QUIET = {'WANDB_MODE': 'offline', 'WANDB_SILENT': 'true', 'WANDB_X_DISABLE_STATS': 'true', 'WANDB_DISABLE_GIT': 'true',
         'WANDB_DISABLE_CODE': 'true', 'MLFLOW_DISABLE_TELEMETRY': 'true', 'DO_NOT_TRACK': 'true'}
BUDGET = ['train_steps=30', 'eval_per_steps=15', 'log_per_steps=10']


def rows(path: Path) -> list:
    with path.open() as file:
        return [{key: float(value) for key, value in row.items() if value} for row in csv.DictReader(file)]


def series(csv_rows: list, metric: str) -> list:
    return [(int(row['step']), row[metric]) for row in csv_rows if metric in row]


@pytest.fixture(scope='module')
def tracked(tmp_path_factory):
    """One run of the default task into all three trackers, its bar shown: (folder, the ML process's result)."""
    folder = tmp_path_factory.mktemp('tracked')
    result = ml(*BUDGET, 'tensorboard=true', 'wandb=true', 'mlflow=true', 'tracking.tags=[baseline,v2]',
                'tracking.log_model=true', cwd=folder, env=QUIET)
    return folder, result


def test_tensorboard_holds_the_rows_of_the_csv_files(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    folder, _ = tracked
    run = run_dir(folder)
    events = EventAccumulator(str(run / 'tensorboard'))
    events.Reload()
    assert {'train/loss', 'eval/accuracy'} <= set(events.Tags()['scalars'])
    for kind, metric in (('train', 'loss'), ('eval', 'accuracy')):
        logged = [(event.step, pytest.approx(event.value, rel=1e-6)) for event in events.Scalars(f'{kind}/{metric}')]
        assert logged == series(rows(run / f'{kind}.csv'), metric)
    assert [step for step, _ in logged] == [15, 30]
    assert 'config/text_summary' in events.Tags()['tensors']  # the composed config, as text


def wandb_records(path: Path):
    """The protobuf Records of a `.wandb` file (wandb_internal_pb2.Record), read from the LevelDB-style log that
    wandb-core writes: a 7-byte file header (':W&B', magic 0xBEE1, version 0), then 32 KiB blocks of chunks, each
    a 7-byte header (crc32, length, type: 1 full, 2 first, 3 middle, 4 last) and its bytes."""
    from wandb.proto import wandb_internal_pb2
    data, block = path.read_bytes(), 32768
    assert data[:7] == b':W&B\xe1\xbe\x00'
    position, pending = 7, b''
    while position + 7 <= len(data):
        if block - position % block < 7:  # too little room left in the block for a header: padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack('<IHB', data[position:position + 7])
        if (length, kind) == (0, 0):
            break
        pending += data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b''
            yield record


def _key(item) -> str:
    return item.key or '/'.join(item.nested_key)  # wandb keeps `train/loss` as the path ['train', 'loss']


def wandb_run(folder: Path) -> dict:
    """An offline run's name, project, group, tags, config and history rows, from its `.wandb` file."""
    found = {'config': {}, 'history': []}
    for record in wandb_records(next(folder.glob('*.wandb'))):
        kind = record.WhichOneof('record_type')
        if kind == 'run':
            found.update(name=record.run.display_name, project=record.run.project, group=record.run.run_group,
                         tags=list(record.run.tags))
        elif kind == 'config':
            found['config'].update({_key(item): json.loads(item.value_json) for item in record.config.update})
        elif kind == 'history':
            found['history'].append({_key(item): json.loads(item.value_json) for item in record.history.item})
    return found


def test_wandb_offline_holds_the_rows_of_the_csv_files_and_the_config(tracked):
    folder, _ = tracked
    [offline] = list((folder / 'wandb').glob('offline-run-*'))
    run = wandb_run(offline)
    assert (run['name'], run['project'], run['group'], run['tags']) == ('Digits_1', 'Exp', '', ['baseline', 'v2'])
    assert (run['config']['lr'], run['config']['Model'], run['config']['replay']['nstep']) == (0.001, 'MLP', 1)
    for kind, metric in (('train', 'loss'), ('eval', 'accuracy')):
        logged = [(row['step'], row[f'{kind}/{metric}']) for row in run['history'] if f'{kind}/{metric}' in row]
        assert logged == series(rows(run_dir(folder) / f'{kind}.csv'), metric)
    assert [row['frame'] for row in run['history'] if 'eval/accuracy' in row] == \
        [row['frame'] for row in rows(run_dir(folder) / 'eval.csv')]


def test_mlflow_holds_the_rows_of_the_csv_files_the_params_and_the_files(tracked):
    from mlflow.tracking import MlflowClient
    folder, _ = tracked
    client = MlflowClient(f'sqlite:///{folder / "mlflow.db"}')  # MLflow 3's default store, where the run was
    [run] = client.search_runs([client.get_experiment_by_name('Exp').experiment_id])
    assert (run.info.run_name, run.info.status) == ('Digits_1', 'FINISHED')
    assert (run.data.params['lr'], run.data.params['replay.nstep'], run.data.params['Model']) == ('0.001', '1', 'MLP')
    assert (run.data.tags['baseline'], run.data.tags['v2']) == ('true', 'true')
    for kind, metric in (('train', 'loss'), ('eval', 'accuracy')):
        logged = [(point.step, point.value) for point in client.get_metric_history(run.info.run_id, f'{kind}/{metric}')]
        assert sorted(logged) == series(rows(run_dir(folder) / f'{kind}.csv'), metric)
    assert {artifact.path for artifact in client.list_artifacts(run.info.run_id)} == {'config.yaml', 'Digits_1.pt'}


def test_the_bar_names_the_run_shows_the_final_evaluation_and_leaves_no_line(tracked):
    folder, result = tracked
    final = rows(run_dir(folder) / 'eval.csv')[-1]['accuracy']
    drawn = result.stderr.splitlines()  # each time the bar was drawn (text mode reads tqdm's \r as a new line)
    last = [line for line in drawn if line.startswith('Digits_1:')][-1]
    assert last.startswith('Digits_1: 100%') and f'eval accuracy={final:.4g}' in last
    assert drawn[-1].strip() == ''  # then cleared


@pytest.mark.parametrize('key, module, extra', [('wandb', 'wandb', 'wandb'), ('mlflow', 'mlflow', 'mlflow'),
                                                ('tensorboard', 'tensorboard', 'tensorboard')])
def test_a_tracker_that_is_not_installed_is_one_line_before_anything_is_written(key, module, extra, user_dir):
    shadow = user_dir / 'not_installed' / module
    shadow.mkdir(parents=True)
    (shadow / '__init__.py').write_text(f'raise ImportError("No module named {module!r}")\n')
    result = ml(*FAST, f'{key}=true', cwd=user_dir, check=False,
                env={**QUIET, 'PYTHONPATH': str(user_dir / 'not_installed')})
    assert result.returncode == 1
    assert result.stderr.strip() == f"ML: ConfigError: {key}=true: {module} is not installed; " \
                                    f"pip install -e '.[{extra}]'"
    assert not (user_dir / 'Benchmarking').exists() and not (user_dir / 'wandb').exists()


def test_a_sweeps_members_are_one_group_named_after_the_experiment(user_dir):
    ml('-m', 'seed=1,2', 'lr=0.01', 'wandb=true', 'experiment=Sweep', *FAST, cwd=user_dir, env=QUIET)
    runs = sorted((wandb_run(folder) for folder in (user_dir / 'wandb').glob('offline-run-*')),
                  key=lambda run: run['name'])
    assert [(run['name'], run['project'], run['group']) for run in runs] == [('Digits_1', 'Sweep', 'Sweep'),
                                                                             ('Digits_2', 'Sweep', 'Sweep')]


def test_a_process_other_than_the_main_one_writes_nothing(tmp_path, capsys):
    logger = Logger(TrackedRun(tmp_path, 'Digits_1', 'Exp'), total=10, main_process=False)
    counters = Counters()
    logger.start(counters)
    counters.step = 10
    logger.progress(counters)
    logger.train(counters, {'loss': 0.5}, [])
    logger.eval(counters, {'accuracy': 0.9})
    logger.close()
    assert list(tmp_path.iterdir()) == [] and capsys.readouterr().err == ''


def test_the_bar_says_the_replay_is_filling_until_learning_starts(tmp_path):
    logger = Logger(TrackedRun(tmp_path, 'CartPole-v1_1', 'Exp'), total=10)
    counters = Counters()
    logger.start(counters)
    counters.step = 1
    logger.progress(counters, 'filling replay')
    filling = logger.bar.desc
    counters.step = 2
    logger.progress(counters)
    learning = logger.bar.desc
    logger.close()
    assert (filling, learning, logger.bar) == ('CartPole-v1_1 (filling replay): ', 'CartPole-v1_1: ', None)


def test_tags_are_words():
    assert schema.check('tracking.tags', ['v2', 2024]) == ['v2', '2024']
    expected = r'tracking\.tags=v2: expected a list of words \(\[a,b\]\) \(the default is \[\]\)'
    with pytest.raises(ConfigError, match=expected):
        schema.check('tracking.tags', 'v2')
