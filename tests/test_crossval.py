"""cv.folds=k: k runs on stratified, seeded folds of a dataset's training part; the mean ± std of their evaluations is
printed, written to cv.csv and handed back, to a sweep and a search too."""
import csv
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import given, settings, strategies as st
from torch.utils.data import TensorDataset

from conftest import FAST, ml
from ML.crossval import split
from ML.errors import ConfigError
from ML.world.datasets import Digits, split as hold_out_test

SUMMARY = 'Benchmarking/Exp/cv.folds=3/Classifier/classify/Digits_1/cv.csv'


def rows(path: Path) -> list:
    with open(path) as file:
        return list(csv.DictReader(file))


def fold_folder(user_dir: Path, fold: int, folds: int = 3, variant: str = '') -> Path:
    name = ','.join(sorted([f'cv.fold={fold}', f'cv.folds={folds}', *([variant] if variant else [])]))
    return user_dir / 'Benchmarking/Exp' / name / 'Classifier/classify/Digits_1'


def test_three_folds_report_the_mean_and_std_of_their_final_evaluations_and_resume(user_dir):
    result = ml('cv.folds=3', *FAST, cwd=user_dir)
    finals = [rows(fold_folder(user_dir, fold) / 'eval.csv')[-1] for fold in (1, 2, 3)]
    accuracy, loss = ([float(row[metric]) for row in finals] for metric in ('accuracy', 'loss'))
    mean, std = np.mean(accuracy), np.std(accuracy)
    assert result.stdout.strip().splitlines()[-1] == (
        f'ML: 3-fold stratified cross-validation: accuracy {mean:.2%} ± {std:.2%}, loss {np.mean(loss):.4g} ± '
        f'{np.std(loss):.4g} (each fold evaluated on its held-out part); {SUMMARY}')
    table = rows(user_dir / SUMMARY)
    assert [row['fold'] for row in table] == ['1', '2', '3', 'mean', 'std']
    written = [float(row['accuracy']) for row in table]
    assert written == pytest.approx([*accuracy, mean, std], abs=1e-6)  # eval.csv keeps 6 digits
    # the folds cut the 1,438 training samples (Digits' 1,797 less its 359 test samples): the test part is never seen
    held_out = [int(n) for n in re.findall(r'Digits: \d+ training and (\d+) held-out samples', result.stdout)]
    assert held_out == [480, 479, 479] and sum(held_out) == 1797 - 359
    config = yaml.safe_load((fold_folder(user_dir, 2) / 'config.yaml').read_text())
    assert (config['cv'], config['variant']) == ({'folds': 3, 'stratified': True, 'fold': 2}, 'cv.fold=2,cv.folds=3')

    # run again, the completed folds are read back, not trained again; a longer budget goes on from each checkpoint
    again = ml('cv.folds=3', *FAST, cwd=user_dir)
    assert 'steps' not in again.stdout and again.stdout.strip().splitlines()[-1] == \
        result.stdout.strip().splitlines()[-1]
    assert [row['status'] for row in rows(user_dir / SUMMARY)][:3] == ['skipped'] * 3
    longer = ml('cv.folds=3', 'train_steps=30', 'eval_per_steps=null', 'progress=false', cwd=user_dir)
    assert longer.stdout.count('at step 20') == 3
    assert [row['step'] for row in rows(fold_folder(user_dir, 1) / 'eval.csv')] == ['20', '30']


def class_counts(labels: np.ndarray, subset, classes: int) -> np.ndarray:
    return np.bincount(labels[subset.indices], minlength=classes)


@settings(max_examples=30, deadline=None)
@given(sizes=st.lists(st.integers(5, 40), min_size=2, max_size=5), folds=st.integers(2, 5),
       seed=st.integers(0, 2 ** 32 - 1))
def test_folds_partition_the_data_keep_every_class_s_share_and_follow_the_seed(sizes, folds, seed):
    labels = np.repeat(np.arange(len(sizes)), sizes)
    dataset = TensorDataset(torch.zeros(len(labels), 2), torch.from_numpy(labels))
    cuts = [split(dataset, folds, fold, seed, stratified=True) for fold in range(1, folds + 1)]
    held_out = [index for _, held in cuts for index in held.indices]
    assert sorted(held_out) == list(range(len(labels)))  # every sample held out once
    for train, held in cuts:
        assert not set(train.indices) & set(held.indices) and len(train) + len(held) == len(labels)
    counts = np.array([class_counts(labels, held, len(sizes)) for _, held in cuts])  # (folds, classes)
    assert (counts.max(0) - counts.min(0) <= 1).all()  # each class spread evenly over the folds
    same = [split(dataset, folds, fold, seed, stratified=True)[1].indices for fold in range(1, folds + 1)]
    assert same == [held.indices for _, held in cuts]


