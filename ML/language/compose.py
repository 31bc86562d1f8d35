"""From the three sources to one config: command line > code > recipe > defaults, composed by Hydra.

Before Hydra's parser sees an override, code values are quoted (`Model=nn.Flatten()` -> `Model='nn.Flatten()'`),
`+` becomes `++` (so `+eyes.depth=5` and `eyes.depth=5` both work), and code's live objects become placeholders; a
string from code is always quoted (`ML.launch(experiment='2024')` stays the string '2024').
After composing, every key is checked against Hyperparams/args.yaml: an unknown key, a value outside its key's type
and range (schema.py), and a key the user set that the run does not use are errors. A twin's arguments that came
with a class a source of higher priority replaced are dropped with it, unless the new class takes them too.
"""
import math
import numbers
import re
from pathlib import Path

from omegaconf import OmegaConf

from ML.errors import ConfigError, MLError, RecipeError, did_you_mean
from ML.language import recipes, schema
from ML.language.schema import LIVE

HYDRA_FUNCTIONS = ('choice', 'range', 'interval', 'glob', 'tag', 'sort', 'shuffle', 'int', 'float', 'str', 'bool')
OVERRIDE = re.compile(r'^(?P<prefix>~|\+\+|\+)?(?P<key>[^=~+][^=]*?)(?:=(?P<value>.*))?$', re.DOTALL)
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


def quote(text: str) -> str:
    """text as a quoted string of Hydra's grammar, read back exactly: the one way a value reaches Hydra's parser
    quoted. Inside quotes a backslash is literal except in a run before a quote, which is escaped and so doubled."""
    return "'" + re.sub(r"(\\*)('|$)", lambda m: m.group(1) * 2 + ('\\' + m.group(2) if m.group(2) else ''),
                        text) + "'"


def _quote_code(element: str) -> str:
    """A code value of the command line quoted for Hydra; Hydra's own functions keep their form, with their
    arguments quoted."""
    stripped = element.strip()
    if '(' not in stripped or stripped[:1] in '\'"':
        return element
    function = re.match(r'^(\w+)\((.*)\)$', stripped, re.DOTALL)
    if function and function.group(1) in HYDRA_FUNCTIONS:
        return f"{function.group(1)}({','.join(_quote_code(a) for a in _split_top(function.group(2)))})"
    if stripped.startswith('[') and stripped.endswith(']'):
        return f"[{','.join(_quote_code(e) for e in _split_top(stripped[1:-1]))}]"
    return quote(stripped)


def normalize(override: str, twin_keys: set) -> str:
    """One override made ready for Hydra's parser (see the module's docstring)."""
    match = OVERRIDE.match(override)
    if match is None or match.group('value') is None or match.group('prefix') == '~' \
            or match.group('key').startswith('hydra'):
        return override
    key, value = match.group('key'), match.group('value')
    value = ','.join(_quote_code(part) for part in _split_top(value)) if value.strip() else value
    additive = match.group('prefix') or key.split('.')[0] in twin_keys
    return f"{'++' if additive else ''}{key}={value}"


def _format(value) -> str:
    """A Python value from code in the override grammar, read back as the same value."""
    if value is None:
        return 'null'
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return f"[{','.join(_format(v) for v in value)}]"
    if isinstance(value, str):
        return quote(value)
    return repr(value)


def from_code(hyperparams: dict) -> tuple:
    """Keyword arguments of ML.launch as overrides, and the live objects they hold keyed by placeholder."""
    overrides, live = [], {}

    def primitive(key, value):
        if isinstance(value, (str, bool, type(None))):
            return value
        if isinstance(value, numbers.Integral):  # numpy's scalars too
            return int(value)
        if isinstance(value, numbers.Real):
            return float(value)
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


