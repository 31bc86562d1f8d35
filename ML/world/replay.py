"""An experience replay for online RL: a preallocated numpy ring that samples n-step returns."""
import numpy as np
import torch

from ML.specs import Batch


def _numpy(dtype):
    return torch.empty((), dtype=dtype).numpy().dtype


class Replay:
    """A ring of transitions laid out (time, env), so that an env's next transition is one row further on.

    terminated and truncated are kept apart: an n-step return stops at either, bootstraps through a truncation
    (a time limit; the state still has a future) and not through a termination (stable-baselines3 issue #284).
    """

    def __init__(self, obs_spec, action_spec, capacity=100_000, batch_size=256, nstep=1, gamma=0.99,
                 device='cpu', seed=1):
        for key, value, ok in [('capacity', capacity, capacity >= 1), ('batch_size', batch_size, batch_size >= 1),
                               ('nstep', nstep, nstep >= 1), ('gamma', gamma, 0 <= gamma <= 1)]:
            if not ok:
                raise ValueError(f'replay.{key}={value} is out of range (capacity, batch_size, nstep >= 1; '
                                 f'0 <= gamma <= 1)')
        if capacity < nstep:
            raise ValueError(f'replay.capacity={capacity} cannot hold one nstep={nstep} return')
        self.obs_spec, self.action_spec = obs_spec, action_spec
        self.capacity, self.batch_size, self.nstep, self.gamma, self.device = capacity, batch_size, nstep, gamma, device
        self.rng = np.random.default_rng(seed)
        self.pos, self.full = 0, False  # the next row to write; whether the ring has wrapped
        self.size = 0                   # valid transitions held
        self.rows = None                # allocated on the first add, once the number of envs per step is known

    def _allocate(self, num_envs):
        self.rows = self.capacity // num_envs
        if self.rows < self.nstep:
            raise ValueError(f'replay.capacity={self.capacity} holds {self.rows} steps of {num_envs} envs, '
                             f'fewer than nstep={self.nstep}')
        shape, obs_dtype = (self.rows, num_envs), _numpy(self.obs_spec.dtype)
        action_dtype = np.int64 if self.action_spec.discrete else _numpy(self.action_spec.dtype)
        # obs and next_obs are both stored, the simple layout; storing each frame once replaces these two arrays
        try:
            self.obs = np.zeros(shape + tuple(self.obs_spec.shape), obs_dtype)
            self.next_obs = np.zeros_like(self.obs)
        except MemoryError as e:
            raise ValueError(f'replay.capacity={self.capacity} does not fit in memory: {e}') from e
        self.action = np.zeros(shape + tuple(self.action_spec.shape), action_dtype)
        self.reward = np.zeros(shape, np.float32)
        self.terminated = np.zeros(shape, bool)
        self.truncated = np.zeros(shape, bool)
        self.valid = np.zeros(shape, bool)  # False for rows never written and for envs' reset steps

    def add(self, step):
        """Store one vector step: num_envs transitions, of which the reset steps are marked invalid."""
        if self.rows is None:
            self._allocate(len(step.reward))
        row = self.pos
        self.size += int(step.valid.sum()) - int(self.valid[row].sum())
        self.obs[row], self.next_obs[row], self.action[row] = step.obs, step.next_obs, step.action
        self.reward[row], self.terminated[row], self.truncated[row] = step.reward, step.terminated, step.truncated
        self.valid[row] = step.valid
        self.pos = (row + 1) % self.rows
        self.full = self.full or self.pos == 0

    def __len__(self):
        return self.size

    def sample(self):
        """A batch of n-step transitions, sampled uniformly from the valid ones held."""
        assert self.size > 0, 'sample from an empty replay'
        filled = self.rows if self.full else self.pos
        t = self.rng.integers(filled, size=self.batch_size)
        env = self.rng.integers(self.valid.shape[1], size=self.batch_size)
        redraw = ~self.valid[t, env]
        while redraw.any():  # reset steps are rare (one per episode): a redraw or two covers them
            t[redraw] = self.rng.integers(filled, size=redraw.sum())
            env[redraw] = self.rng.integers(self.valid.shape[1], size=redraw.sum())
            redraw = ~self.valid[t, env]

        # the n rows after each sample, (B, n); row k counts if rows 0..k-1 did not end the episode and row k
        # was written after t (the newest row is pos - 1; past it the ring holds older data, or nothing)
        k = np.arange(self.nstep)
        rows = (t[:, None] + k) % self.rows
        ended = self.terminated[rows, env[:, None]] | self.truncated[rows, env[:, None]]
        ended_before = np.cumsum(ended, axis=1) - ended > 0
        written = k <= ((self.pos - 1 - t) % self.rows)[:, None]
        counts = written & ~ended_before          # a prefix of each row of k
        n = counts.sum(axis=1)                    # steps in each return, 1..nstep
        last = rows[np.arange(self.batch_size), n - 1]

        reward = (self.reward[rows, env[:, None]] * self.gamma ** k * counts).sum(axis=1)
        discount = self.gamma ** n * ~self.terminated[last, env]  # 0 past a termination; bootstrap otherwise
        return Batch(obs=self._tensor(self.obs[t, env]), action=self._tensor(self.action[t, env]),
                     reward=self._tensor(reward.astype(np.float32)),
                     discount=self._tensor(discount.astype(np.float32)),
                     next_obs=self._tensor(self.next_obs[last, env]))

    def _tensor(self, array):
        return torch.as_tensor(array, device=self.device)
