"""stream=true: each environment step is learned from as it comes, then dropped (on-policy learning, no replay)."""
import numpy as np
import torch

from ML.specs import Batch


class Stream:
    """Stands where a replay would: add() keeps the newest step, sample() hands it over once as a Batch."""

    def __init__(self, gamma: float = 0.99, device='cpu'):
        self.gamma, self.device, self.step = gamma, device, None

    def add(self, step):
        valid = step.valid  # gymnasium's autoreset steps are no transitions
        self.step = None if not valid.any() else {
            'obs': step.obs[valid], 'action': step.action[valid], 'reward': step.reward[valid],
            'discount': self.gamma * (1.0 - step.terminated[valid]), 'next_obs': step.next_obs[valid]}

    def __len__(self):
        return 0 if self.step is None else len(self.step['obs'])

    def sample(self) -> Batch:
        step, self.step = self.step, None
        return Batch(**{key: torch.as_tensor(np.asarray(value), device=self.device) for key, value in step.items()})