def _options(value: str) -> list:
    """The options of an override's value as Hydra's parser reads them: `a,b` is two, `'a,b'` (quoted) one."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    try:
        parsed = OverridesParser.create().parse_overrides([f'key={value}'])[0]
    except HydraException:  # Hydra's compose says what is wrong with it, naming the whole override
        return [value]
    options = list(parsed.sweep_iterator()) if parsed.is_sweep_override() else [parsed.value()]
    return [option if isinstance(option, str) or option is None else str(option) for option in options]


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
        # a recipe's path is one option, though it holds the grammar's = or , (a sweep member's config.yaml)
        options = [value] if recipes.is_file(value, cwd) else [str(option).strip() for option in _options(value)]
        if not all(options):
            known = recipes.user_recipes(cwd) + recipes.builtin_recipes()
            raise RecipeError(f'task={prepared[i].split("=", 1)[1]}: names no recipe; recipes: {", ".join(known)}')
        prepared[i] = f"task={','.join(recipes.register(option, cwd) for option in options)}"
    if not tasks:  # the default task, which a user's ./classify.yaml may replace; an environment means RL
        envs = [_options(override.split('=', 1)[1])[0] for override in prepared if _key(override) == 'Env']
        env = envs[-1] if envs and envs[-1] not in ('', None) else None
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
    return composed(prepare(overrides, cwd), cwd)


def composed(prepared: list, cwd: Path) -> dict:
    """The config overrides already prepared (prepare()) compose to, as plain values, checked against args.yaml:
    one run's, or one member's of a sweep. Raises ConfigError for what Hydra or the check refuses."""
    from hydra.errors import HydraException
    from hydra.types import RunMode

    try:
        config = hydra_app(cwd).compose_config('args', prepared, run_mode=RunMode.RUN)
    except HydraException as error:
        raise ConfigError(_hydra_message(error)) from error
    return validate(config)


def _hydra_message(error: Exception) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return ' '.join(lines[:2]) if lines else type(error).__name__


def validate(config) -> dict:
    """Plain values, interpolations resolved and every key checked (see the module's docstring)."""
    from omegaconf.errors import OmegaConfBaseException
    given = _given_keys(config)
    config = OmegaConf.masked_copy(config, [key for key in config if key != 'hydra']) if 'hydra' in config else config
    known = defaults()
    written = OmegaConf.to_container(config, resolve=False)  # what the sources wrote, before interpolation
    _checked(written, known)  # first as written, so that a resolver never computes with a value of the wrong type
    try:
        values = OmegaConf.to_container(config, resolve=True)
    except OmegaConfBaseException as error:
        cause = error
        while cause is not None and not isinstance(cause, MLError):  # omegaconf wraps a resolver's error, twice
            cause = cause.__cause__ or cause.__context__
        if cause is not None:  # one of the project's resolvers refused: its words, and the key
            raise ConfigError(f'{error.full_key}: {cause}') from error
        raise ConfigError(_hydra_message(error)) from error
    values = _drop_replaced_arguments(_checked(values, known), written, known, given)
    for key, why in schema.unused(values).items():
        value = _get(values, key)
        if _is_given(key, given['user'] | given['users_recipe']) and value != schema.default(key):
            raise ConfigError(f'{key}={schema.show(value)}: this run does not use it: {why}')
    return values


def _checked(values: dict, known: dict) -> dict:
    """values with every key known to args.yaml and each value taken by its key's rule (schema.check); a value
    still to be interpolated (`${lr}`) is left for after resolving."""
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f'{key}: unknown key (set by a recipe){did_you_mean(key, known)}')
        if isinstance(known[key], dict) and key not in twins(known):  # a group of keys: replay
            if not isinstance(value, dict):
                raise ConfigError(f'{key}={schema.show(value)}: a group of keys; set them one at a time: '
                                  f'{key}.{next(iter(known[key]))}=...')
            for inner, inner_value in value.items():
                if inner not in known[key]:
                    raise ConfigError(f'{key}.{inner}: unknown key{did_you_mean(inner, known[key])}')
                if not _interpolated(inner_value):
                    values[key][inner] = schema.check(f'{key}.{inner}', inner_value)
        elif not _interpolated(value):
            values[key] = schema.check(key, value)
    return values


def _interpolated(value) -> bool:
    return isinstance(value, str) and '${' in value


# ---- priorities: which source gave a key ---------------------------------------------------------------------

DEFAULTS, RECIPE, USERS_RECIPE, USER = range(4)  # the sources, lowest priority first; USER: code and command line


def _given_keys(config) -> dict:
    """The dotted keys the user gave: 'user' on the command line or in code (Hydra's record of the overrides, or
    that of the sweep's member), 'users_recipe' in the user's own recipes."""
    from hydra.core.hydra_config import HydraConfig
    if 'hydra' in config:
        overrides = list(config.hydra.overrides.task)
    else:
        overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    user = {_key(override) for override in overrides if not override.startswith('~')}
    return {'user': {key for key in user if key != 'task' and not key.startswith('hydra')},
            'users_recipe': recipes.user_keys()}


def _is_given(key: str, given: set) -> bool:
    """key, or a group or twin holding it (replay for replay.capacity), is among the given keys."""
    parts = key.split('.')
    return any('.'.join(parts[:i]) in given for i in range(1, len(parts) + 1))


def _get(values: dict, key: str):
    for part in key.split('.'):
        values = values.get(part) if isinstance(values, dict) else None
    return values


def _source(key: str, written, default, given: dict) -> int:
    """The source of highest priority that gave `key` its value; one that sets it as args.yaml has it counts as
    args.yaml."""
    if _is_given(key, given['user']):
        return USER
    if _is_given(key, given['users_recipe']):
        return USERS_RECIPE
    return RECIPE if written != default else DEFAULTS


def _drop_replaced_arguments(values: dict, written: dict, known: dict, given: dict) -> dict:
    """Each twin without the arguments of a class that a source of higher priority replaced, unless the new class
    takes them too (`task=RL Optim=torch.optim.RMSprop` drops the RL recipe's optim.fused, which only Adam and its
    kin take). An argument given at the class's own priority or above stays, to be checked against its signature."""
    missing = object()
    for twin in sorted(twins(known)):
        cls = next(name for name in known if name.lower() == twin and name != twin)
        arguments = values.get(twin) or {}
        level = _source(cls, written.get(cls), known.get(cls), given)
        replaced = [name for name in arguments if _source(
            f'{twin}.{name}', (written.get(twin) or {}).get(name, missing), (known[twin] or {}).get(name, missing),
            given) < level]
        dropped = [name for name in replaced if not _still_taken(cls, values[cls], name)]
        if dropped:
            values[twin] = {name: value for name, value in arguments.items() if name not in dropped}
    return values


def _still_taken(key: str, value, name: str) -> bool:
    """Whether the thing `key=value` builds takes the argument `name` (or may: a signature that cannot be read, an
    object from code, which is only known when built, keep it; the build checks it then)."""
    from ML.language import build, paths
    if value is None:
        return False
    if isinstance(value, list):
        if name.isdigit():
            return int(name) < len(value)
        return any(_still_taken(key, element, name) for element in value)
    if not isinstance(value, str) or value.startswith(LIVE):
        return True
    target = paths.env_creator(value) if key == 'Env' else None
    if target is None and key == 'Env' and not all(part.isidentifier() for part in value.split('.')):
        return True  # an id its namespace's package registers when the run builds it (ALE/Pong-v5)
    target = target or paths.resolve(value, key, Path.cwd())
    parameters = build._parameters(target) if build._is_built(target) else None
    return parameters is None or name in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


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
