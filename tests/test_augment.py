"""Augmentation on the device (Aug=): each training batch draws its own crops and flips, per sample, from a generator
seeded by the run's seed and saved with the run; evaluation sees the test data as it is. And task=cifar10_fast,
airbench94's recipe on ML's keys."""
import csv

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import TensorDataset

import ML
from conftest import FAST, checkpoint, run_dir
from fakedata import allow_fake_cifar, write_cifar
from ML.agents.classifier import Classifier
from ML.blocks.augment import Flip, RandomCrop, RandomShiftsFlip, crop
from ML.blocks.convgroups import ConvGroups
from ML.cli import main
from ML.errors import ConfigError
from ML.specs import Batch, Counters, Spec
from ML.world.augment import Augmentation, seeded_generator
from ML.world.datasets import DataReplay, DatasetWorld

SAMPLES = 16


def images(n=SAMPLES, shape=(2, 8, 8)) -> TensorDataset:
    """n copies of one image whose every pixel differs (so every shift and mirror of it differs), labelled 0 to
    n - 1, so that a sample is known by its label wherever a batch puts it."""
    image = torch.arange(float(torch.tensor(shape).prod())).reshape(shape)
    return TensorDataset(image.expand(n, *shape).clone(), torch.arange(n))


def augmented(seed: int, pad=2) -> DataReplay:
    """A replay of every sample in each batch, augmented by RandomShiftsFlip drawing from the run's seed."""
    replay = DataReplay(images(), batch_size=SAMPLES, seed=seed)
    generator = seeded_generator(seed)
    replay.augment = Augmentation(RandomShiftsFlip(pad=pad, generator=generator), generator)
    return replay


def by_sample(batch) -> torch.Tensor:
    """The batch's observations in the order of their samples."""
    return batch.obs[batch.label.argsort()]


# ---- the transforms --------------------------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(1, 2), st.integers(3, 7), st.integers(3, 7), st.integers(0, 2),
       st.sampled_from(['reflect', 'replicate', 'circular', 'constant']), st.data())
