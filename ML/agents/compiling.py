"""torch.compile and the channels_last memory format for an agent's networks, each asked for by one key (compile,
channels_last) and applied by the build step once the agent is built and on its device."""
import sys
from typing import NamedTuple

import torch
from torch import nn

from ML.errors import ConfigError


class Layout(NamedTuple):
    """Whether the agent's networks go in channels_last, and the line that says why not where they could have."""
    channels_last: bool
    note: str = None


def choose_layout(asked, networks: dict, in_shape: tuple, device: str) -> Layout:
    """channels_last as set (True, False) or, for None, chosen: on where the networks hold a 2-d convolution and run
    on a CPU, where oneDNN convolves fastest in that layout (small CIFAR-shaped CNNs trained 1.05x and 1.5x as fast
    in it: Benchmarking/cnn_cpu.py); off on a GPU unless asked.

    networks  the user's networks by key, in the order data flows through them ({'Eyes': eyes, 'Model': model}),
              each tried in channels_last on a dummy batch (1, *in_shape) float32 on `device` and then put back:
              a forward that calls .view() on a convolution's output fails in that layout, where .reshape() works.
    Returns Layout(False, note) when a chosen layout fails, the note naming the network and torch's reason.
    Raises ConfigError naming the network when channels_last=true and it fails in that layout."""
    convolves = any(isinstance(module, nn.Conv2d) for network in networks.values() for module in network.modules())
    if asked is False or (asked is None and (torch.device(device).type != 'cpu' or not convolves)):
        return Layout(False)
    failure = _failure_in_channels_last(networks, in_shape, device)
    if failure is None:
        return Layout(True)
    if asked:
        raise ConfigError(f'channels_last=true: {failure}; write .reshape(...) for .view(...) there, or set '
                          f'channels_last=false')
    return Layout(False, f'channels_last: off, as {failure}; a CPU convolves faster in it (channels_last=false: '
                         f'off, without this line)')


def _failure_in_channels_last(networks: dict, in_shape: tuple, device: str):
    """None, or 'Model (Net) fails in that layout (RuntimeError: ...)' for the first network whose forward raises.
    Each network is left as it was: its parameters' and buffers' own tensors (a network may have laid itself out)."""
    x = torch.zeros(1, *in_shape, device=device)
    for key, network in networks.items():
        was_training = network.training
        tensors = [(parameter, parameter.data) for parameter in network.parameters()]
        buffers = [(module, dict(module._buffers)) for module in network.modules()]  # .to() replaces buffers
        network.train(False).to(memory_format=torch.channels_last)
        try:
            with torch.no_grad():
                x = network(x)
        except Exception as error:  # its forward ran in the contiguous layout (the shape check): the layout did it
            reason = (str(error).strip().splitlines() or [''])[0]
            return f'{key} ({type(network).__name__}) fails in that layout ({type(error).__name__}: {reason})'
        finally:
            network.train(was_training)
            for parameter, data in tensors:
                parameter.data = data
            for module, saved in buffers:
                module._buffers.update(saved)
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
