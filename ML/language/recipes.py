"""Task recipes: `task=name` finds ./name.yaml in the current directory first, then Hyperparams/task/name.yaml.

Hydra finds the built-in recipes itself. A user's recipe is read here, its `imports: [classify, self]` written as
Hydra's `defaults: [/task/classify, _self_]`, and copied into a folder Hydra searches before the built-in recipes
(USER_RECIPES), so a user's `./classify.yaml` wins over the built-in one. Hydra does all the merging.
"""
import atexit
import re
import shutil
import tempfile
from pathlib import Path

import yaml

from ML.errors import RecipeError, did_you_mean


def hyperparams_dir() -> Path:
    """Hyperparams/: inside the installed package, or beside it in a source checkout."""
    package = Path(__file__).resolve().parents[1]
    installed = package / 'Hyperparams'
    return installed if installed.is_dir() else package.parent / 'Hyperparams'


def builtin_recipes() -> list:
    task_dir = hyperparams_dir() / 'task'
    return sorted(str(path.relative_to(task_dir).with_suffix('')) for path in task_dir.rglob('*.yaml'))


def user_recipes(cwd: Path) -> list:
    return sorted(path.stem for path in cwd.glob('*.yaml'))


def user_recipes_dir() -> Path:
    """This process's folder of the user's recipes, as Hydra reads them (task/<name>.yaml); removed at exit."""
    global _USER_RECIPES
    if _USER_RECIPES is None:
        _USER_RECIPES = Path(tempfile.mkdtemp(prefix='ML-recipes-'))
        atexit.register(shutil.rmtree, _USER_RECIPES, ignore_errors=True)
    return _USER_RECIPES


_USER_RECIPES = None


def clear():
    """Forgets the user's recipes of an earlier launch in this process."""
    shutil.rmtree(user_recipes_dir() / 'task', ignore_errors=True)


def user_keys() -> set:
    """The dotted keys (replay.capacity, eyes.depth) that the user's own recipes of this launch set themselves, not
    through the recipes they import."""
    keys = set()

    def add(mapping: dict, prefix: str):
        for key, value in mapping.items():
            keys.add(f'{prefix}{key}')
            if isinstance(value, dict):
                add(value, f'{prefix}{key}.')
    for copy in (user_recipes_dir() / 'task').rglob('*.yaml'):
        recipe = yaml.safe_load(copy.read_text()) or {}
        recipe.pop('defaults', None)
        add(recipe, '')
    return keys


def register(task: str, cwd: Path) -> str:
    """Makes `task=<task>` findable by Hydra; returns the option name to hand Hydra for it."""
    return _register(task, cwd, chain=())


def _register(task: str, here: Path, chain: tuple) -> str:
    path = _user_path(task, here)
    if path is None:
        if task in builtin_recipes():
            return task
        in_a_suite = [name for name in builtin_recipes() if name.rsplit('/', 1)[-1] == task]
        if len(in_a_suite) == 1:  # task=breakout is atari/breakout, task=walker_walk is dmc/walker_walk
            return in_a_suite[0]
        known = user_recipes(here) + builtin_recipes()
        raise RecipeError(f'task={task}: no recipe ./{task}.yaml in {here} nor a built-in one'
                          f'{did_you_mean(task, known)}; recipes: {", ".join(known)}')
    if path in chain:
        raise RecipeError(f'{path}: imports itself through {" -> ".join(p.name for p in chain)}')

    recipe = _load(path)
    imports = recipe.pop('imports', None)
    if imports is not None:
        if 'defaults' in recipe:
            raise RecipeError(f'{path}: give imports or defaults, not both (they are the same thing)')
        if not isinstance(imports, list):
            raise RecipeError(f'{path}: imports must be a list, like imports: [classify, self]')
        recipe['defaults'] = ['_self_' if name == 'self' else
                              f'/task/{_register(str(name), path.parent, (*chain, path))}' for name in imports]

    name = task[:-len('.yaml')] if task.endswith('.yaml') else task
    name = path.stem if Path(name).is_absolute() or name.startswith('.') else name
    name = re.sub(r'[^\w/.-]', '_', name)  # an option name Hydra's grammar reads: a variant folder's = and , are not
    copy = user_recipes_dir() / 'task' / f'{name}.yaml'
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_text(f'# @package _global_\n# from {path}\n{yaml.safe_dump(recipe, sort_keys=False)}')
    return name


def is_file(task: str, here: Path) -> bool:
    """Whether `task=<task>` names a recipe file of the user's (./name.yaml, or a path to one)."""
    return _user_path(task, here) is not None


def _user_path(task: str, here: Path):
    path = (here / task) if task.endswith('.yaml') else (here / f'{task}.yaml')
    return path.resolve() if path.is_file() else None


def _load(path: Path) -> dict:
    """The recipe as a plain dict; a YAML error names the file and line."""
    try:
        recipe = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, 'problem_mark', None)
        where = f'{path}, line {mark.line + 1}' if mark else str(path)
        raise RecipeError(f'{where}: {getattr(error, "problem", None) or error}') from error
    if recipe is None:
        return {}
    if not isinstance(recipe, dict):
        raise RecipeError(f'{path}: a recipe is a mapping of keys to values, like Dataset: MNIST')
    recipe.pop('provenance', None)  # a run's config.yaml is a recipe too: what it records of the run is no setting
    return recipe
