"""Turns a name from the language into the object it means.

A name is tried, in order, as: a built-in short name (`CNN`), a code value (`nn.Flatten()`), an explicit file path
(`./File.py.Model`, `dir/File.py`: only where `.py` ends a path component, so `models.pyramid.Net` is a dotted path),
a dotted path into the current directory (`Run.model` = attribute `model` of `./Run.py`, `pkg.File.Model` =
`./pkg/File.py`), a path from `torch`, `nn` or `F` (`nn.Linear`), and an importable path (`torch.nn.GRU`). A name
that resolves to nothing raises a PathError naming every place tried.

The user's own code runs here (their files are imported, code values call them): what it raises, or a sys.exit in
it, becomes a UserCodeError naming the key being built and the user's file and line (see explain).
"""
import builtins
import importlib
import importlib.util
import re
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path

from hydra._internal.utils import _locate  # what hydra.utils.get_object uses, without its error log

from ML.errors import ConfigError, MLError, PathError, UserCodeError, did_you_mean
from ML.language.names import EXTRAS, SCOPE_MODULES, SHORT_NAMES

EXPLICIT_FILE = re.compile(r'^(?P<file>(?:.*/)?[^/]*\.py)(?:\.(?P<attributes>[^/]*))?$')  # ./File.py.Model
PACKAGE = Path(__file__).resolve().parents[1]  # ML/, whose frames are never the user's


def resolve(name: str, key: str, cwd: Path):
    """The object `key=name` means."""
    if name in SHORT_NAMES:
        return _short_name(name, key)
    if '(' in name:
        return evaluate(name, key, cwd)

    tried, explicit = [], EXPLICIT_FILE.match(name)
    if explicit:
        path = (cwd / explicit['file']).resolve()
        if not path.is_file():
            raise PathError(f'{key}={name}: no file {path}')
        module = import_file(path, path.stem, f'{key}={name}')
        return _attribute(module, explicit['attributes'] or '', key, name, [f'{path}'])

    parts = name.split('.')
    if not all(part.isidentifier() for part in parts):
        raise PathError(f'{key}={name}: not a name to build; give a short name (CNN), a dotted path (Run.model, '
                        f'torch.nn.GRU), a file (./Run.py.model) or code (nn.Flatten())')
    # the longest file prefix first: pkg.File.Model -> ./pkg/File.py; ML.* is always the package, never ./ML.py
    for i in range(len(parts) - 1, 0 if parts[0] != 'ML' else len(parts), -1):
        path = cwd.joinpath(*parts[:i]).with_suffix('.py')
        if path.is_file():
            module = import_file(path, '.'.join(parts[:i]), f'{key}={name}')
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
    tried.append(f'short names{did_you_mean(name, SHORT_NAMES) or " (none like it)"}')
    raise PathError(f"{key}={name}: not found; tried {'; '.join(tried)}")


def env_creator(env_id: str):
    """What gymnasium.make calls for a registered id (CartPole-v1 -> CartPoleEnv), or None for an id not registered
    (yet: a namespace's package registers its ids when imported)."""
    import gymnasium
    from gymnasium.envs.registration import load_env_creator
    spec = gymnasium.registry.get(env_id)
    if spec is None:
        return None
    return spec.entry_point if callable(spec.entry_point) else load_env_creator(spec.entry_point)


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


def import_file(path: Path, module_name: str, label: str):
    """Imports a user's file under its own dotted name, unless that name is taken by another module (a user's
    `ML.py` or `Run.py` must never replace the package's own modules), in which case it is named by its path.
    label (`Model=Run.model`) names what was being built, for a UserCodeError if the file raises or exits."""
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
    except BaseException as error:
        del sys.modules[name]
        if isinstance(error, (KeyboardInterrupt, MLError)):
            raise
        here = Path.cwd().resolve()
        raise explain(label, error, here if path.is_relative_to(here) else path.parent) from error
    return module


