"""The random augmentation of the training batches (`Aug=`), applied by the data replay to each batch it samples,
where the batch lives: a dataset held on the GPU is augmented there, afresh at every batch, so holding the data in
memory never freezes its augmentation. Evaluation sees the test data as it is."""
import numpy as np
import torch

AUGMENT = 3  # the word that keeps the augmentation's seed apart from the data's (reading.py: READ, TRAIN, TEST)


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU generator for the augmentation's draws, seeded from the run's seed by numpy's SeedSequence, so that its
    draws are not those of the data order's generator (seeded with the seed itself)."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, AUGMENT]).generate_state(1)[0]))


class Augmentation:
    """transform applied to each training batch's observations, without gradients; the generator its built-in
    transforms draw from (`generator`: RandomShiftsFlip, RandomCrop, Flip), whose state state_dict() holds so that
    a resumed run draws what an uninterrupted one would have. torchvision's transforms draw from torch's global
    generator, which the checkpoint holds already.

    __call__: float32 (B, *obs_shape) -> the same shape.
    """

    def __init__(self, transform, generator: torch.Generator):
        self.transform, self.generator = transform, generator

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.transform(obs)

    def state_dict(self) -> dict:
        return {'generator': self.generator.get_state()}

    def load_state_dict(self, state: dict):
        self.generator.set_state(state['generator'])
