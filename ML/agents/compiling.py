"""torch.compile and the channels_last memory format for an agent's networks, each asked for by one key (compile,
channels_last) and applied by the build step once the agent is built and on its device."""
import sys

import torch
from torch import nn


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
