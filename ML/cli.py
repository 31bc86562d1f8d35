"""The ML command: argv -> overrides -> launch, or a Hydra multirun with -m; bad input is one line on stderr."""
import os
import re
import signal
import sys
from pathlib import Path

USAGE = """usage: ML [key=value ...] [-m] [--cfg job] [--help]

  ML                                   train the default task (a classifier on scikit-learn's 8x8 digits)
  ML Model=Run.model Dataset=MNIST     an uppercase key says what to build; Run.model = `model` in ./Run.py
  ML Eyes=CNN eyes.depth=5             its lowercase twin gives the arguments
  ML task=RL Env=CartPole-v1           a recipe: ./RL.yaml first, then the built-in ones
  ML -m seed=1,2,3                     a sweep over Hydra's launchers
  ML --cfg job                         print the composed config and stop
"""


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if '--help' in argv or '-h' in argv:
        return print_help()
    multirun = '-m' in argv or '--multirun' in argv
    show_config = '--cfg' in argv
    overrides = [arg for arg in argv if arg not in ('-m', '--multirun', '--cfg', 'job', 'all')]
    unknown = [arg for arg in overrides if arg.startswith('-')]
    if unknown:
        fail(f'{unknown[0]}: unknown flag; ML takes key=value overrides, -m, --cfg job and --help')
    from ML.errors import MLError
    try:
        if show_config:
            from omegaconf import OmegaConf
            from ML.language import compose
            print(OmegaConf.to_yaml(compose.compose(overrides, Path.cwd())), end='')
        elif multirun:
            processes = [arg for arg in overrides if re.fullmatch(r'\+*num_processes=(?!1$).*', arg)]
            if processes:
                fail(f'ConfigError: {processes[0]}: a sweep\'s members each run in one process; sweep on SLURM '
                     f'with hydra.launcher.tasks_per_node, or run each member under torchrun')
            from ML.training import sweep
            members = sweep(overrides)
            crashed = [member for member in members if member.status == 'crashed']
            if crashed:
                fail(f'{len(crashed)} of {len(members)} members crashed, the first '
                     f'({" ".join(crashed[0].overrides)}) with {crashed[0].error}')
        else:
            from ML import distributed
            from ML.training import launch
            try:
                with distributed.command():
                    launch(*overrides)
            except distributed.Relaunch as wanted:  # num_processes=N: this command again, as N processes
                code = distributed.relaunch(wanted.num_processes, argv)
                if code:
                    sys.exit(code)
    except MLError as error:
        if os.environ.get('HYDRA_FULL_ERROR') == '1':
            raise
        show_error(error)
    except KeyboardInterrupt:
        fail('Interrupted: SIGINT (Ctrl-C)', 128 + signal.SIGINT)
    except Exception as error:
        crashed = getattr(error, 'crashed_run', None)  # the user's own code raised while the run trained
        if crashed is None or os.environ.get('HYDRA_FULL_ERROR') == '1':
            raise
        from ML.errors import UserCodeError
        from ML.language.paths import explain
        said = explain(f'the run at step {crashed.step}', error, Path.cwd())
        show_error(UserCodeError(f'{said}; the whole traceback is in {crashed.crash_file}', said.frames))


def show_error(error):
    """An MLError as the command shows it: one line on stderr (below the user's own frames, for an error of their
    code), and the exit code; in a process other than 0 of several, a line for process 0 to print instead."""
    from ML.errors import Interrupted
    code = 128 + error.signal if isinstance(error, Interrupted) else 1
    distributed = sys.modules.get('ML.distributed')  # imported by a run; an error before one needs no torch
    if distributed is not None and not distributed.is_main():  # process 0 prints for the run (distributed.report)
        if not isinstance(error, (Interrupted, distributed.ProcessLost)):
            distributed.report(f'{type(error).__name__}: {error}')
        sys.exit(code)
    if distributed is not None and isinstance(error, distributed.ProcessLost):
        fail(error.line)
    if getattr(error, 'frames', ''):  # the user's own code raised: its frames, as Python shows them, and no ML's
        print(error.frames, end='', file=sys.stderr)
    # a run a signal stopped exits as a shell reports it (128 + the signal's number: 143 for SIGTERM)
    fail(f'{type(error).__name__}: {error}', code)


def fail(message: str, code: int = 1):
    """One line on stderr, and exit with code; a character that would break the line (a value's newline) is
    escaped."""
    line = ''.join(char if char.isprintable() else char.encode('unicode_escape').decode() for char in message)
    print(f'ML: {line}', file=sys.stderr)
    sys.exit(code)


def print_help():
    """Usage, the recipes, and every key with its default and comment (Hyperparams/args.yaml)."""
    from ML.language.recipes import builtin_recipes, hyperparams_dir, user_recipes
    print(USAGE)
    print(f'recipes (task=...): here: {", ".join(user_recipes(Path.cwd())) or "none"}; '
          f'built in: {", ".join(builtin_recipes())}\n')
    print('keys (Hyperparams/args.yaml; each comment starts with the type and range every value is checked '
          'against):\n')
    print((hyperparams_dir() / 'args.yaml').read_text())
