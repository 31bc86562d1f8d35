"""Data-parallel training over several processes: which process this is, the collectives the run needs, and the
ML command's relaunch of itself under torch's elastic launcher (torchrun).

A run is one process of several when a launcher said so in the environment (torchrun, `accelerate launch` and the
ML command itself set RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; a SLURM task's SLURM_PROCID and
SLURM_NTASKS are read the same way). `start()` then joins the process group through accelerate's PartialState:
gloo between CPUs, nccl between GPUs, each process on the GPU of its local rank.

How the processes learn together (DistributedDataParallel's semantics, without its wrapper, so that checkpoints
keep the agent's own state-dict keys and every agent, the user's too, is data-parallel through its one optimizer
step):

    parameters   broadcast from process 0 once built (and loaded, on resume), so every process starts equal
    batch        batch_size is the global batch: every process draws the same batch indices from the same seeded
                 generator and learns from its own slice of them (shard)
    gradients    averaged over the processes before clipping and the optimizer's step (average_gradients, in
                 ML/agents/update.py), in one flat all-reduce per step
    evaluation   each process scores its shard of the test data; the sums and counts are added (sum_over_processes)
    acting       online (reinforcement learning), each process steps its own environments (seeded apart, process 0
                 as a run of one process) into its own replay and samples its slice of the batch from it; the
                 counts of a step (frames, episodes, replay sizes) are shared in one small all-reduce (per_process)
                 so that every process takes the same steps, learns on the same ones, and counts every frame;
                 the evaluation episodes are shared out and their returns gathered (gather)
    stopping     a signal to any process stops every process on the same step (any_process)
    writing      process 0 alone writes logs, the run's folder, checkpoints and plots (is_main); online, each
                 process saves its own replay with a checkpoint, in its own folder (replay_folder), and process 0's
                 checkpoint holds every process's environments, replay state and random generators
                 (gather_parts), which each process takes back on resume (own_part)
"""
import contextlib
import io
import os
import signal
import sys
import uuid

import torch
from torch import nn

from ML.errors import ConfigError, RunError
from ML.interruptions import Interruptions

_COMMAND = {'running': False}  # whether the ML command runs this process's run (see command)


@contextlib.contextmanager
def command():
    """Within, the run is the ML command's: one that asks for num_processes > 1 raises Relaunch, for the command to
    start itself again as that many processes (relaunch), where a run from code is refused."""
    _COMMAND['running'] = True
    try:
        yield
    finally:
        _COMMAND['running'] = False


def launched() -> bool:
    """Whether a launcher started this process as one of several (torchrun, accelerate launch, SLURM tasks)."""
    return int(os.environ.get('WORLD_SIZE', os.environ.get('SLURM_NTASKS', 1))) > 1


def active() -> bool:
    """Whether this process learns together with others (the process group is up and holds more than one)."""
    return torch.distributed.is_available() and torch.distributed.is_initialized() and \
        torch.distributed.get_world_size() > 1


def rank() -> int:
    """This process's number among the run's processes, 0 to world_size() - 1 (0 when alone); the launcher's RANK
    before the process group is up."""
    if active():
        return torch.distributed.get_rank()
    return int(os.environ.get('RANK', os.environ.get('SLURM_PROCID', 0))) if launched() else 0


def world_size() -> int:
    """How many processes learn together (1 when alone)."""
    return torch.distributed.get_world_size() if active() else 1


def is_main() -> bool:
    """Whether this process writes the run's files and prints its lines (process 0, as nanoGPT's master_process)."""
    return rank() == 0


class ProcessLost(RunError):
    """Another process of the run ended while this one waited on it: `line` is the error it reported (see report),
    or what the backend said of it (a process killed reports nothing)."""

    def __init__(self, line: str):
        super().__init__(line)
        self.line = line


ERROR_KEY = 'ML/error'  # where a process other than the first leaves its error line, for the first to print


def report(line: str):
    """A process other than the first hands its error line to process 0, which prints it (ProcessLost.line): one
    line for the run, whichever process failed. Best effort: a store that is gone already leaves nothing."""
    if active():
        with contextlib.suppress(Exception):
            _store().set(ERROR_KEY, f'{line} (process {rank()} of {world_size()})')


