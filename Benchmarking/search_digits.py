"""A search against the default config: 20 trials over the default task's learning rate and width, on optuna's TPE
with median pruning, then the best trial and the default config retrained on seeds the search never saw.

    python Benchmarking/search_digits.py [--trials 20] [--seeds 3]

The default task holds out its test split and has no validation split, so the search picks on test accuracy and the
best trial's own accuracy flatters it (a maximum over trials); the figure that counts is the retraining, the best
config (Benchmarking/Search/best.yaml, as `ML -m task=... seed=...` loads it) against the default on fresh seeds.
Each figure is printed beside the CPU pressure (/proc/pressure/cpu, avg10); one torch thread, as the tests run.
"""
import argparse
import statistics

import optuna

import ML
from common import pressure, workspace  # Benchmarking/common.py, beside this script

SPACE = ['lr=tag(log,interval(1e-4,1e-1))', 'model.hidden=choice(32,64,128,256,512)']


def accuracies(members: list) -> list:
    return [member.evaluation['accuracy'] for member in members if member.status in ('completed', 'skipped')]


def spread(values: list) -> str:
    deviation = statistics.stdev(values) if len(values) > 1 else 0.0
    return f'{statistics.mean(values):.2%} ± {deviation:.2%} over {len(values)} seeds'


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--trials', type=int, default=20)
    parser.add_argument('--seeds', type=int, default=3)
    args = parser.parse_args()
    folder = workspace()
    fresh_seeds = ','.join(str(seed) for seed in range(2, 2 + args.seeds))

    ML.launch('-m', *SPACE, f'search.trials={args.trials}', 'experiment=Search', 'progress=false')
    print(f'search: {args.trials} trials  ({pressure()})', flush=True)
    study = optuna.load_study(study_name='Search', storage=f'sqlite:///{folder}/Benchmarking/Search/search.db')
    pruned = [trial for trial in study.trials if trial.state.name == 'PRUNED']
    default = ML.launch('-m', 'seed=1', 'experiment=Default', 'progress=false')
    print(f'default config, seed 1  ({pressure()})', flush=True)

    best_again = ML.launch('-m', 'task=Benchmarking/Search/best', f'seed={fresh_seeds}', 'progress=false')
    print(f'best config, seeds {fresh_seeds}  ({pressure()})', flush=True)
    default_again = ML.launch('-m', f'seed={fresh_seeds}', 'experiment=Default', 'progress=false')
    print(f'default config, seeds {fresh_seeds}  ({pressure()})', flush=True)

    best = study.best_trial
    print(f'\nbest trial {best.number} of {len(study.trials)}: lr={best.params["lr"]:.4g} '
          f'model.hidden={best.params["model.hidden"]}: test accuracy {best.value:.2%} (seed 1, picked on it); '
          f'default config (lr=0.001 model.hidden=256): {accuracies(default)[0]:.2%}')
    print(f'retrained on fresh seeds: best {spread(accuracies(best_again))}, '
          f'default {spread(accuracies(default_again))}')
    print(f'pruned: {len(pruned)} of {len(study.trials)} trials (median rule, evaluations every 500 steps)')


if __name__ == '__main__':
    main()