def test_another_seed_cuts_other_folds_of_the_training_part_only():
    train, test = hold_out_test(Digits(), 0.2, seed=1)
    first = split(train, 5, 1, seed=1, stratified=True)[1]
    assert split(train, 5, 1, seed=2, stratified=True)[1].indices != first.indices
    assert not set(first.indices) & set(range(len(train), len(train) + len(test)))
    assert {train.indices[i] for i in first.indices}.isdisjoint(test.indices)  # no test sample in a fold
    labels = Digits().targets.numpy()[train.indices]
    counts, totals = class_counts(labels, first, 10), np.bincount(labels, minlength=10)
    assert counts.sum() == 288 and (abs(counts - totals / 5) < 1).all()  # a fifth of 1,438, each class's fifth


def test_a_class_too_small_for_the_folds_is_refused_unless_unstratified():
    dataset = TensorDataset(torch.zeros(12, 2), torch.tensor([0] * 10 + [1] * 2))
    with pytest.raises(ConfigError, match=r'^cv.folds=3: class 1 of Dataset=the dataset has 2 training samples, '
                                          r'fewer than the folds, so it cannot be in every fold; lower cv.folds to '
                                          r'2, or set cv.stratified=false$'):
        split(dataset, 3, 1, seed=1, stratified=True)
    assert len(split(dataset, 3, 1, seed=1, stratified=False)[1]) == 4


@pytest.mark.parametrize('args, message', [
    (['task=RL', 'cv.folds=3'], 'cv.folds=3: this run does not use it: only a Dataset is cross-validated; this run '
                                'acts in Env=CartPole-v1'),
    (['cv.folds=1'], 'cv.folds=1: expected an integer >= 2 or null (the default is null)'),
    (['cv.folds=200'], 'cv.folds=200: class 7 of Dataset=Digits has 135 training samples, fewer than the folds, so '
                       'it cannot be in every fold; lower cv.folds to 135, or set cv.stratified=false'),
    (['cv.stratified=false'], 'cv.stratified=false: this run does not use it: only cross-validation uses it; set '
                              'cv.folds too'),
])
def test_cross_validation_that_cannot_run_is_one_line_before_anything_is_written(args, message, user_dir):
    result = ml(*args, cwd=user_dir, check=False)
    assert (result.returncode, result.stderr.strip()) == (1, f'ML: ConfigError: {message}')
    assert not (user_dir / 'Benchmarking').exists()


def test_a_search_optimizes_the_cross_validated_score(user_dir):
    import optuna
    ml('-m', 'search.trials=2', 'cv.folds=2', 'lr=tag(log,interval(1e-4,1e-1))', *FAST, cwd=user_dir)
    study = optuna.load_study(study_name='Exp', storage=f'sqlite:///{user_dir}/Benchmarking/Exp/search.db')
    for member in rows(user_dir / 'Benchmarking/Exp/sweep.csv'):
        trial = int(re.search(r'search.trial=(\d+)', member['overrides'])[1])
        assert re.fullmatch(r'Benchmarking/Exp/cv.folds=2,lr=[\d.e-]+/Classifier/classify/Digits_1', member['folder'])
        table = rows(user_dir / member['folder'] / 'cv.csv')
        assert study.trials[trial].value == float(table[2]['accuracy']) == float(member['accuracy'])
        assert float(table[2]['accuracy']) == pytest.approx(np.mean([float(row['accuracy']) for row in table[:2]]))


def test_a_user_s_dataset_is_cross_validated_from_its_items(user_dir):
    result = ml('cv.folds=4', 'Dataset=Run.Dataset', 'Model=Run.Model', *FAST, cwd=user_dir)
    assert re.findall(r'Dataset: (\d+) training and (\d+) held-out samples', result.stdout) == [('36', '12')] * 4
    table = rows(user_dir / 'Benchmarking/Exp/cv.folds=4/Classifier/classify/Dataset_1/cv.csv')
    assert [row['fold'] for row in table] == ['1', '2', '3', '4', 'mean', 'std']