def _store():
    """The process group's key-value store (torchrun's agent's, or process 0's TCPStore)."""
    from torch.distributed.distributed_c10d import _get_default_store
    return _get_default_store()


def _reported() -> str:
    """The error line another process reported, or ''."""
    with contextlib.suppress(Exception):
        if _store().check([ERROR_KEY]):
            return _store().get(ERROR_KEY).decode()
    return ''


class Relaunch(Exception):
    """The ML command is asked for num_processes processes: it starts them (relaunch) in place of this run."""

    def __init__(self, num_processes: int):
        super().__init__(f'num_processes={num_processes}')
        self.num_processes = num_processes


def start(device: str, num_processes: int = 1) -> str:
    """Joins the process group when a launcher started this process as one of several, and returns the device it
    learns on: device itself when alone or on CPUs, else the GPU of its local rank (cuda -> cuda:<LOCAL_RANK>).
    Does nothing more when the group is already up (a second run in the same process).

    num_processes   the processes the run asks for: the ML command starts them (ML num_processes=2); a run that
                    another launcher started takes the launcher's number, and num_processes may be 1 or that number

    Raises Relaunch for num_processes > 1 in the ML command that no launcher started, ConfigError for it elsewhere
    (ML.launch from code, a sweep's member) and for a launcher's number of processes other than num_processes."""
    processes = int(os.environ.get('WORLD_SIZE', os.environ.get('SLURM_NTASKS', 1))) if launched() else 1
    if not launched():
        if num_processes > 1 and _COMMAND['running']:
            raise Relaunch(num_processes)
        if num_processes > 1:
            raise ConfigError(f'num_processes={num_processes}: the ML command starts the processes (ML '
                              f'num_processes={num_processes} ...); from code or in a sweep, run the script under '
                              f'torchrun --nproc_per_node {num_processes}')
        return device
    if num_processes not in (1, processes):
        raise ConfigError(f'num_processes={num_processes}: the launcher started {processes} processes; drop '
                          f'num_processes or make it {processes}')
    _from_slurm()
    from accelerate import PartialState
    state = PartialState(cpu=torch.device(device).type == 'cpu')
    return device if torch.device(device).type == 'cpu' else str(state.device)


def _from_slurm():
    """The launcher's variables from a SLURM task's (srun, or Hydra's submitit_slurm launcher with tasks_per_node),
    where no torchrun set them: rank = SLURM_PROCID, and process 0's host (submitit's own reading of the node list,
    when submitit is installed) as MASTER_ADDR."""
    if 'WORLD_SIZE' in os.environ or 'SLURM_PROCID' not in os.environ:
        return
    try:
        from submitit.helpers import TorchDistributedEnvironment
        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    except ImportError:
        os.environ.update(RANK=os.environ['SLURM_PROCID'], WORLD_SIZE=os.environ['SLURM_NTASKS'],
                          LOCAL_RANK=os.environ.get('SLURM_LOCALID', '0'))
        os.environ.setdefault('MASTER_ADDR', 'localhost')
        os.environ.setdefault('MASTER_PORT', '29500')


def check_agent(agent):
    """Several processes learn together through the agent's optimizer step (Update), which averages their gradients:
    an agent that steps its own optimizers would drift apart in each process. Raises ConfigError for one."""
    from ML.agents.update import Update
    if active() and not any(isinstance(value, Update) for value in vars(agent).values()):
        raise ConfigError(f'num_processes={world_size()}: Agent={type(agent).__name__} keeps no update, so the '
                          f'processes could not average their gradients; take `update` in its constructor and call '
                          f'self.update(loss, optimizer) in learn()')


def process_seed(seed: int) -> int:
    """The seed of this process's own random draws (dropout, exploration): seed + rank, so that processes draw
    apart while process 0 draws as a run of one process does."""
    return seed + rank()


def shard(items):
    """This process's slice of a batch (a tensor, split along its first dim, or a list): the world_size() slices
    are contiguous and in rank order, their sizes differing by one at most (torch.tensor_split's rule)."""
    if not active():
        return items
    if isinstance(items, torch.Tensor):
        return items.tensor_split(world_size())[rank()]
    size, extra = divmod(len(items), world_size())
    start = rank() * size + min(rank(), extra)
    return items[start:start + size + (rank() < extra)]


