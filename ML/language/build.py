"""build(): the one place the language turns a value and its arguments into an object.

    value            a name (`CNN`, `Run.model`, `nn.Flatten()`), a list of them (-> nn.Sequential), or a live object
    args             the lowercase twin: `eyes.depth=5` goes to every element whose signature takes `depth`,
                     `eyes.1.depth=5` to element 1 alone; an argument no element takes is an error
    in_shape         the input's shape (no batch dimension); inside a Sequential each element's input shape is
                     the previous element's output on a dummy batch
    out_shape        the output the last element must produce (a head); None for a body
    fill             other arguments the engine can supply by name (an agent's `model`, a dataset's `root`)

Shape inference fills exactly the eight names of SHAPE_NAMES, and a value the user gave always wins.

Every argument is checked against the signature before the call: its name (an argument nothing takes is an error),
and its type, by the parameter's annotation or, where that says nothing plain, by its default (a default of 3 asks for
an integer). What the call itself raises becomes one line naming the key: a ConfigError with the call
(`Model=CNN: CNN(depth=-1) raised ValueError: ...`), or a UserCodeError at the line of the user's own code.
"""
import collections.abc
import functools
import inspect
import math
import re
import types
import typing
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from ML.errors import ConfigError, MLError, ShapeError, did_you_mean
from ML.language.paths import explain, is_users_error, resolve
from ML.language.schema import show

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
    built = _call(key, value, target, args, in_shape, out_shape, fill or {}, partial)
    if key in ROLES and not partial:
        _plays(key, value, built)
    return built


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
    label = f'{key}={value if isinstance(value, str) else name}'
    if not _is_built(target):
        if args:
            raise ConfigError(f'{key.lower()}.{next(iter(args))}: {key} is an instance ({name}); '
                              f'arguments go to a class or function')
        return target
    parameters = _parameters(target)
    if parameters is None:
        return target if partial else _run(label, f'{name}()', lambda: target(**args))
    check_arguments(key, target, args)
    supplied = {**infer_shapes(parameters, in_shape, out_shape),
                **{k: v for k, v in fill.items() if k in parameters}, **args}  # the user's value wins
    required = [p.name for p in parameters.values()
                if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    missing = [name for name in required[1 if partial else 0:] if name not in supplied]  # a partial's first
    # argument (an optimizer's parameters, a scheduler's optimizer) comes later, from the agent
    if missing:
        raise ConfigError(f'{label}: needs {missing[0]!r}; give {key.lower()}.{missing[0]}=...')
    call = f"{name}({', '.join(f'{arg}={argument!r}' for arg, argument in args.items())})"
    if partial:
        if key in ROLES:  # tried once on a stand-in, so that a bad argument is named now, not inside the agent
            _plays(key, value, _run(label, call, lambda: target(ROLES[key].stand_in(), **supplied)))
        return functools.partial(target, **supplied)
    return _run(label, call, lambda: target(**supplied))


class Role(NamedTuple):
    """What a key's value must build, the methods that show it does, an example, and for a partial a stand-in for
    what the agent hands it (an optimizer gets parameters, a scheduler an optimizer)."""
    what: str
    methods: tuple
    example: str
    stand_in: typing.Callable = None


ROLES = {'Optim': Role('an optimizer', ('step', 'zero_grad'), 'torch.optim.SGD',
                       lambda: [nn.Parameter(torch.zeros(1))]),
         'Scheduler': Role('a learning-rate scheduler', ('step',), 'torch.optim.lr_scheduler.StepLR',
                           lambda: torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)),
         'Agent': Role('an agent', ('act', 'learn'), 'DQN'),
         'Dataset': Role('a dataset', ('__getitem__', '__len__'), 'Digits')}


def _plays(key: str, value, built):
    """built has the methods of what key must build, else a ConfigError saying what it built instead."""
    role = ROLES[key]
    if not all(callable(getattr(built, method, None)) for method in role.methods):
        name = value if isinstance(value, str) else getattr(value, '__name__', type(value).__name__)
        raise ConfigError(f'{key}={name}: builds {type(built).__name__}, not {role.what} (no '
                          f'{" or ".join(role.methods)}); give one like {key}={role.example}')


SIGNATURE_MISMATCH = re.compile(r'missing \d+ required|unexpected keyword argument|takes \d+ positional')


