"""Each key's type and range, as Hyperparams/args.yaml states it at the head of the key's comment, the one function
that checks a value against it, and which keys a run leaves unused.

    batch_size: 256        # (int >= 1) samples per learning step
    seed: 1                # (0 <= int < 2**32) seeds torch, numpy, ...
    train_steps: 1000      # (int >= 1 | null) ...

A rule is alternatives joined by `|`; each is a kind, bounded on either side or both by <, <=, >, >= and a number.
Kinds: int, float, bool, str (not empty), null, folder (one folder name), device, target (what an uppercase key
builds: a name or a code value), targets (one or a list of them, built as an nn.Sequential), args (a twin's arguments
by name) and list (a list of words).
Numbers are finite (no nan or inf).
"""
import functools
import math
import re
from typing import NamedTuple

from omegaconf import OmegaConf

from ML.errors import ConfigError
from ML.language import recipes

LIVE = 'live:'  # a placeholder for an object passed from code, e.g. Model='live:Model'

_KEY_LINE = re.compile(r'^(?P<indent> *)(?P<key>\w+):[^#]*#\s*\((?P<rule>[^)]*)\)')
_NUMBER = r'-?\d+(?:\.\d*)?(?:e-?\d+)?(?:\*\*\d+)?'
_ALTERNATIVE = re.compile(rf'^(?:(?P<low>{_NUMBER})\s*(?P<low_op><=?)\s*)?(?P<kind>[a-z]+)'
                          rf'(?:\s*(?P<high_op><=?|>=?)\s*(?P<bound>{_NUMBER}))?$')
_FOLDER = re.compile(r'^(?!\.\.?$)[\w.,+=@-]+$')  # one folder name, never '.' or '..'
KINDS = {
    'int': 'an integer', 'float': 'a number', 'bool': 'true or false', 'str': 'a string (not empty)', 'null': 'null',
    'folder': 'a folder name (letters, digits and _ - . , + = @; not . or ..)',
    'device': 'a device (auto, cpu, cuda, cuda:1, ...)',
    'target': 'a name to build (CNN, Run.model, torch.nn.GRU, nn.Flatten())',
    'targets': 'a name to build (CNN, Run.model, torch.nn.GRU, nn.Flatten()) or a list of them',
    'args': 'arguments by name (<key>.<argument>=value)',
    'list': 'a list of words ([a,b])',
}


class Alternative(NamedTuple):
    """One kind of value a key takes, with its bounds: (1, False, inf, False) is >= 1; open bounds exclude."""
    kind: str
    low: float = -math.inf
    low_open: bool = False
    high: float = math.inf
    high_open: bool = False

    def describe(self) -> str:
        bounds = ([f'{">" if self.low_open else ">="} {_plain(self.low)}'] if self.low > -math.inf else []) + \
                 ([f'{"<" if self.high_open else "<="} {_plain(self.high)}'] if self.high < math.inf else [])
        return ' '.join([KINDS[self.kind], ' and '.join(bounds)]).strip()

    def take(self, value):
        """value as the run takes it, or _REFUSED: an integral float where an int is due becomes that int, and a
        number where a string is due becomes that string (as omegaconf's typed nodes convert them)."""
        kind, number = self.kind, isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind == 'null':
            return value if value is None else _REFUSED
        if kind == 'bool':
            return value if isinstance(value, bool) else _REFUSED
        if kind in ('int', 'float'):
            if not number or (isinstance(value, float) and not math.isfinite(value)) or not self._within(value):
                return _REFUSED
            if kind == 'float':
                return value
            return int(value) if isinstance(value, int) or value.is_integer() else _REFUSED
        if kind in ('str', 'folder', 'device'):
            text = str(value) if number else value
            if not isinstance(text, str) or not text.strip() or (kind == 'folder' and not _FOLDER.match(text)):
                return _REFUSED
            return text
        if kind in ('target', 'targets'):
            names = value if isinstance(value, list) and kind == 'targets' else [value]
            return value if all(isinstance(name, str) and name.strip() for name in names) else _REFUSED
        if kind == 'args':
            return value if isinstance(value, dict) else _REFUSED
        if kind == 'list':  # words as the command line writes them: [v2,2024] is two words
            words = value if isinstance(value, list) else [None]
            return [str(word) for word in words] if all(isinstance(word, (str, int, float)) and not isinstance(
                word, bool) and str(word).strip() for word in words) else _REFUSED
        raise ValueError(f'args.yaml: unknown kind {kind!r} (kinds: {", ".join(KINDS)})')

    def _within(self, value) -> bool:
        return (value > self.low if self.low_open else value >= self.low) and \
               (value < self.high if self.high_open else value <= self.high)


_REFUSED = object()


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def _number(text: str) -> float:
    base, _, power = text.partition('**')
    return float(base) ** int(power) if power else float(base)


def parse_rule(text: str) -> tuple:
    """'0 <= int < 2**32 | null' -> (Alternative('int', 0, False, 2**32, True), Alternative('null'))."""
    alternatives = []
    for part in text.split('|'):
        match = _ALTERNATIVE.match(part.strip())
        if match is None or match['kind'] not in KINDS:
            raise ValueError(f'args.yaml: cannot read the rule ({text}); e.g. (int >= 1 | null)')
        low, low_open, high, high_open = -math.inf, False, math.inf, False
        if match['low'] is not None:
            low, low_open = _number(match['low']), match['low_op'] == '<'
        if match['high_op'] in ('>', '>='):
            low, low_open = _number(match['bound']), match['high_op'] == '>'
        elif match['high_op'] is not None:
            high, high_open = _number(match['bound']), match['high_op'] == '<'
        alternatives.append(Alternative(match['kind'], low, low_open, high, high_open))
    return tuple(alternatives)