def _collective_device(tensor: torch.Tensor) -> torch.device:
    """Where the process group reduces: the CPU for gloo, this process's GPU for nccl."""
    backend = torch.distributed.get_backend()
    return torch.device('cpu') if backend == 'gloo' else tensor.device if tensor.is_cuda else \
        torch.device('cuda', torch.cuda.current_device())


def _all_reduce(tensor: torch.Tensor, op=None) -> torch.Tensor:
    """A copy of tensor reduced over every process (summed, or by op), on tensor's device."""
    reduced = tensor.detach().to(_collective_device(tensor), copy=True)
    with _peers():
        torch.distributed.all_reduce(reduced, op=op or torch.distributed.ReduceOp.SUM)
    return reduced.to(tensor.device)


@contextlib.contextmanager
def _peers():
    """A collective whose peer went away (its process ended) raises ProcessLost rather than the backend's error."""
    try:
        yield
    except RuntimeError as error:  # torch.distributed.DistBackendError and gloo's own are RuntimeErrors
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the launcher now stops this process: it reports first
        line = _reported() or 'ProcessLost: another process of the run ended first (killed, or by an error its ' \
                               'own output shows)'
        raise ProcessLost(line) from error


def sum_over_processes(tensor: torch.Tensor) -> torch.Tensor:
    """The elementwise sum of `tensor` over every process (tensor itself when alone), on its device."""
    return _all_reduce(tensor) if active() else tensor


def per_process(values: list) -> torch.Tensor:
    """(world_size(), len(values)) int64 on the CPU: every process's integers `values`, row by rank, in one
    all-reduce (each process fills its own row of zeros); (1, len(values)) when alone, with no collective."""
    rows = torch.zeros(world_size(), len(values), dtype=torch.int64)
    rows[rank()] = torch.tensor(values, dtype=torch.int64)
    return _all_reduce(rows) if active() else rows


def gather(values: list) -> list:
    """Every process's list of picklable `values`, concatenated in rank order (values itself when alone):
    torch.distributed.all_gather_object, for lists whose lengths differ between processes."""
    if not active():
        return list(values)
    gathered = [None] * world_size()
    with _peers():
        torch.distributed.all_gather_object(gathered, list(values))
    return [value for part in gathered for value in part]


def gather_parts(part: dict) -> list:
    """Every process's `part` (a picklable dict) on process 0, in rank order; [] on the others; [part] when alone
    (torch.distributed.gather_object)."""
    if not active():
        return [part]
    gathered = [None] * world_size() if is_main() else None
    with _peers():
        torch.distributed.gather_object(part, gathered, dst=0)
    return gathered or []


def barrier():
    """Every process waits here until all have come (nothing when alone)."""
    if active():
        with _peers():
            torch.distributed.barrier()


def own_part(state: dict) -> dict:
    """This process's own pieces of an online run's checkpoint (its `world`, `replay`, `random` and the loop's
    `episode_returns` not yet logged): process 0's are the checkpoint's own; process k's, its entry in
    state['processes'], or {} when the checkpoint was saved by fewer processes."""
    if rank() == 0:
        return {'world': state.get('world'), 'replay': state.get('replay'), 'random': state.get('random'),
                'episode_returns': (state.get('loop') or {}).get('episode_returns', [])}
    others = state.get('processes') or []
    return others[rank() - 1] if rank() - 1 < len(others) else {}


def replay_folder(folder):
    """Where this process saves its replay with a checkpoint: process 0 in the run's replay folder, process k in
    `process<k>/` inside it (a pathlib.Path)."""
    return folder if rank() == 0 else folder / f'process{rank()}'


def any_process(flag: int) -> int:
    """The largest of every process's `flag` (0 where none raised one): a stop every process agrees on."""
    if not active():
        return flag
    return int(_all_reduce(torch.tensor(int(flag)), torch.distributed.ReduceOp.MAX))


