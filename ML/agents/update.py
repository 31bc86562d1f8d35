"""The optimizer step, in one place for every agent: backward, gradient accumulation, mixed precision with its loss
scaler, gradient clipping, the optimizer's and the scheduler's steps, and the target networks' soft updates.

An agent writes its loss and hands it over, as it would call `optimizer.step()`:

    with self.update.autocast():               # the forward passes in the run's precision (precision=bf16)
        loss = F.cross_entropy(self(batch.obs), batch.label)
    self.update(loss, self.optim, self.scheduler)

Mixed precision is torch's automatic mixed precision (torch.autocast, torch.amp.GradScaler), the two calls Hugging
Face accelerate's Accelerator makes for `mixed_precision=...`; accelerate decides whether a device takes bf16. The
Accelerator itself is not built here: its state is one per process (AcceleratorState refuses a second precision
with "AcceleratorState has already been initialized"), and runs in one process (a sweep on Hydra's basic launcher,
ML.launch from a notebook) may each ask their own.
"""
import contextlib
import functools
import inspect

import torch
from torch import nn

from ML import distributed
from ML.errors import ConfigError

PRECISIONS = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def resolve_precision(precision: str = 'fp32', accelerate: bool = False, device='cpu') -> tuple:
    """(autocast dtype or None for fp32, a one-line description of what the run does).

    precision     'fp32', 'bf16' or 'fp16'
    accelerate    true: bf16 where the device supports it (accelerate.utils.is_bf16_available; every CPU does,
                  through torch's CPU autocast), fp32 elsewhere; a precision named bf16 or fp16 wins
    device        where the networks are ('cpu', 'cuda', 'cuda:1', a torch.device)

    Raises ConfigError for a precision not in PRECISIONS.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f'precision={precision}: not a precision; give fp32, bf16 or fp16')
    kind = torch.device(device).type
    chosen = ''
    if accelerate and precision == 'fp32':
        from accelerate.utils import is_bf16_available
        supported = kind == 'cpu' or is_bf16_available(ignore_tpu=True)  # accelerate runs bf16 on any CPU
        precision = 'bf16' if supported else 'fp32'
        chosen = f' (accelerate=true: {kind} {"takes" if supported else "has no"} bf16)'
    if precision == 'fp32':
        return None, f'precision: fp32 on {kind}{chosen}'
    if precision == 'bf16':
        return torch.bfloat16, f'precision: bf16 autocast on {kind}{chosen}'
    # fp16 on a CPU runs as asked (torch autocasts and scales on CPUs too); accelerate would quietly run fp32 there
    slow = ' (slow on CPUs without fp16 arithmetic; bf16 is the CPU\'s mixed precision)' if kind == 'cpu' else ''
    return torch.float16, f'precision: fp16 autocast with a loss scaler on {kind}{slow}'


def describe(precision='fp32', accelerate=False, device='cpu', compile=False, channels_last=False) -> str:
    """The one line a run prints about how it computes, e.g. 'precision: bf16 autocast on cpu; compile: on'.
    Raises ConfigError for a precision not in PRECISIONS."""
    parts = [resolve_precision(precision, accelerate, device)[1]]
    parts += ['compile: on (torch.compile)'] if compile else []
    parts += ['channels_last: on'] if channels_last else []
    return '; '.join(parts)


def takes_metric(scheduler) -> bool:
    """Whether a scheduler steps with a metric (torch's ReduceLROnPlateau, or any whose step() names `metrics`):
    the loop steps those after each evaluation with the monitored metric (ML.records.monitor), not per update."""
    return not isinstance(scheduler, (torch.optim.Optimizer, type)) and _step_takes_metric(type(scheduler))


@functools.lru_cache(maxsize=None)  # asked once per learning step: a signature is read once per class
def _step_takes_metric(kind: type) -> bool:
    if issubclass(kind, torch.optim.lr_scheduler.ReduceLROnPlateau):
        return True
    step = getattr(kind, 'step', None)
    try:
        return callable(step) and 'metrics' in inspect.signature(step).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        return False


def metric_schedulers(agent) -> list:
    """The schedulers an agent holds as attributes whose step() takes a metric (see takes_metric)."""
    return [value for value in vars(agent).values() if takes_metric(value)]


class Update:
    """Backward, accumulation, mixed precision, clipping and the optimizer step, for any agent: the engine builds
    one from the run's keys (precision, accelerate, max_grad_norm, accumulate_grad_batches) and hands it to every
    agent whose constructor names `update`; the agent keeps it as an attribute, so checkpoints save its state
    (the fp16 loss scale and the accumulation count).

    precision                 'fp32', 'bf16' or 'fp16': autocast() runs forward passes in it; fp16 scales the
                              loss so small gradients survive fp16's range (Micikevicius et al. 2018, "Mixed
                              Precision Training"), skipping a step whose gradients overflowed
    accelerate                true: bf16 where the device supports it (see resolve_precision)
    device                    where the networks are: the autocast and the loss scaler's device type
    max_grad_norm             clip the gradients' global L2 norm to this before each step (None: no clipping)
    accumulate_grad_batches   N: each call is a micro-batch whose loss is divided by N, and the optimizer steps
                              every N-th call on their summed gradients: with a mean loss over N equal parts of a
                              batch, the step of the whole batch (PyTorch Lightning's accumulate_grad_batches)

    Run as one of several processes (ML/distributed.py), the gradients are averaged over the processes right before
    the step (after accumulating, before unscaling and clipping), in one all-reduce, as DistributedDataParallel's.

    Raises ConfigError for a precision it does not know, a max_grad_norm <= 0 or an accumulate_grad_batches < 1.
    """

    def __init__(self, precision='fp32', accelerate=False, device='cpu', max_grad_norm=None,
                 accumulate_grad_batches=1):
        if max_grad_norm is not None and not max_grad_norm > 0:
            raise ConfigError(f'max_grad_norm={max_grad_norm}: give a norm > 0, or null for no clipping')
        if isinstance(accumulate_grad_batches, bool) or not isinstance(accumulate_grad_batches, int) \
                or accumulate_grad_batches < 1:
            raise ConfigError(f'accumulate_grad_batches={accumulate_grad_batches}: give a whole number of '
                              f'micro-batches per step, 1 or more')
        self.dtype, self.description = resolve_precision(precision, accelerate, device)
        self.device_type = torch.device(device).type
        self.max_grad_norm, self.accumulate_grad_batches = max_grad_norm, accumulate_grad_batches
        self.scaler = torch.amp.GradScaler(self.device_type) if self.dtype is torch.float16 else None
        self._micro_batches = {}  # optimizer -> micro-batches it has accumulated since its last step
        self._restored = []       # counts from a checkpoint, for the optimizers in the order they first step

    def autocast(self):
        """A context for the forward passes and the loss: autocast to the run's precision, nothing in fp32.
        Backward runs outside it (torch's advice: autocast wraps the forward pass and the loss only)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def __call__(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, scheduler=None):
        """Backward of `loss` (a scalar tensor) into the parameters `optimizer` steps, then, once every
        accumulate_grad_batches calls, clip, step the optimizer and the scheduler (if any), and clear the gradients
        before the next cycle. The other parameters the loss reaches are left alone: an actor's loss through a
        critic leaves the critic's gradients as they were.

        Returns the gradients' global L2 norm before clipping (a 0-d tensor) on a step that clipped, else None.
        """
        done = self._micro_batches.get(optimizer)
        if done is None:
            done = self._restored.pop(0) if self._restored else 0
        if done == 0:
            optimizer.zero_grad(set_to_none=True)
        if self.accumulate_grad_batches > 1:
            loss = loss / self.accumulate_grad_batches
        parameters = [p for group in optimizer.param_groups for p in group['params'] if p.requires_grad]
        (self.scaler.scale(loss) if self.scaler else loss).backward(inputs=parameters)
        done += 1
        self._micro_batches[optimizer] = done % self.accumulate_grad_batches
        if done < self.accumulate_grad_batches:
            return None

        distributed.average_gradients(parameters)  # several processes: each one's slice, averaged as DDP does
        grad_norm = None
        if self.max_grad_norm is not None:
            if self.scaler:
                self.scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            grad_norm = nn.utils.clip_grad_norm_(parameters, self.max_grad_norm)
        if self.scaler:
            self.scaler.step(optimizer)  # skipped when a gradient overflowed (inf or nan) ...
            self.scaler.update()         # ... and then the scale halves; it doubles after 2000 clean steps
        else:
            optimizer.step()
        if scheduler is not None and not takes_metric(scheduler):  # a metric's steps follow evaluations
            scheduler.step()
        return grad_norm

    @staticmethod
    @torch.no_grad()
    def soft_update(target: nn.Module, online: nn.Module, tau: float):
        """target <- tau * online + (1 - tau) * target, parameter by parameter (Polyak averaging, as DDPG's
        target networks: Lillicrap et al. 2016); tau = 1 copies. Buffers (batch norm's running statistics) are
        copied, not averaged. The two modules have the same architecture."""
        for online_parameter, target_parameter in zip(online.parameters(), target.parameters()):
            target_parameter.lerp_(online_parameter, tau)
        for online_buffer, target_buffer in zip(online.buffers(), target.buffers()):
            target_buffer.copy_(online_buffer)

    def state_dict(self) -> dict:
        """The loss scale and its growth count (fp16), and each optimizer's micro-batches since its last step.
        Gradients are not saved: a run resumed in the middle of an accumulation steps on the micro-batches that
        follow."""
        return {'scaler': self.scaler.state_dict() if self.scaler else {},
                'micro_batches': [*self._micro_batches.values(), *self._restored]}

    def load_state_dict(self, state: dict):
        """What state_dict() returned. A scale saved by an fp16 run is kept only by an fp16 run; a count, only as
        far as this run's accumulate_grad_batches goes."""
        if self.scaler and state['scaler']:
            self.scaler.load_state_dict(state['scaler'])
        self._micro_batches = {}
        self._restored = [count % self.accumulate_grad_batches for count in state['micro_batches']]
