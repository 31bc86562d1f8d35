"""From the three sources to one config: command line > code > recipe > defaults, composed by Hydra.

Before Hydra's parser sees an override, code values are quoted (`Model=nn.Flatten()` -> `Model='nn.Flatten()'`),
`+` becomes `++` (so `+eyes.depth=5` and `eyes.depth=5` both work), and code's live objects become placeholders.
After composing, every key is checked against Hyperparams/args.yaml: unknown keys and wrong types are errors.
"""
import math
import re
from pathlib import Path

from omegaconf import OmegaConf

from ML.errors import ConfigError, MLError, did_you_mean
from ML.language import recipes

HYDRA_FUNCTIONS = ('choice', 'range', 'interval', 'glob', 'tag', 'sort', 'shuffle', 'int', 'float', 'str', 'bool')
OVERRIDE = re.compile(r'^(?P<prefix>~|\+\+|\+)?(?P<key>[^=~+][^=]*?)(?:=(?P<value>.*))?$', re.DOTALL)
FREE_TYPED = {'load'}  # keys whose values may take several types: load=true, load='MyExp MNIST', load=path.pt
LIVE = 'live:'  # a placeholder for an object passed from code, e.g. Model='live:Model'
SUITE_RECIPES = {'Atari': 'atari/base', 'DMC': 'dmc/drqv2'}  # the recipe of an Env given with no task; others: RL


def learning_steps(*, _root_) -> int:
    """`${learning_steps:}` in a config: the learning steps of the run, for a schedule's length (LinearLR's
    total_iters, CosineAnnealingLR's T_max). Counted from train_steps, else from train_frames at one frame per env
    step; a suite that repeats actions (Atari, DMC) takes fewer steps per frame, and its schedule ends short."""
    c = _root_
    online = c.Env is not None and not c.offline
    if c.train_steps is None and c.train_frames is None:
        raise ConfigError('${learning_steps:} counts the budget, and the run has none: '
                          'set train_steps or train_frames')
    frames_per_step = c.num_envs if online else c.batch_size
    steps = c.train_steps if c.train_steps is not None else math.ceil(c.train_frames / frames_per_step)
    if not online:
        return steps
    if c.stream:  # a learning step on every loop step, from the first
        return steps * c.learn_steps
    waiting = math.ceil(c.learn_after / c.num_envs)  # loop steps before the replay holds learn_after transitions
    return max(steps - waiting, 0) // c.learn_per_steps * c.learn_steps


OmegaConf.register_new_resolver('learning_steps', learning_steps, replace=True)


def defaults() -> dict:
    """Hyperparams/args.yaml as plain values (interpolations unresolved), without its defaults list."""
    config = OmegaConf.to_container(OmegaConf.load(recipes.hyperparams_dir() / 'args.yaml'))
    config.pop('defaults', None)
    return config


def twins(config: dict) -> set:
    """The lowercase keys that hold an uppercase key's arguments (eyes for Eyes)."""
    return {key.lower() for key in config if key[:1].isupper() and key.lower() in config}


# ---- overrides in the command-line grammar -------------------------------------------------------------------

def _split_top(text: str) -> list:
    """Splits on commas outside brackets, parentheses and quotes."""
    parts, depth, quote, start = [], 0, None, 0
    for i, char in enumerate(text):
        if quote:
            quote = None if char == quote and text[i - 1] != '\\' else quote
        elif char in '\'"':
            quote = char
        elif char in '([{':
            depth += 1
        elif char in ')]}':
            depth -= 1
        elif char == ',' and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return parts + [text[start:]]


