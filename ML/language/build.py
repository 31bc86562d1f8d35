"""build(): the one place the language turns a value and its arguments into an object.

    value            a name (`CNN`, `Run.model`, `nn.Flatten()`), a list of them (-> nn.Sequential), or a live object
    args             the lowercase twin: `eyes.depth=5` goes to every element whose signature takes `depth`,
                     `eyes.1.depth=5` to element 1 alone; an argument no element takes is an error
    in_shape         the input's shape (no batch dimension); inside a Sequential each element's input shape is
                     the previous element's output on a dummy batch
    out_shape        the output the last element must produce (a head); None for a body
    fill             other arguments the engine can supply by name (an agent's `model`, a dataset's `root`)

Shape inference fills exactly the eight names of SHAPE_NAMES, and a value the user gave always wins.
"""
import functools
import inspect
import math
from pathlib import Path

import torch
from torch import nn

from ML.errors import ConfigError, ShapeError, did_you_mean
from ML.language.paths import resolve

SHAPE_NAMES = ('in_shape', 'out_shape', 'in_features', 'out_features', 'in_channels', 'out_channels',
               'in_dim', 'out_dim')


def infer_shapes(parameters, in_shape=None, out_shape=None) -> dict:
    """The shape arguments a signature names, from the input and output shapes.

    in_shape / out_shape    the whole shape, without the batch dimension
    in_channels             the first dimension (channels first, as torch's convolutions take images)
    in_features, in_dim     the size of one feature vector: the last dimension of a vector (D,) or a sequence
                            (T, D), as nn.Linear reads them; all the values of an image (C*H*W), which a block
                            taking a feature count flattens first
    out_features, out_dim, out_channels    the last dimension of out_shape (the classes, actions or targets)
    """
    known = {}
    if in_shape is not None:
        in_shape = tuple(in_shape)
        features = in_shape[-1] if 0 < len(in_shape) <= 2 else math.prod(in_shape)
        known.update(in_shape=in_shape, in_channels=in_shape[0] if in_shape else 1, in_features=features,
                     in_dim=features)
    if out_shape is not None:
        out_shape = tuple(out_shape)
        size = out_shape[-1] if out_shape else 1
        known.update(out_shape=out_shape, out_channels=size, out_features=size, out_dim=size)
    return {name: known[name] for name in parameters if name in known}


def build(key: str, value, args: dict = None, *, cwd: Path = None, in_shape=None, out_shape=None,
          fill: dict = None, partial: bool = False):
    """The object `key=value` with its twin's `args` (see the module's docstring)."""
    args, cwd = dict(args or {}), cwd or Path.cwd()
    if isinstance(value, (list, tuple)):
        return _sequential(key, value, args, cwd, in_shape, out_shape, fill or {})
    if _indexed(args):
        raise ConfigError(f'{key.lower()}.{next(iter(_indexed(args)))}: indexes an element, but {key} is not a list')
    target = resolve(value, key, cwd) if isinstance(value, str) else value
    return _call(key, value, target, args, in_shape, out_shape, fill or {}, partial)


def _indexed(args: dict) -> dict:
    return {name: value for name, value in args.items() if str(name).isdigit()}


def _sequential(key, values, args, cwd, in_shape, out_shape, fill):
    indexed, shared = _indexed(args), {k: v for k, v in args.items() if not str(k).isdigit()}
    for index in indexed:
        if int(index) >= len(values):
            raise ConfigError(f'{key.lower()}.{index}: {key} has {len(values)} elements (0 to {len(values) - 1})')
    elements, taken = [], set()
    for i, value in enumerate(values):
        target = resolve(value, f'{key}.{i}', cwd) if isinstance(value, str) else value
        routed = {name: arg for name, arg in shared.items() if _takes(target, name)}
        taken.update(routed)
        last = i == len(values) - 1
        element = _call(f'{key}.{i}', value, target, {**routed, **indexed.get(str(i), {})},
                        in_shape, out_shape if last else None, fill, partial=False)
        elements.append(element)
        if in_shape is not None:  # each element checked on its own, so a mismatch names the element
            in_shape = output_shape(f'{key}.{i}', element, in_shape)
    for name in shared.keys() - taken:
        raise ConfigError(f'{key.lower()}.{name}: no element of {key}={list(values)} takes {name!r}')
    return nn.Sequential(*elements)