@functools.lru_cache(maxsize=1)
def rules() -> dict:
    """{dotted key: its alternatives}, for every key whose comment in args.yaml starts with a rule in parentheses."""
    found, parents = {}, []
    for line in (recipes.hyperparams_dir() / 'args.yaml').read_text().splitlines():
        match = re.match(r'^(?P<indent> *)(?P<key>\w+):', line)
        if match is None:
            continue
        depth = len(match['indent']) // 2
        parents = parents[:depth] + [match['key']]
        rule = _KEY_LINE.match(line)
        if rule is not None:
            found['.'.join(parents)] = parse_rule(rule['rule'])
    return found


@functools.lru_cache(maxsize=1)
def _defaults() -> dict:
    config = OmegaConf.to_container(OmegaConf.load(recipes.hyperparams_dir() / 'args.yaml'))
    config.pop('defaults', None)
    return config


def default(key: str):
    """The default of a dotted key in args.yaml (replay.capacity), or None."""
    value = _defaults()
    for part in key.split('.'):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def show(value) -> str:
    """A value as a user would write it on the command line; a string that would read as something else quoted."""
    if isinstance(value, str):
        plain = value.strip() == value and value and value.lower() not in ('null', 'true', 'false') and \
            not re.match(rf'^{_NUMBER}$|^[-+]?(inf|nan)$', value.lower())
        return value if plain else repr(value)
    if value is None or isinstance(value, bool):
        return str(value).lower() if value is not None else 'null'
    if isinstance(value, (list, tuple)):
        return f"[{','.join(map(show, value))}]"
    return str(value)


def check(key: str, value):
    """value checked against the rule of `key` in args.yaml and taken as the run takes it (see Alternative.take);
    a ConfigError naming the key, the value, what the key takes and its default, if no alternative takes it."""
    alternatives = rules().get(key)
    if alternatives is None:
        return value
    for alternative in alternatives:
        taken = alternative.take(value)
        if taken is not _REFUSED:
            return taken
    expected = ' or '.join(alternative.describe() for alternative in alternatives)
    if isinstance(value, str) and value.startswith(LIVE):
        raise ConfigError(f'{key}: was given an object from code; expected {expected}')
    if isinstance(default(key), dict):
        raise ConfigError(f'{key}={show(value)}: expected {expected}')
    raise ConfigError(f'{key}={show(value)}: expected {expected} (the default is {show(default(key))})')


def unused(c: dict) -> dict:
    """{dotted key: why this run does not use it} for a composed config c: what a dataset has no use for (the
    environment's keys), what an environment has no use for (test_split, cv.*), and what one setting makes moot (stream
    has no replay to size, a saved replay keeps its capacity, a uniform replay has no priorities, save=false writes
    no checkpoints)."""
    why = {}
    online_keys = ['num_envs', 'learn_after', 'learn_per_steps', 'learn_steps', 'offline', 'stream', 'video',
                   'eval_episodes', *(f'replay.{key}' for key in _defaults()['replay'])]
    replay = c['replay']
    if c['Env'] is None:
        why.update(dict.fromkeys(online_keys, f'only a run in an Env uses it; this one learns from '
                                              f'Dataset={_label(c["Dataset"])}'))
    else:
        why['test_split'] = f'only a Dataset without a test split of its own uses it; this run acts in ' \
                            f'Env={_label(c["Env"])}'
        why['num_workers'] = f'only a Dataset read through a DataLoader uses it; this run acts in ' \
                             f'Env={_label(c["Env"])}'
        if c['stream']:  # (make_replay refuses the options that would need a replay: save, load, prioritized)
            why.update(dict.fromkeys(['replay.capacity', 'replay.nstep', 'replay.clip_reward'],
                                     'stream=true learns from each step as it comes, without a replay'))
        if c['offline'] or replay['load']:
            why.setdefault('replay.capacity', 'a saved replay keeps the capacity it was saved with')
        if not replay['prioritized']:
            why.update(dict.fromkeys(['replay.alpha', 'replay.beta', 'replay.beta_steps'],
                                     'only a prioritized replay uses it; set replay.prioritized=true'))
    if c['Env'] is not None:
        why.update(dict.fromkeys(['cv.folds', 'cv.stratified', 'cv.fold'], f'only a Dataset is cross-validated; '
                                 f'this run acts in Env={_label(c["Env"])}'))
    elif c['cv']['folds'] is None:
        why.update(dict.fromkeys(['cv.stratified', 'cv.fold'], 'only cross-validation uses it; set cv.folds too'))
    if not c['save'] and not (replay['save'] and c['Env'] is not None):
        why['save_per_steps'] = 'save=false writes no checkpoints'
    return why


def _label(value) -> str:
    if isinstance(value, list):
        return f"[{','.join(_label(v) for v in value)}]"
    return show(value) if not isinstance(value, str) or not value.startswith(LIVE) else 'an object from code'