def _quote(element: str) -> str:
    """A code value quoted for Hydra; Hydra's own functions keep their form, with their arguments quoted."""
    stripped = element.strip()
    if '(' not in stripped or stripped[:1] in '\'"':
        return element
    function = re.match(r'^(\w+)\((.*)\)$', stripped, re.DOTALL)
    if function and function.group(1) in HYDRA_FUNCTIONS:
        return f"{function.group(1)}({','.join(_quote(a) for a in _split_top(function.group(2)))})"
    if stripped.startswith('[') and stripped.endswith(']'):
        return f"[{','.join(_quote(e) for e in _split_top(stripped[1:-1]))}]"
    return "'" + stripped.replace('\\', '\\\\').replace("'", "\\'") + "'"


def normalize(override: str, twin_keys: set) -> str:
    """One override made ready for Hydra's parser (see the module's docstring)."""
    match = OVERRIDE.match(override)
    if match is None or match.group('value') is None or match.group('prefix') == '~' \
            or match.group('key').startswith('hydra'):
        return override
    key, value = match.group('key'), match.group('value')
    value = ','.join(_quote(part) for part in _split_top(value)) if value.strip() else value
    additive = match.group('prefix') or ('.' in key and key.split('.')[0] in twin_keys)
    return f"{'++' if additive else ''}{key}={value}"


def _format(value) -> str:
    """A Python value from code in the override grammar."""
    if value is None:
        return 'null'
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return f"[{','.join(_format(v) for v in value)}]"
    if isinstance(value, str):
        return _quote(value) if '(' in value else value
    return repr(value)


def from_code(hyperparams: dict) -> tuple:
    """Keyword arguments of ML.launch as overrides, and the live objects they hold keyed by placeholder."""
    overrides, live = [], {}

    def primitive(key, value):
        if isinstance(value, (str, int, float, bool, type(None))):
            return value
        if isinstance(value, (list, tuple)):
            return [primitive(f'{key}.{i}', v) for i, v in enumerate(value)]
        live[f'{LIVE}{key}'] = value
        return f'{LIVE}{key}'

    def add(key, value):
        if isinstance(value, dict):
            for name, inner in value.items():
                add(f'{key}.{name}', inner)
        else:
            overrides.append(f'{key}={_format(primitive(key, value))}')

    for key, value in hyperparams.items():
        add(key, value)
    return overrides, live


def _key(override: str) -> str:
    match = OVERRIDE.match(override)
    return match.group('key') if match else override


def merge(code: list, command_line: list) -> list:
    """The command line wins: a key it sets drops the code's override of that key."""
    given = {_key(override) for override in command_line}
    return [override for override in code if _key(override) not in given] + list(command_line)


# ---- composing ------------------------------------------------------------------------------------------------

def check_keys(overrides: list, known: dict):
    """An override of a key args.yaml does not have is an error naming the closest keys."""
    twin_keys = twins(known)
    for override in overrides:
        key = _key(override)
        top = key.split('.')[0].split('@')[0]
        if top in ('hydra', 'task') or top.startswith('hydra/') or top in twin_keys:
            continue
        if top not in known:
            raise ConfigError(f'{key}: unknown key{did_you_mean(top, known)}; see ML --help for every key')
        if '.' in key and isinstance(known[top], dict) and key.split('.')[1] not in known[top]:
            raise ConfigError(f'{key}: unknown key{did_you_mean(key.split(".")[1], known[top])}; '
                              f'{top} has {", ".join(known[top])}')


def prepare(overrides: list, cwd: Path) -> list:
    """The overrides made ready for Hydra: checked, normalized, and `task=` pointed at its recipe."""
    known = defaults()
    check_keys(overrides, known)
    recipes.clear()
    twin_keys = twins(known)
    prepared = [normalize(override, twin_keys) for override in overrides]
    tasks = [i for i, override in enumerate(prepared) if _key(override) == 'task']
    for i in tasks:
        value = prepared[i].split('=', 1)[1]
        options = [recipes.register(option.strip(), cwd) for option in _split_top(value)] if value else []
        prepared[i] = f"task={','.join(options)}"
    if not tasks:  # the default task, which a user's ./classify.yaml may replace; an environment means RL
        envs = [override.split('=', 1)[1] for override in prepared if _key(override) == 'Env']
        env = envs[-1] if envs and envs[-1] not in ('', 'null') else None
        task = 'classify' if env is None else SUITE_RECIPES.get(env, 'RL')
        recipes.register(task, cwd)
        prepared = ([] if env is None else [f'task={task}']) + prepared
    return prepared


