"""torch.compile and the channels_last memory format for an agent's networks, each asked for by one key (compile,
channels_last) and applied by the build step once the agent is built and on its device."""
import sys
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from ML.errors import ConfigError
from ML.language import paths


class Layout(NamedTuple):
    """Whether the agent's networks go in channels_last, and the line that says why not where they could have."""
    channels_last: bool
    note: str = None


def choose_layout(asked, agent: nn.Module, networks: dict, in_shape: tuple, device: str) -> Layout:
    """channels_last as set (True, False) or, for None, chosen: on where the agent holds a 4-d weight (a 2-d
    convolution's) and runs on a CPU, where oneDNN convolves fastest in that layout (small CIFAR-shaped CNNs trained
    1.05x and 1.5x as fast in it: Benchmarking/cnn_cpu.py); off on a GPU unless asked.

    networks  the user's networks by key, in the order data flows through them ({'Eyes': eyes, 'Model': model}),
              tried on a dummy batch (2, *in_shape) float32 on `device`, in eval and in training mode: a forward
              that calls .view() on a convolution's output, or asserts a contiguous input, fails in channels_last.
              The layout is blamed only where the same trial passes in the contiguous layout.
    Returns Layout(False, note) when a chosen layout fails, the note naming the network, the user's file and line,
    and torch's reason. Raises ConfigError when channels_last=true and the agent has no 4-d weight to lay out, or a
    network fails in that layout."""
    convolves = any(parameter.dim() == 4 for parameter in agent.parameters())
    if asked and not convolves:
        raise ConfigError(f'channels_last=true: {type(agent).__name__}\'s networks hold no convolution (no 4-d '
                          f'weight) to lay out; leave channels_last at null')
    if asked is False or (asked is None and (torch.device(device).type != 'cpu' or not convolves)):
        return Layout(False)
    failure = _trial(networks, in_shape, device, torch.channels_last)
    if failure is None:
        return Layout(True)
    if _trial(networks, in_shape, device, torch.contiguous_format) is not None:  # not the layout's doing: the
        return Layout(bool(asked))  # network's own error shows where it would without the trial
    if asked:
        raise ConfigError(f'channels_last=true: {failure}{" " if failure.endswith(".") else ". "}Or leave '
                          f'channels_last at null: it then trains in its own layout')
    return Layout(False, f'channels_last: off, as {failure}')


def _trial(networks: dict, in_shape: tuple, device: str, memory_format: torch.memory_format):
    """None, or 'Model (Net) fails in that layout: ./Run.py, line 12: RuntimeError: ...' for the first network
    whose forward raises, laid out in memory_format, in eval or training mode. Each network is left as it was: its
    parameters' and buffers' own tensors (a network may have laid itself out), the buffers' values (batch norm's
    running statistics), its mode, and the random state (dropout draws)."""
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == 'cuda' else []), torch.no_grad():
        for training in (False, True):
            x = torch.zeros(2, *in_shape, device=device)  # two: batch norm takes no batch of one in training
            for key, network in networks.items():
                was_training = network.training
                tensors = [(parameter, parameter.data) for parameter in network.parameters()]
                buffers = [(module, name, buffer, buffer.clone()) for module in network.modules()
                           for name, buffer in module._buffers.items() if buffer is not None]
                network.train(training).to(memory_format=memory_format)
                try:
                    x = network(x)
                except Exception as error:
                    return f'{key} ({type(network).__name__}) fails in that layout: {paths.located(error, Path.cwd())}'
                finally:
                    network.train(was_training)
                    for parameter, data in tensors:
                        parameter.data = data
                    for module, name, buffer, values in buffers:  # .to() replaced them; a forward updated them
                        module._buffers[name] = buffer.copy_(values)
    return None


def prepare(agent: nn.Module, *, compile: bool = False, channels_last: bool = False, backend='inductor'):
    """The agent with its networks in channels_last and compiled, as asked; returns the agent itself.

    channels_last   4-d parameters and buffers (convolutions' weights) in the channels_last layout, which cuDNN's
                    tensor-core kernels and oneDNN on CPU convolve fastest; a convolution then gives its output in
                    that layout too. The same Parameter objects keep their values: optimizers built already stay
                    valid. Other layers are left as they are.
    compile         each of the agent's networks (its direct submodules that hold parameters) compiled in place
                    with torch.compile
                    (nn.Module.compile: state-dict keys and checkpoints stay as they are). Compilation happens at
                    a network's first call, and again for new input shapes; a network that fails to compile says
                    so in one line and runs eagerly from then on.
    backend         torch.compile's backend ('inductor', 'aot_eager', 'cudagraphs', or a callable)
    """
    if channels_last:
        agent.to(memory_format=torch.channels_last)
    if compile:
        for name, network in agent.named_children():
            # a network with no parameters (Eyes=null's Identity) is left alone: in torch 2.14 a compiled call
            # that traces no ops makes dynamo skip the wrapper code every compiled module shares, from then on
            if next(network.parameters(), None) is not None:
                # nn.Module.compile sets this attribute to the compiled call; this call falls back on failure
                network._compiled_call_impl = EagerOnFailure(network, name, backend)
    return agent


class EagerOnFailure:
    """A network's compiled call that, should compiling fail, prints one line and calls the network eagerly from
    then on. An error of the network's own (a shape that does not fit) is raised again by the eager call."""

    def __init__(self, network: nn.Module, name: str, backend):
        self.network, self.name = network, name
        self.compiled = torch.compile(network._call_impl, backend=backend)

    def __call__(self, *args, **kwargs):
        try:
            return self.compiled(*args, **kwargs)
        except torch._dynamo.exc.TorchDynamoException as error:  # the base of dynamo's and inductor's errors
            self.network._compiled_call_impl = None  # nn.Module's own eager call from now on
            cause = getattr(error, 'inner_exception', None) or error  # a backend's own error, when it raised one
            reason = (str(cause).strip().splitlines() or [''])[0]
            print(f'ML: compile: {self.name} ({type(self.network).__name__}) runs eagerly: it did not compile '
                  f'({type(cause).__name__}: {reason})', file=sys.stderr, flush=True)
            return self.network._call_impl(*args, **kwargs)