def _run(label: str, call: str, construct):
    """construct(), with what it raises as one line naming label (see the module's docstring). An OSError of a
    library (a download, a missing file) is left to the caller, which knows what was being read."""
    try:
        return construct()
    except (KeyboardInterrupt, MLError):
        raise
    except BaseException as error:
        cwd = Path.cwd()
        if isinstance(error, OSError) and not is_users_error(error, cwd):
            raise
        if isinstance(error, TypeError) and SIGNATURE_MISMATCH.search(str(error)) and not is_users_error(error, cwd):
            # a signature that hides its arguments (*args, **kwargs) tells only when called
            raise ConfigError(f'{label}: {error}; give them as {label.split("=")[0].lower()}.<name>=...') from error
        raise explain(label, error, cwd, call=call) from error


def check_arguments(key: str, target, args: dict, name: str = None):
    """Every argument in args is one the target's signature takes (or it takes **kwargs), of a type its annotation
    allows or, where that says nothing plain, its default's (a default of 3 asks for an integer); else a
    ConfigError naming the argument (and the target, by name unless told). Objects from code are taken as they are."""
    parameters = _parameters(target)
    if parameters is None:
        return
    name = name or getattr(target, '__name__', type(target).__name__)
    open_ended = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    annotated = _annotated_parameters(target)
    for arg, value in args.items():
        if arg not in parameters:
            if open_ended:
                continue
            raise ConfigError(f'{key.lower()}.{arg}: {name} takes no argument {arg!r}{did_you_mean(arg, parameters)}')
        parameter = annotated.get(arg, parameters[arg])
        kinds = _kinds(parameter)
        if kinds is not None and not _fits(value, kinds, parameter.default):
            default = '' if parameter.default is parameter.empty else f' (its default is {show(parameter.default)})'
            raise ConfigError(f'{key.lower()}.{arg}={show(value)}: {name} takes {arg} as '
                              f'{" or ".join(dict.fromkeys(KIND_WORDS[k] for k in KIND_WORDS if k in kinds))}{default}')


PLAIN = (bool, int, float, str, list, tuple, dict, type(None))  # what the command line and recipes can give
KIND_WORDS = {bool: 'true or false', int: 'an integer', float: 'a number', str: 'a string', list: 'a list',
              tuple: 'a list', dict: 'a mapping', type(None): 'null'}


def _annotated_parameters(target) -> dict:
    """The parameters with their annotations evaluated (`from __future__ import annotations` leaves strings)."""
    try:
        return dict(inspect.signature(target, eval_str=True).parameters)
    except Exception:  # an annotation that does not evaluate (a name only imported for type checkers) says nothing
        return {}


def _kinds(parameter) -> set:
    """The plain types a parameter takes, or None where its signature does not say (be lenient there)."""
    kinds = _annotation_kinds(parameter.annotation)
    if kinds is not None or parameter.annotation is typing.Any:
        return kinds
    default = parameter.default
    if isinstance(default, (list, tuple)):
        return {list, tuple}
    if isinstance(default, PLAIN) and default is not None:
        return {type(default)}
    return None


def _annotation_kinds(annotation):
    if annotation is inspect.Parameter.empty or annotation is typing.Any:
        return None
    if annotation is None or annotation is type(None):
        return {type(None)}
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        # torch's `lr: float | Tensor`: a tensor comes only from code, which is taken as it is (_fits)
        parts = [_annotation_kinds(part) for part in typing.get_args(annotation) if part is not torch.Tensor]
        return None if any(part is None for part in parts) else set().union(*parts)
    if origin is typing.Literal:
        return {type(choice) for choice in typing.get_args(annotation)}
    plain = origin or annotation
    if plain in (list, tuple, collections.abc.Sequence):
        return {list, tuple}
    if plain in (dict, collections.abc.Mapping):
        return {dict}
    return {plain} if plain in (bool, int, float, str) else None


def _fits(value, kinds: set, default) -> bool:
    """value is of one of the kinds (an int where a float is due is fine; null where the default is null too)."""
    if not isinstance(value, PLAIN):
        return True
    if value is None:
        return type(None) in kinds or default is None
    if isinstance(value, bool):
        return bool in kinds
    if isinstance(value, int):
        return bool({int, float} & kinds)
    return type(value) in kinds or (isinstance(value, (list, tuple)) and bool({list, tuple} & kinds))


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
    except (KeyboardInterrupt, MLError):
        raise
    except BaseException as error:
        if is_users_error(error, Path.cwd()):  # the user's forward raised: their line, not a shape
            raise explain(f'{key} ({type(module).__name__})', error, Path.cwd()) from error
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
