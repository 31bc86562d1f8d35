"""cv.folds=k: k-fold cross-validation of a Dataset, as scikit-learn's cross_validate scores an estimator.

    ML cv.folds=5                                                  # 5 runs, the mean ± std of their evaluations
    ML -m search.trials=20 cv.folds=3 'lr=tag(log,interval(1e-4,1e-1))'   # a search on the cross-validated score

The dataset's training part (all of it but the test split: its own, or the test_split hold-out) is cut into k folds,
stratified by class (scikit-learn's StratifiedKFold; KFold for regression targets or cv.stratified=false), shuffled
with `seed`. Run i trains on the other k - 1 folds and is evaluated on fold i; the test split is never seen. Each
run is a whole run with a folder of its own, named like a sweep member's by what sets it apart (`cv.fold=2,
cv.folds=5`, beside a sweep's own variant), and is one of the sweep's members to training's member logic: run again,
a completed fold is read back, an interrupted one resumes from its checkpoint. The summary, each fold's final
evaluation and their mean and standard deviation, is printed on one line and written to

    Benchmarking/<experiment>/cv.folds=<k>/<Agent>/<suite>/<task>_<seed>/cv.csv

The RunResult handed back (to ML.launch, a sweep, a search) holds the mean of every metric over the folds, and its
population standard deviation as `<metric>_std` (numpy's default, as scikit-learn's examples report scores.std()).
"""
import csv
import os
from pathlib import Path

import numpy as np

from ML.errors import ConfigError
from ML.records.logger import shown
from ML.specs import RunResult


def fold_variant(variant, folds: int, fold: int = None) -> str:
    """A fold's folder inside the experiment (fold=None: the summary's): the sweep's variant with cv.fold and
    cv.folds added, `key=value` joined by commas in order, as a sweep names its members."""
    parts = set(variant.split(',')) if variant else set()
    parts |= {f'cv.folds={folds}', *([f'cv.fold={fold}'] if fold is not None else [])}
    return ','.join(sorted(parts))


def cross_validate(config: dict, live: dict, train, on_evaluation=None, root: Path = None) -> RunResult:
    """Trains every fold of config's cv.folds with train(config, live, on_evaluation, member=True, root=root) (see
    ML.training.train), writes cv.csv and prints the summary; returns the folds' mean evaluation (with <metric>_std),
    the last fold's agent, counters and checkpoint, and the summary's folder. on_evaluation (a search's pruner) sees
    the first fold's evaluations. Raises ConfigError for an Env (a dataset of episodes is not cut into folds), and
    train's errors, the first fold's bad input before anything is written."""
    if config['Env'] is not None:
        raise ConfigError(f'cv.folds={config["cv"]["folds"]}: cross-validation cuts a Dataset into folds; '
                          f'Env={config["Env"]} has none (drop cv.folds)')
    folds, results = config['cv']['folds'], []
    for fold in range(1, folds + 1):
        fold_config = {**config, 'cv': {**config['cv'], 'fold': fold},
                       'variant': fold_variant(config['variant'], folds, fold)}
        results.append(train(fold_config, live, on_evaluation if fold == 1 else None, member=True, root=root))
    evaluation = summary(results)

    root = root or Path.cwd()
    experiment = root / 'Benchmarking' / config['experiment']
    run = results[0].folder.relative_to(experiment / fold_variant(config['variant'], folds, 1))
    folder = experiment / fold_variant(config['variant'], folds) / run
    write_table(folder / 'cv.csv', results, evaluation)
    kind = 'stratified ' if config['cv']['stratified'] else ''
    print(f'ML: {folds}-fold {kind}cross-validation: {describe(evaluation)} '
          f'(each fold evaluated on its held-out part); {shown(folder / "cv.csv")}')
    last = results[-1]
    status = 'skipped' if all(result.status == 'skipped' for result in results) else 'completed'
    return RunResult(last.agent, evaluation, last.counters, folder, last.checkpoint, status=status)


def summary(results: list) -> dict:
    """{metric: mean over the folds, metric_std: their standard deviation} for every number all folds report."""
    metrics = [key for key, value in results[0].evaluation.items() if isinstance(value, (int, float))
               and all(key in result.evaluation for result in results)]
    evaluation = {}
    for key in metrics:
        values = np.array([float(result.evaluation[key]) for result in results])
        evaluation[key], evaluation[f'{key}_std'] = float(values.mean()), float(values.std())
    return evaluation


def describe(evaluation: dict) -> str:
    """'accuracy 95.10% ± 1.20%, ...' for each metric and its std."""
    def shown(key, value):
        return f'{value:.2%}' if key == 'accuracy' else f'{value:.4g}'
    return ', '.join(f'{key} {shown(key, value)} ± {shown(key, evaluation[f"{key}_std"])}'
                     for key, value in evaluation.items() if f'{key}_std' in evaluation)


def write_table(path: Path, results: list, evaluation: dict):
    """cv.csv: a row per fold (its final evaluation, steps, status and folder), then the rows mean and std; written
    whole or not at all."""
    metrics = [key for key in evaluation if not key.endswith('_std') or key.removesuffix('_std') not in evaluation]
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f'.{path.name}.tmp')
    with temporary.open('w', newline='') as file:
        writer = csv.writer(file)
        writer.writerow(['fold', *metrics, 'steps', 'status', 'folder'])
        for fold, result in enumerate(results, 1):
            writer.writerow([fold, *[result.evaluation[key] for key in metrics], result.counters.step,
                             result.status, shown(result.folder)])
        for row in ('mean', 'std'):
            writer.writerow([row, *[evaluation[key if row == 'mean' else f'{key}_std'] for key in metrics],
                             '', '', ''])
    os.replace(temporary, path)


def split(dataset, folds: int, fold: int, seed: int, stratified: bool, keys=None, name: str = 'the dataset') -> tuple:
    """(train, held_out): fold number `fold` (1 to folds) of a k-fold split of `dataset`, as torch Subsets.
    Stratified (StratifiedKFold) for class labels when asked, else KFold; shuffled with seed. Raises ConfigError
    when a fold would be empty, or when a class has fewer samples than folds (it could not be in every fold)."""
    from sklearn.model_selection import KFold, StratifiedKFold
    from torch.utils.data import Subset
    from ML.world.datasets import class_labels
    if fold > folds:
        raise ConfigError(f'cv.fold={fold}: there are cv.folds={folds} folds, numbered 1 to {folds}')
    if folds > len(dataset):
        raise ConfigError(f'cv.folds={folds}: Dataset={name} has {len(dataset)} training samples, fewer than '
                          f'the folds; lower cv.folds')
    labels = class_labels(dataset, keys, name) if stratified else None
    if labels is not None:
        classes, counts = np.unique(labels, return_counts=True)
        if counts.min() < folds:
            raise ConfigError(f'cv.folds={folds}: class {classes[counts.argmin()]} of Dataset={name} has '
                              f'{counts.min()} training samples, fewer than the folds, so it cannot be in every '
                              f'fold; lower cv.folds to {counts.min()}, or set cv.stratified=false')
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    else:
        splitter = KFold(folds, shuffle=True, random_state=seed)
    train, held_out = list(splitter.split(np.zeros(len(dataset)), labels))[fold - 1]
    return Subset(dataset, train.tolist()), Subset(dataset, held_out.tolist())

