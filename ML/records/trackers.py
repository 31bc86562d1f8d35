"""Where a run's records go besides its CSV files: TensorBoard, Weights & Biases and MLflow, each one Writer.

A Writer is stable-baselines3's KVWriter for a whole run: it takes rows (the Counters, `time` and the metrics of
train.csv or eval.csv), the composed config once, files worth keeping (config.yaml, the checkpoint), and is closed
with the run's status. The Logger (logger.py) hands every row to each of its writers; a new tool is one class here
and one entry in TRACKERS (and a bool key of its name in Hyperparams/args.yaml).

None of them makes the learning step wait: TensorBoard's event files and wandb's records are written by their own
threads and processes, and MLflow's metrics go through its asynchronous logging queue.
"""
import importlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ML.errors import ConfigError, RunError

COUNTERS = ('step', 'frame', 'episode', 'epoch', 'time')


@dataclass(frozen=True)
class TrackedRun:
    """What a tracker needs to know of a run: its folder, its name (`Digits_1`; `lr=0.01/Digits_1` in a sweep),
    the project it belongs to (the experiment unless tracking.project says otherwise), the group of runs it is shown
    with (a sweep's members share one), wandb's entity, tags, MLflow's tracking URI (None: MLflow's own default),
    and the step it starts from (above 0 when resumed: TensorBoard drops what an earlier session logged past it)."""
    folder: Path
    name: str
    project: str
    group: Optional[str] = None
    entity: Optional[str] = None
    tags: tuple = ()
    uri: Optional[str] = None
    start_step: int = 0


class Writer:
    """One destination of a run's records (stable-baselines3's KVWriter). A subclass opens its tool in __init__
    (given a TrackedRun) and overrides what its tool takes."""
    module = None  # what the tool imports as, checked before the run writes anything (trackers.chosen)
    extra = None   # the extra of setup.py that installs it

    def write(self, kind: str, row: dict):
        """One row: kind is 'train' or 'eval'; row maps step, frame, episode, epoch (ints), time (seconds since
        the run started) and each metric's name to a float."""

    def log_config(self, config: dict):
        """The composed config, once, at the start (nested dicts of plain values)."""

    def log_artifact(self, path: Path):
        """A file worth keeping beside the run's records (its config.yaml, its checkpoint)."""

    def close(self, status: str = 'completed'):
        """The run ended: 'completed', 'crashed' or 'interrupted'. Flushes what is still queued."""


def metrics(row: dict) -> dict:
    """A row's metrics: everything but the counters."""
    return {key: value for key, value in row.items() if key not in COUNTERS}


def flatten(config: dict, prefix: str = '') -> dict:
    """{'replay': {'nstep': 3}} -> {'replay.nstep': 3}: the dotted keys of the command line."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f'{prefix}{key}.'))
        else:
            flat[f'{prefix}{key}'] = value
    return flat


class TensorBoardWriter(Writer):
    """torch.utils.tensorboard's SummaryWriter into `<run folder>/tensorboard/`: scalars `train/<metric>` and
    `eval/<metric>` at global_step = the step, the config as text (YAML) and in the HPARAMS tab. A resumed run
    purges the events an earlier session wrote past its checkpoint's step."""
    module, extra = 'tensorboard', 'tensorboard'

    def __init__(self, run: TrackedRun):
        from torch.utils.tensorboard import SummaryWriter
        self.writer = SummaryWriter(log_dir=str(run.folder / 'tensorboard'), purge_step=run.start_step or None)

    def write(self, kind: str, row: dict):
        for name, value in metrics(row).items():
            self.writer.add_scalar(f'{kind}/{name}', value, global_step=row['step'])

    def log_config(self, config: dict):
        import yaml
        from torch.utils.tensorboard.summary import hparams
        self.writer.add_text('config', f'```yaml\n{yaml.safe_dump(config, sort_keys=False)}```')  # as markdown
        plain = {key: value if isinstance(value, (bool, int, float, str)) else str(value)
                 for key, value in flatten(config).items()}
        for summary in hparams(plain, {}):  # what SummaryWriter.add_hparams writes, without its extra sub-run
            self.writer.file_writer.add_summary(summary)

    def close(self, status: str = 'completed'):
        self.writer.close()


class WandbWriter(Writer):
    """A Weights & Biases run: project, entity, group, tags, name = the run's, config = the composed config.
    `step` and `frame` are logged beside each metric and declared its x axes (define_metric). WANDB_MODE=offline
    writes `wandb/offline-run-*/` with no network (`wandb sync` uploads it later). A run that crashed or was
    interrupted finishes with exit code 1, which wandb shows as failed. Raises RunError when wandb refuses to start
    (no API key when online, say)."""
    module, extra = 'wandb', 'wandb'

    def __init__(self, run: TrackedRun):
        import wandb
        try:
            self.run = wandb.init(project=run.project, entity=run.entity, group=run.group, tags=list(run.tags),
                                  name=run.name, reinit='create_new')
        except wandb.errors.Error as error:
            raise RunError(f'wandb=true: wandb did not start ({error}); `wandb login`, or WANDB_MODE=offline') \
                from error
        self.run.define_metric('step', hidden=True)
        self.run.define_metric('frame', hidden=True)
        for kind in ('train', 'eval'):
            self.run.define_metric(f'{kind}/*', step_metric='step')
        self.name = run.name

    def write(self, kind: str, row: dict):
        self.run.log({'step': row['step'], 'frame': row['frame'],
                      **{f'{kind}/{name}': value for name, value in metrics(row).items()}})

    def log_config(self, config: dict):
        self.run.config.update(config, allow_val_change=True)

    def log_artifact(self, path: Path):
        if path.suffix == '.pt':  # a checkpoint: a model artifact, versioned across the run's sessions
            import wandb
            artifact = wandb.Artifact(re.sub(r'[^\w.-]', '_', f'model-{self.name}'), type='model')
            artifact.add_file(str(path))
            self.run.log_artifact(artifact)
        else:
            self.run.save(str(path), base_path=str(path.parent), policy='now')

    def close(self, status: str = 'completed'):
        self.run.finish(exit_code=0 if status == 'completed' else 1)