def _parameters(target):
    try:
        return inspect.signature(target).parameters
    except (TypeError, ValueError):  # some builtins have no signature to read
        return None


def _takes(target, name) -> bool:
    parameters = _parameters(target) if _is_built(target) else None
    return parameters is not None and (name in parameters or any(
        p.kind is p.VAR_KEYWORD for p in parameters.values()))


def _is_built(target) -> bool:
    """Classes and functions are called with their arguments; anything else (an instance) is used as it is."""
    return inspect.isclass(target) or inspect.isfunction(target) or inspect.isbuiltin(target) \
        or isinstance(target, functools.partial)


def _call(key, value, target, args, in_shape, out_shape, fill, partial):
    name = getattr(target, '__name__', type(target).__name__)
    if not _is_built(target):
        if args:
            raise ConfigError(f'{key.lower()}.{next(iter(args))}: {key} is an instance ({name}); '
                              f'arguments go to a class or function')
        return target
    parameters = _parameters(target)
    if parameters is None:
        return target if partial else target(**args)
    check_arguments(key, target, args)
    supplied = {**infer_shapes(parameters, in_shape, out_shape),
                **{k: v for k, v in fill.items() if k in parameters}, **args}  # the user's value wins
    required = [p.name for p in parameters.values()
                if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    missing = [name for name in required[1 if partial else 0:] if name not in supplied]  # a partial's first
    # argument (an optimizer's parameters, a scheduler's optimizer) comes later, from the agent
    if missing:
        raise ConfigError(f'{key}={value if isinstance(value, str) else name}: needs {missing[0]!r}; '
                          f'give {key.lower()}.{missing[0]}=...')
    if partial:
        return functools.partial(target, **supplied)
    try:
        return target(**supplied)
    except TypeError as error:  # a signature that hides its arguments (*args, **kwargs) tells only when called
        if 'argument' not in str(error):
            raise
        raise ConfigError(f'{key}={value if isinstance(value, str) else name}: {error}; '
                          f'give them as {key.lower()}.<name>=...') from error


def check_arguments(key: str, target, args: dict):
    """Every argument in args is one the target's signature takes (or it takes **kwargs), else a ConfigError."""
    parameters = _parameters(target)
    if parameters is None or any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return
    name = getattr(target, '__name__', type(target).__name__)
    for arg in args:
        if arg not in parameters:
            raise ConfigError(f'{key.lower()}.{arg}: {name} takes no argument {arg!r}{did_you_mean(arg, parameters)}')


def output_shape(key: str, module, in_shape) -> tuple:
    """The output shape of module on a dummy batch of one (no batch dimension), or a ShapeError naming the block."""
    if not callable(module):
        raise ShapeError(f'{key}: {type(module).__name__} is not a module that can take an input')
    was_training = getattr(module, 'training', False)
    if isinstance(module, nn.Module):
        module.eval()
    try:
        with torch.no_grad():
            output = module(torch.zeros(1, *in_shape))
    except (RuntimeError, ValueError, TypeError, IndexError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        flat = 'mat1 and mat2' in message and len(in_shape) > 1  # a layer of features met an image or sequence
        hint = f'; flatten first: {key.split(".")[0]}=[nn.Flatten(),...]' if flat else ''
        raise ShapeError(f'{key} ({type(module).__name__}): expected an input it can take, got shape '
                         f'{tuple(in_shape)}: {message}{hint}') from error
    finally:
        if isinstance(module, nn.Module):
            module.train(was_training)
    if not isinstance(output, torch.Tensor):
        raise ShapeError(f'{key} ({type(module).__name__}): returns {type(output).__name__}, not a tensor')
    return tuple(output.shape[1:])