class _Scope(Mapping):
    """What a code value may name: torch, nn, F, the short names, and the current directory's modules."""

    def __init__(self, cwd: Path, label: str):
        self.cwd, self.label = cwd, label

    def __getitem__(self, name):
        if name in SCOPE_MODULES:
            return importlib.import_module(SCOPE_MODULES[name])
        if name in SHORT_NAMES:
            return _locate(SHORT_NAMES[name])
        path = self.cwd / f'{name}.py'
        if path.is_file():
            return import_file(path, name, self.label)
        if (self.cwd / name / '__init__.py').is_file():
            return import_file(self.cwd / name / '__init__.py', name, self.label)
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
        return eval(compiled, {'__builtins__': builtins}, _Scope(cwd, f'{key}={code}'))
    except (KeyboardInterrupt, MLError):
        raise
    except BaseException as error:
        if isinstance(error, NameError) and not is_users_error(error, cwd):
            raise ConfigError(f'{key}={code}: {error}; a code value sees torch, nn, F, the short names and '
                              f'the modules of {cwd}') from error
        raise explain(f'{key}={code}', error, cwd, call=code) from error


def explain(label: str, error: BaseException, cwd: Path, call: str = '') -> MLError:
    """The one line for `error`, raised (or a sys.exit) while `label` (`Model=Run.Model`) was built: a UserCodeError
    at the innermost line of the user's own files when their code raised, with those frames alone to show; else a
    ConfigError naming the call that raised (`CNN(depth=-1)`)."""
    frames = _users_frames(error, cwd)
    if isinstance(error, SyntaxError) and error.filename and _is_users(error.filename, cwd):
        shown = ''.join(traceback.format_exception_only(error))
        return UserCodeError(f'{label}: {_shown(error.filename, cwd)}, line {error.lineno}: '
                             f'{type(error).__name__}: {error.msg}', shown)
    if frames:
        shown = 'Traceback (most recent call last):\n' + ''.join(traceback.format_list(frames))
        return UserCodeError(f'{label}: {located(error, cwd)}', shown)
    return ConfigError(f'{label}: {call} raised {_what(error)}' if call else f'{label}: {_what(error)}')


def located(error: BaseException, cwd: Path) -> str:
    """Where the user's own code raised `error` and what it was: './Run.py, line 12: RuntimeError: ...', or only
    what it was when no frame of theirs is in its traceback."""
    frames = _users_frames(error, cwd)
    return f'{_shown(frames[-1].filename, cwd)}, line {frames[-1].lineno}: {_what(error)}' if frames else _what(error)


def _what(error: BaseException) -> str:
    if isinstance(error, SystemExit):
        return f'sys.exit({error.code!r}) ended it'
    return ': '.join([type(error).__name__] + ([_first_line(error)] if _first_line(error) else []))


def is_users_error(error: BaseException, cwd: Path) -> bool:
    """Whether the user's own code raised error (or exited): a frame of its traceback is in a file of theirs."""
    return bool(_users_frames(error, cwd)) or (isinstance(error, SyntaxError) and bool(error.filename)
                                                and _is_users(error.filename, cwd))


def _users_frames(error: BaseException, cwd: Path) -> list:
    return [frame for frame in traceback.extract_tb(error.__traceback__) if _is_users(frame.filename, cwd)]


def _is_users(filename: str, cwd: Path) -> bool:
    """A file of the user's: under the current directory, and neither ML's own nor an installed package's."""
    path = Path(filename).resolve()
    return path.is_file() and path.is_relative_to(cwd.resolve()) and not path.is_relative_to(PACKAGE) and \
        'site-packages' not in path.parts


def _shown(filename: str, cwd: Path) -> str:
    path = Path(filename).resolve()
    return f'./{path.relative_to(cwd.resolve())}' if path.is_relative_to(cwd.resolve()) else str(path)


def _first_line(error: BaseException) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[0].strip() if lines else ''


def _where(found) -> str:
    """A user's file as ./Run.py, anything else by its name (torch.nn)."""
    file = Path(getattr(found, '__file__', None) or '/')
    if file.is_relative_to(Path.cwd()):
        return f'./{file.relative_to(Path.cwd())}'
    return getattr(found, '__name__', repr(found))


def _last_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[-1] if lines else type(error).__name__