@torch.no_grad()
def average_gradients(parameters: list):
    """Replaces each parameter's gradient with its mean over the processes (DistributedDataParallel's all-reduce),
    in one flat buffer. A parameter that has a gradient in some processes only (a branch one slice took) averages
    those it has, zeros elsewhere; one that has none anywhere keeps None, so an optimizer skips it as alone."""
    if not active():
        return
    reference = next(iter(parameters), None)
    if reference is None:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
    present = torch.tensor([p.grad is not None for p in parameters], dtype=reference.dtype, device=reference.device)
    flat = torch.cat([*(g.reshape(-1).to(reference.dtype) for g in grads), present])
    reduced = _all_reduce(flat).div_(world_size())
    counts = reduced[-len(parameters):]
    offset = 0
    for parameter, grad, count in zip(parameters, grads, counts.tolist()):
        mean = reduced[offset:offset + grad.numel()].view_as(grad).to(grad.dtype)
        offset += grad.numel()
        parameter.grad = mean.clone() if count > 0 else None


@torch.no_grad()
def broadcast_state(module: nn.Module, buffers_only: bool = False):
    """Every process takes process 0's parameters and buffers (or its buffers alone: batch norm's running
    statistics, which each process updates on its own slice, as DistributedDataParallel's broadcast_buffers). A
    module that is not an nn.Module (a user's agent of another kind) is left as it is."""
    if not active() or not isinstance(module, nn.Module):
        return
    tensors = list(module.buffers()) if buffers_only else [*module.parameters(), *module.buffers()]
    for tensor in tensors:
        carrier = tensor.data.to(_collective_device(tensor))  # the tensor itself where it already is there
        with _peers():
            torch.distributed.broadcast(carrier, src=0)
        if carrier is not tensor.data:
            tensor.data.copy_(carrier)


class AgreedInterruptions(Interruptions):
    """Interruptions (SIGTERM, SIGINT, SIGHUP) that every process agrees on: agree() is asked once a step by every
    process together; from the step any process received a signal, `requested` is that signal in all of them, so
    they stop, save (process 0) and report the same step."""

    def agree(self) -> bool:
        self.requested = any_process(self.requested or 0) or None
        return self.requested is not None

    def _handle(self, number, frame):
        with contextlib.nullcontext() if is_main() else contextlib.redirect_stderr(io.StringIO()):
            super()._handle(number, frame)  # process 0 alone says it is finishing the step

    def __exit__(self, kind, error, trace):
        super().__exit__(kind, error, trace)
        if isinstance(error, ProcessLost):  # the launcher stops this process with SIGTERM: it reports first
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return False


class Silent:
    """Stands in for what only process 0 has (the logger, the run's folder): every method does nothing."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def relaunch(num_processes: int, argv: list) -> int:
    """Runs `ML <argv>` as num_processes processes on this machine under torch's elastic launcher (torchrun
    --standalone: a free port, no other machine) and returns the exit code: 0, or the first failing process's (128 +
    the signal's number for one a signal ended). Process 0 prints the run's lines and its error, whichever process
    failed (see report); the launcher's own log stays quiet, and it prints one line for a process a signal killed."""
    import logging
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch
    for name in list(logging.root.manager.loggerDict):  # the elastic agent's loggers, each with its own level
        if name.startswith('torch.distributed'):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    os.environ.setdefault('OMP_NUM_THREADS', '1')  # as torchrun: the processes share the cores
    print(f'ML: {num_processes} processes on this machine, started by torchrun (torch.distributed.run '
          f'--standalone)', flush=True)
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=num_processes, run_id=str(uuid.uuid4()),
                          rdzv_backend='c10d', rdzv_endpoint='localhost:0', max_restarts=0)
    handlers = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        elastic_launch(config, entrypoint=sys.executable)('-P', '-m', 'ML', *argv)  # -P: never ./ML.py
    except ChildFailedError as error:
        rank, failure = error.get_first_failure()
        if failure.exitcode >= 0:
            return failure.exitcode  # the process printed its own error
        print(f'ML: process {rank} of {num_processes} was killed ({failure.signal_name()})', file=sys.stderr)
        return 128 - failure.exitcode
    except SignalException as error:  # the agent passed the signal on to the processes, which saved
        return 128 + int(error.sigval)
    finally:
        for number, handler in handlers.items():  # the agent's handlers stay with the agent
            signal.signal(number, handler)
    return 0