def hydra_app(cwd: Path):
    """A Hydra instance whose search path puts the user's recipes (in the ConfigStore) before ML's own."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.core.global_hydra import GlobalHydra

    search_path = create_config_search_path(f'file://{recipes.hyperparams_dir()}')
    # the user's recipes, searched before ML's own so that ./classify.yaml wins
    search_path.prepend(provider='ML-user', path=f'file://{recipes.user_recipes_dir()}',
                        anchor=SearchPathQuery(provider='main'))
    GlobalHydra.instance().clear()
    return Hydra.create_main_hydra2(task_name='ML', config_search_path=search_path)


def compose(overrides: list, cwd: Path) -> dict:
    """The composed config of one run, as plain values, checked against args.yaml."""
    from hydra.errors import HydraException
    from hydra.types import RunMode

    prepared = prepare(overrides, cwd)
    try:
        config = hydra_app(cwd).compose_config('args', prepared, run_mode=RunMode.RUN)
    except HydraException as error:
        raise ConfigError(_hydra_message(error)) from error
    return validate(config)


def _hydra_message(error: Exception) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return ' '.join(lines[:2]) if lines else type(error).__name__


def validate(config) -> dict:
    """Plain values, interpolations resolved; unknown keys (a recipe's too) and wrong types are errors."""
    from omegaconf.errors import OmegaConfBaseException
    config = OmegaConf.masked_copy(config, [key for key in config if key != 'hydra']) if 'hydra' in config else config
    try:
        values = OmegaConf.to_container(config, resolve=True)
    except OmegaConfBaseException as error:
        cause = error
        while cause is not None and not isinstance(cause, MLError):  # omegaconf wraps a resolver's error, twice
            cause = cause.__cause__ or cause.__context__
        if cause is not None:  # one of the project's resolvers refused: its words, and the key
            raise ConfigError(f'{error.full_key}: {cause}') from error
        raise ConfigError(_hydra_message(error)) from error
    known = defaults()
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f'{key}: unknown key (set by a recipe){did_you_mean(key, known)}')
        default = known[key]
        if isinstance(default, dict) and key not in twins(known):
            for inner, inner_value in value.items():
                if inner not in default:
                    raise ConfigError(f'{key}.{inner}: unknown key{did_you_mean(inner, default)}')
                values[key][inner] = _typed(f'{key}.{inner}', inner_value, default[inner])
        else:
            values[key] = _typed(key, value, default)
    return values


def _typed(key: str, value, default):
    """value, checked against the type of its default (an int where a float is due is fine)."""
    if default is None or value is None or key in FREE_TYPED or (isinstance(default, str) and default.startswith('${')):
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise ConfigError(f'{key}={value}: expected true or false (the default is {str(default).lower()})')
    if isinstance(default, (int, float)) and not isinstance(value, bool):
        if isinstance(default, int) and isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int) or (isinstance(value, float) and isinstance(default, float)):
            return value
        kind = 'an integer' if isinstance(default, int) else 'a number'
        raise ConfigError(f'{key}={value}: expected {kind} (the default is {default})')
    return value


def live_objects(values, live: dict, key: str = ''):
    """The config with each placeholder replaced by the object it stands for."""
    if isinstance(values, dict):
        return {k: live_objects(v, live, f'{key}.{k}' if key else k) for k, v in values.items()}
    if isinstance(values, list):
        return [live_objects(v, live, f'{key}.{i}') for i, v in enumerate(values)]
    if isinstance(values, str) and values.startswith(LIVE):
        if values not in live:
            raise MLError(f'{key}={values}: was an object passed from code; pass it again (ML.launch({key}=...))')
        return live[values]
    return values
