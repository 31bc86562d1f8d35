"""Turns a name from the language into the object it means.

A name is tried, in order, as: a built-in short name (`CNN`), a code value (`nn.Flatten()`), an explicit file path
(`./File.py.Model`), a dotted path into the current directory (`Run.model` = attribute `model` of `./Run.py`,
`pkg.File.Model` = `./pkg/File.py`), a path from `torch`, `nn` or `F` (`nn.Linear`), and an importable path
(`torch.nn.GRU`). A name that resolves to nothing raises a PathError naming every place tried.
"""
import builtins
import importlib
import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path

from hydra._internal.utils import _locate  # what hydra.utils.get_object uses, without its error log

from ML.errors import ConfigError, PathError, did_you_mean
from ML.language.names import EXTRAS, SCOPE_MODULES, SHORT_NAMES


def resolve(name: str, key: str, cwd: Path):
    """The object `key=name` means."""
    if name in SHORT_NAMES:
        return _short_name(name, key)
    if '(' in name:
        return evaluate(name, key, cwd)

    tried = []
    if '.py' in name:
        file, _, attributes = name.partition('.py')
        path = (cwd / f'{file}.py').resolve()
        if not path.is_file():
            raise PathError(f'{key}={name}: no file {path}')
        return _attribute(import_file(path, path.stem), attributes.lstrip('.'), key, name, [f'{path}'])

    parts = name.split('.')
    # the longest file prefix first: pkg.File.Model -> ./pkg/File.py; ML.* is always the package, never ./ML.py
    for i in range(len(parts) - 1, 0 if parts[0] != 'ML' else len(parts), -1):
        path = cwd.joinpath(*parts[:i]).with_suffix('.py')
        if path.is_file():
            module = import_file(path, '.'.join(parts[:i]))
            return _attribute(module, '.'.join(parts[i:]), key, name, tried)
    if parts[0] != 'ML':
        tried.append(f'./{parts[0]}.py (no such file)')

    if parts[0] in SCOPE_MODULES:
        module = importlib.import_module(SCOPE_MODULES[parts[0]])
        return _attribute(module, '.'.join(parts[1:]), key, name, tried)

    if importlib.util.find_spec(parts[0]) is None:
        tried.append(f'importable modules (no module {parts[0]!r})')
    else:
        try:
            return _locate(name)
        except ImportError as error:
            tried.append(f'importable path ({_last_line(error)})')
    tried.append(f'short names{did_you_mean(name, SHORT_NAMES)}')
    raise PathError(f"{key}={name}: not found; tried {'; '.join(tried)}")


def _short_name(name: str, key: str):
    """A built-in short name; one whose optional install is missing says which to install."""
    try:
        return _locate(SHORT_NAMES[name])
    except ImportError as error:
        missing = getattr(error.__cause__ or error, 'name', None) or _last_line(error)
        extra = EXTRAS.get(str(missing).split('.')[0])
        fix = f"pip install 'ML[{extra}]'" if extra else 'install what it needs'
        raise PathError(f'{key}={name}: cannot import {missing} ({fix})') from error


def _attribute(module, attributes: str, key: str, name: str, tried: list):
    """module.a.b, or a PathError listing the names the module does have."""
    found = module
    for attribute in attributes.split('.') if attributes else []:
        if not hasattr(found, attribute):
            where = _where(found)
            public = [n for n in dir(found) if not n.startswith('_')]
            tried.append(f'{where} has no {attribute!r}{did_you_mean(attribute, public)}')
            raise PathError(f"{key}={name}: not found; tried {'; '.join(tried)}")
        found = getattr(found, attribute)
    return found


def import_file(path: Path, module_name: str):
    """Imports a user's file under its own dotted name, unless that name is taken by another module (a user's
    `ML.py` or `Run.py` must never replace the package's own modules), in which case it is named by its path."""
    path = path.resolve()
    for name in (module_name, f'{module_name}@{path}'):
        module = sys.modules.get(name)
        if module is None:
            break
        if Path(getattr(module, '__file__', '') or '').resolve() == path:
            return module
    if str(path.parent) not in sys.path:
        sys.path.append(str(path.parent))  # appended, never first, so the user's files can import their neighbours
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


class _Scope(Mapping):
    """What a code value may name: torch, nn, F, the short names, and the current directory's modules."""

    def __init__(self, cwd: Path):
        self.cwd = cwd

    def __getitem__(self, name):
        if name in SCOPE_MODULES:
            return importlib.import_module(SCOPE_MODULES[name])
        if name in SHORT_NAMES:
            return _locate(SHORT_NAMES[name])
        path = self.cwd / f'{name}.py'
        if path.is_file():
            return import_file(path, name)
        if (self.cwd / name / '__init__.py').is_file():
            return import_file(self.cwd / name / '__init__.py', name)
        raise KeyError(name)

    def __iter__(self):
        return iter([*SCOPE_MODULES, *SHORT_NAMES])

    def __len__(self):
        return len(SCOPE_MODULES) + len(SHORT_NAMES)


def evaluate(code: str, key: str, cwd: Path):
    """A code value such as `nn.Flatten()`: the one place the language evaluates Python, in a fixed scope."""
    try:
        compiled = compile(code, f'<{key}>', 'eval')
    except SyntaxError as error:
        raise ConfigError(f'{key}={code}: code value does not parse ({error.msg}, column {error.offset})') from error
    try:
        return eval(compiled, {'__builtins__': builtins}, _Scope(cwd))
    except NameError as error:
        raise ConfigError(f'{key}={code}: {error}; a code value sees torch, nn, F, the short names and '
                          f'the modules of {cwd}') from error


def _where(found) -> str:
    """A user's file as ./Run.py, anything else by its name (torch.nn)."""
    file = Path(getattr(found, '__file__', None) or '/')
    if file.is_relative_to(Path.cwd()):
        return f'./{file.relative_to(Path.cwd())}'
    return getattr(found, '__name__', repr(found))


def _last_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[-1] if lines else type(error).__name__