class MLflowWriter(Writer):
    """An MLflow run in the experiment named by the project: params = the flattened config (`replay.nstep`),
    metrics `train/<metric>` and `eval/<metric>` with step = the step, config.yaml and the checkpoint as artifacts,
    tags from tracking.tags and the group. The store is tracking.uri, else MLflow's own default
    (MLFLOW_TRACKING_URI, else `sqlite:///mlflow.db` with artifacts under `./mlruns/`: MLflow 3 refuses its file
    store unless MLFLOW_ALLOW_FILE_STORE=true). Metrics are sent in batches at most FLUSH_SECONDS old, through
    MLflow's asynchronous queue, and the rest at close: a store's transaction per row would cost the default task
    about 7% of its speed.
    The run ends FINISHED, FAILED (crashed) or KILLED (interrupted). Raises RunError when the store refuses."""
    module, extra = 'mlflow', 'mlflow'
    STATUS = {'completed': 'FINISHED', 'crashed': 'FAILED', 'interrupted': 'KILLED'}
    PARAMS_PER_BATCH = 100    # MLflow's limit on params in one log_batch
    METRICS_PER_BATCH = 1000  # and on metrics
    FLUSH_SECONDS = 10        # how stale the store's metrics may be while the run goes on

    def __init__(self, run: TrackedRun):
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
        self.client = MlflowClient(run.uri)
        try:
            experiment = self.client.get_experiment_by_name(run.project)
            experiment_id = experiment.experiment_id if experiment else self._create(run.project)
            tags = {**{tag: 'true' for tag in run.tags}, **({'group': run.group} if run.group else {})}
            self.run_id = self.client.create_run(experiment_id, run_name=run.name, tags=tags).info.run_id
        except MlflowException as error:
            raise RunError(f'mlflow=true: {self.client.tracking_uri}: {error.message}') from error
        self.queued, self.pending = [], []  # metrics not yet sent; the queue's operations, waited for at close
        self.flushed = time.monotonic()

    def _create(self, name: str) -> str:
        """A new experiment; one a sweep's concurrent member created meanwhile is used as it is."""
        from mlflow.exceptions import MlflowException
        try:
            return self.client.create_experiment(name)
        except MlflowException:
            return self.client.get_experiment_by_name(name).experiment_id

    def write(self, kind: str, row: dict):
        from mlflow.entities import Metric
        at = int(time.time() * 1000)  # milliseconds since the epoch, as MLflow times metrics
        self.queued += [Metric(f'{kind}/{name}', float(value), at, row['step']) for name, value in metrics(row).items()]
        if time.monotonic() - self.flushed >= self.FLUSH_SECONDS:
            self._flush()

    def _flush(self):
        for start in range(0, len(self.queued), self.METRICS_PER_BATCH):
            batch = self.queued[start:start + self.METRICS_PER_BATCH]
            self.pending.append(self.client.log_batch(self.run_id, metrics=batch, synchronous=False))
        self.queued, self.flushed = [], time.monotonic()

    def log_config(self, config: dict):
        from mlflow.entities import Param
        params = [Param(key, str(value)[:6000]) for key, value in flatten(config).items()]  # MLflow's value limit
        for start in range(0, len(params), self.PARAMS_PER_BATCH):  # at once: the run's clock has not started
            self.client.log_batch(self.run_id, params=params[start:start + self.PARAMS_PER_BATCH])

    def log_artifact(self, path: Path):
        self.client.log_artifact(self.run_id, str(path))

    def close(self, status: str = 'completed'):
        self._flush()
        for operation in self.pending:
            operation.wait()
        self.client.set_terminated(self.run_id, status=self.STATUS[status])


TRACKERS = {'tensorboard': TensorBoardWriter, 'wandb': WandbWriter, 'mlflow': MLflowWriter}


def chosen(settings: dict) -> list:
    """The Writer classes a config turns on (`wandb=true`, ...), each checked to be installed. Raises ConfigError
    naming the key and the extra that installs it, before the run writes anything."""
    classes = []
    for key, writer in TRACKERS.items():
        if settings.get(key):
            try:
                importlib.import_module(writer.module)
            except ImportError as error:
                raise ConfigError(f"{key}=true: {writer.module} is not installed; pip install -e '.[{writer.extra}]'") \
                    from error
            classes.append(writer)
    return classes