def test_a_crop_is_each_image_padded_cut_at_its_own_place_and_mirrored(n, c, h, w, pad, mode, data):
    batch = torch.randn(n, c, h, w)
    dy, dx = (torch.tensor(data.draw(st.lists(st.integers(0, 2 * pad), min_size=n, max_size=n))) for _ in 'yx')
    flip = torch.tensor(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    expected = []
    for image, top, left, mirror in zip(batch, dy.tolist(), dx.tolist(), flip.tolist()):
        padded = F.pad(image[None], (pad,) * 4, mode=mode)[0] if pad else image
        window = padded[:, top:top + h, left:left + w]
        expected.append(window.flip(-1) if mirror else window)
    assert torch.equal(crop(batch, pad, dy, dx, flip, mode), torch.stack(expected))


def test_a_shift_moves_the_image_and_brings_in_what_the_padding_mode_says():
    rows = torch.tensor([1., 2., 3., 4.]).expand(1, 1, 3, 4)
    right_by_one = (torch.tensor([1]), torch.tensor([0]))  # rows as they were; the window starts 1 pixel left
    for mode, row in [('constant', [0., 1., 2., 3.]), ('reflect', [2., 1., 2., 3.]), ('replicate', [1., 1., 2., 3.]),
                      ('circular', [4., 1., 2., 3.])]:
        assert crop(rows, 1, *right_by_one, padding_mode=mode)[0, 0].tolist() == [row] * 3, mode


@pytest.mark.parametrize('transform, message', [
    (lambda: RandomShiftsFlip(pad=-1), 'pad=-1: a shift of 0 pixels or more'),
    (lambda: RandomCrop(padding_mode='zeros'), "padding_mode='zeros': one of reflect, replicate, circular, constant"),
    (lambda: Flip(p=1.5), r'p=1.5: a probability, from 0 to 1'),
    (lambda: RandomCrop(pad=8)(torch.zeros(2, 1, 8, 8)), 'pad=8: a reflection reaches at most 7 pixels'),
    (lambda: Flip()(torch.zeros(2, 4)), r'Flip augments images \(B, C, H, W\); got a batch of shape \(2, 4\)'),
])
def test_a_transform_refuses_what_it_cannot_do(transform, message):
    with pytest.raises(ValueError, match=message):
        transform()


# ---- each batch on its device, seeded ----------------------------------------------------------------------------

def test_each_batch_draws_afresh_per_sample_and_the_seed_repeats_the_draws():
    replay = augmented(seed=1)
    first, second = by_sample(replay.sample()), by_sample(replay.sample())  # every sample is in both batches
    seen_differently = sum(not torch.equal(a, b) for a, b in zip(first, second))
    assert seen_differently >= SAMPLES - 2  # 25 shifts x 2 mirrors: a repeat is rare
    assert len({tuple(image.flatten().tolist()) for image in first}) >= SAMPLES - 4  # one image, many views
    again = augmented(seed=1)
    assert torch.equal(by_sample(again.sample()), first) and torch.equal(by_sample(again.sample()), second)
    assert not torch.equal(by_sample(augmented(seed=2).sample()), first)


def test_the_augmentation_never_reaches_evaluation():
    data = images()
    world = DatasetWorld(data, data, name='Views', batch_size=4)
    generator = seeded_generator(1)
    world.replay.augment = Augmentation(RandomShiftsFlip(generator=generator), generator)
    drawn = generator.get_state()

    class Recorder:
        def __init__(self):
            self.seen = []

        def act(self, obs, counters=None, greedy=True):
            self.seen.append(obs)
            return torch.zeros(len(obs), dtype=torch.long)

    recorder = Recorder()
    world.evaluate(recorder, None)
    assert torch.equal(torch.cat(recorder.seen), data.tensors[0])
    assert torch.equal(generator.get_state(), drawn)  # nothing was drawn for the test data
    assert not torch.equal(world.replay.sample().obs[0], data.tensors[0][0])  # while training batches differ


def test_a_replay_restored_from_its_saved_state_draws_what_the_uninterrupted_one_would(tmp_path):
    uninterrupted = augmented(seed=3)
    for _ in range(3):
        uninterrupted.sample()
    torch.save(uninterrupted.state_dict(), tmp_path / 'state.pt')
    expected = [uninterrupted.sample() for _ in range(2)]
    resumed = augmented(seed=3)
    resumed.load_state_dict(torch.load(tmp_path / 'state.pt', weights_only=True))
    for batch in expected:
        assert torch.equal(resumed.sample().obs, batch.obs)


def losses(folder) -> list:
    with open(folder / 'train.csv') as file:
        return [row['loss'] for row in csv.DictReader(file)]


def test_runs_of_one_seed_give_one_loss_curve_and_a_resumed_run_goes_on_with_its_draws(user_dir, capsys):
    line = ['Aug=RandomShiftsFlip', 'aug.pad=2', 'log_per_steps=2', 'eval_per_steps=null', 'progress=false']
    main([*line, 'train_steps=20', 'experiment=Whole'])
    out = capsys.readouterr().out
    assert 'held in memory (cpu); each training batch augmented by Aug=RandomShiftsFlip on cpu' in out
    main([*line, 'train_steps=10', 'experiment=Cut'])
    main([*line, 'train_steps=20', 'experiment=Cut', 'load=true'])
    main([*line[2:], 'train_steps=20', 'experiment=Plain'])
    whole = losses(run_dir(user_dir, experiment='Whole'))
    assert len(whole) == 10 and losses(run_dir(user_dir, experiment='Cut')) == whole
    assert losses(run_dir(user_dir, experiment='Plain'))[1:] != whole[1:]  # the first step's loss precedes learning


@pytest.mark.parametrize('line, message', [
    (['task=RL', 'Aug=Flip'], 'ML: ConfigError: Aug=Flip: augments the batches of a Dataset; in Env=CartPole-v1 an '
                              'agent augments its own (Agent=DrQV2 shifts by agent.aug_pad)'),
    (['Aug=CNN'], 'ML: ShapeError: Aug=CNN: turns observations of shape (1, 8, 8) into (32, 8, 8); an augmentation '
                  'keeps the shape the networks were sized to'),
    (['aug.pad=2'], 'ML: ConfigError: aug.pad: Aug is null, so nothing takes it; set Aug=... too'),
])
def test_aug_is_refused_where_it_cannot_apply(line, message, user_dir, capsys):
    with pytest.raises(SystemExit) as exit:
        main([*line, *FAST])
    assert (exit.value.code, capsys.readouterr().err.strip()) == (1, message)
    assert not (user_dir / 'Benchmarking').exists()


# ---- the Classifier's label smoothing and test-time mirror ------------------------------------------------------

class Halves(torch.nn.Module):
    """Logits of 2 classes: the sums of an image's left and right halves, so a mirror swaps them."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x):
        w = x.shape[-1] // 2
        return torch.stack([x[..., :w].sum((1, 2, 3)), x[..., w:].sum((1, 2, 3))], -1) * self.scale


def classifier(**options) -> Classifier:
    return Classifier(torch.nn.Identity(), Halves(), lambda parameters: torch.optim.SGD(parameters, lr=0.0),
                      Spec(shape=(), dtype=torch.int64, discrete=True, low=0, high=1), **options)


def test_test_time_flip_predicts_from_each_image_and_its_mirror_at_evaluation():
    leaning_left = torch.tensor([[[[3., 1.]]], [[[1., 2.]]]])  # (2, 1, 1, 2): one per class
    assert classifier().act(leaning_left).tolist() == [0, 1]
    mirrored = classifier(tta_flip=True)  # an image and its mirror: the halves' sums swapped, their mean even
    world = DatasetWorld(TensorDataset(leaning_left, torch.tensor([0, 1])),
                         TensorDataset(leaning_left, torch.tensor([0, 1])), name='Halves')
    assert world.evaluate(classifier(), None)['accuracy'] == 1.0
    assert world.evaluate(mirrored, None)['accuracy'] == 0.5  # even logits: argmax takes class 0 for both


def test_label_smoothing_keeps_a_confident_right_answer_from_a_zero_loss():
    confident = Batch(obs=torch.tensor([[[[30., 0.]]]]), label=torch.tensor([0]))
    plain, smoothed = (classifier(label_smoothing=amount).learn(confident, Counters())['loss'] for amount in (0, 0.2))
    assert plain < 1e-6 and smoothed == pytest.approx(0.1 * 30, rel=1e-4)  # the 0.1 aimed at the other class


@pytest.mark.parametrize('options, message', [
    (dict(label_smoothing=1.0), r'agent.label_smoothing=1.0: a fraction in \[0, 1\)'),
    (dict(tta_flip=True, obs_spec=Spec(shape=(4,), dtype=torch.float32)),
     r'agent.tta_flip=true: mirrors images \(C, H, W\); these observations are of shape \(4,\)'),
])
def test_the_classifier_refuses_options_that_do_not_fit(options, message):
    with pytest.raises(ConfigError, match=message):
        classifier(**options)


# ---- task=cifar10_fast -----------------------------------------------------------------------------------------

def test_the_whitening_whitens_the_patches_of_its_first_training_batch_once():
    torch.manual_seed(0)
    batch = torch.rand(8, 3, 16, 16)
    batch = batch + batch.roll(1, -1) + 2  # neighbours correlated, far from zero
    network = ConvGroups((3, 16, 16), widths=(8, 8))
    whitening = network.body[0]
    out = whitening(batch)[:, :12].permute(0, 2, 3, 1).reshape(-1, 12)  # its first 12 filters (then negatives)
    assert out.mean(0).abs().max() < 1e-4
    assert torch.allclose(out.T @ out / len(out), torch.eye(12), atol=1e-2)
    filters = whitening.weight.clone()
    network(torch.rand(8, 3, 16, 16))
    assert torch.equal(whitening.weight, filters) and network.state_dict()['body.0.whitened']
    with pytest.raises(ValueError, match=r'ConvGroups needs images \(C, H, W\) of at least 9 pixels a side'):
        ConvGroups((1, 8, 8))


def test_cifar10_fast_trains_on_cifar_files_and_evaluates_with_the_mirror(user_dir, monkeypatch, capsys):
    allow_fake_cifar(monkeypatch)  # torchvision md5-checks the files: the command runs in this process
    write_cifar(user_dir / 'Datasets', 'CIFAR10', n_train=64, n_test=32)
    main(['task=cifar10_fast', 'train_steps=3', 'batch_size=32', 'model.widths=[8,16,16]', 'progress=false'])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == 'ML: CIFAR10: 64 training and 32 test samples of 10 classes, held in memory (cpu); each ' \
                       'training batch augmented by Aug=RandomShiftsFlip on cpu'
    assert lines[-1].startswith('ML: 3 steps, 96 frames in ') and '; test accuracy ' in lines[-1]
    saved = torch.load(checkpoint(user_dir, task='CIFAR10'), weights_only=True)
    assert saved['config']['agent'] == {'label_smoothing': 0.2, 'tta_flip': True}
    assert saved['replay']['augment']['generator'].dtype == torch.uint8  # the draws resume where they stood
    agent = ML.load_agent(str(checkpoint(user_dir, task='CIFAR10')))
    test = torch.rand(4, 3, 32, 32)
    assert torch.equal(agent.act(test), ((agent(test) + agent(test.flip(-1))) / 2).argmax(-1))
    assert (run_dir(user_dir, task='CIFAR10') / 'status').read_text() == 'completed\n'
