"""An experience replay for online RL: a preallocated numpy ring that stores each frame once and samples n-step
returns, uniformly or by priority, with no Python loop over the batch."""
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import psutil
import torch

from ML.specs import Batch, Spec
from ML.world.sumtree import SumTree

OPTIONS = ('capacity', 'batch_size', 'nstep', 'gamma', 'seed', 'frame_stack', 'clip_reward', 'prioritized', 'alpha',
           'beta', 'beta_steps')  # what save() records, and load() takes back unless told otherwise
ARRAYS = ('frame', 'action', 'reward', 'terminated', 'truncated', 'valid', 'age')  # the ring, one .npy each
PLACEMENTS = ('ram', 'pinned', 'cuda', 'memmap')  # where replay.device may keep the frames
GPU_SHARE = 0.5  # of a GPU's free memory that a replay placed by its size may take: the networks need the rest


def choose_placement(need: int, device, gpu_free: int = None, ram_free: int = None) -> str:
    """Where a replay of `need` bytes goes when replay.device is null: 'cuda' when the run's device is a GPU and the
    replay fits in GPU_SHARE of its free memory, else 'ram' when it fits in the RAM available, else 'memmap'.
    gpu_free, ram_free: the free bytes (None: asked of torch.cuda.mem_get_info and psutil)."""
    device = torch.device(device)
    if device.type == 'cuda' and torch.cuda.is_available():
        gpu_free = torch.cuda.mem_get_info(device)[0] if gpu_free is None else gpu_free
        if need <= GPU_SHARE * gpu_free:
            return 'cuda'
    ram_free = psutil.virtual_memory().available if ram_free is None else ram_free
    return 'ram' if need <= ram_free else 'memmap'


def _gpu(device) -> torch.device:
    """The GPU a replay placed on 'cuda' keeps its frames on: the run's device, or the current GPU."""
    device = torch.device(device)
    return device if device.type == 'cuda' else torch.device('cuda')


class Replay:
    """A ring of rows laid out (time, env), one row per vector step, so that an env's next step is one row on.

    Each frame is stored once, in its own dtype (uint8 pixels stay uint8): a row keeps only the newest frame of its
    observation (the last C = shape[0] // frame_stack channels; frames stack on the first axis, newest last) and
    `age`, how many earlier frames of its episode the stack holds. sample() rebuilds a stack of frame_stack frames
    from rows t - frame_stack + 1 .. t, clamped at the episode's first row: the first frame repeated, as gymnasium's
    FrameStackObservation pads by default (padding_type='reset'). Dopamine's circular replay stores frames once too.

    next_obs is not stored apart: it is the next row's observation of the same env. The world resets an ended env
    on its next step (gymnasium >= 1.0's NEXT_STEP autoreset, https://farama.org/Vector-Autoreset-Mode): that reset
    row is not a transition (valid False), but its obs is the episode's final observation, which a truncated episode
    bootstraps from. add() also writes each step's next frame into the row ahead (which the next add fills with the
    same frame), so the newest transition can be sampled and a save is never short of a final frame; that row, and
    the stacks reaching back into it, are forgotten as the ring moves on.

    terminated and truncated are kept apart: an n-step return stops at either, bootstraps through a truncation
    (a time limit; the state still has a future) and not through a termination (stable-baselines3 issue #284).

    placement says where the frames live, which hold nearly all of a replay's memory (an 84x84 frame is 7 KB, its
    action, reward and flags 20 bytes; those stay in numpy arrays in RAM, for the sampling arithmetic):
        'ram'     a numpy array
        'pinned'  page-locked RAM, each batch gathered into page-locked memory and copied to the GPU without
                  blocking; with batches for the CPU (device 'cpu') there is nothing to pin: the frames stay in RAM
        'cuda'    a torch tensor on the GPU (the run's device when it is one), batches gathered there
        'memmap'  a numpy.memmap on an unnamed file in memmap_folder (None: the system's temporary folder), for
                  replays larger than RAM; the file is freed with the replay, even by a run that crashed
        None      chosen by size on the first add (choose_placement): the GPU, else RAM, else memmap
    Raises ValueError for a placement not in PLACEMENTS, or 'cuda' where torch sees no GPU.
    """

    def __init__(self, obs_spec, action_spec, capacity=100_000, batch_size=256, nstep=1, gamma=0.99, device='cpu',
                 seed=1, frame_stack=1, clip_reward=None, prioritized=False, alpha=0.6, beta=0.4,
                 beta_steps=100_000,  # calls to sample() over which beta rises linearly to 1
                 placement=None, memmap_folder=None):
        for key, value, ok, rule in [
                ('capacity', capacity, capacity >= 1, '>= 1'), ('batch_size', batch_size, batch_size >= 1, '>= 1'),
                ('nstep', nstep, nstep >= 1, '>= 1'), ('gamma', gamma, 0 <= gamma <= 1, 'in [0, 1]'),
                ('frame_stack', frame_stack, frame_stack >= 1, '>= 1'),
                ('clip_reward', clip_reward, clip_reward is None or clip_reward > 0, 'null or > 0'),
                ('alpha', alpha, alpha >= 0, '>= 0'), ('beta', beta, 0 <= beta <= 1, 'in [0, 1]'),
                ('beta_steps', beta_steps, beta_steps >= 1, '>= 1')]:
            if not ok:
                raise ValueError(f'replay.{key}={value!r} must be {rule}')
        if placement not in (None,) + PLACEMENTS:
            raise ValueError(f'replay.device={placement}: must be ram, pinned, cuda, memmap or null (by size)')
        if placement == 'cuda' and not torch.cuda.is_available():
            raise ValueError('replay.device=cuda: torch sees no GPU here; keep the replay in ram or memmap, or '
                             'give null to choose by size')
        if placement == 'pinned' and torch.device(device).type != 'cuda':
            warnings.warn(f'replay.device=pinned: batches go to the {torch.device(device).type}, not a GPU, so '
                          f'there is no copy to speed up: the frames stay in plain RAM')
            placement = 'ram'
        if frame_stack > 1 and (not obs_spec.shape or obs_spec.shape[0] % frame_stack):
            raise ValueError(f'replay.frame_stack={frame_stack} must divide the first axis of observations '
                             f'shaped {tuple(obs_spec.shape)} (frames stack on it)')
        arguments = locals()
        self.options = {key: arguments[key] for key in OPTIONS}
        self.obs_spec, self.action_spec, self.device = obs_spec, action_spec, device
        self.placement, self.memmap_folder = placement, memmap_folder  # placement: as asked, then as chosen
        self.capacity, self.batch_size, self.nstep, self.gamma = capacity, batch_size, nstep, gamma
        self.frame_stack, self.clip_reward = frame_stack, clip_reward
        self.prioritized, self.alpha, self.beta, self.beta_steps = prioritized, alpha, beta, beta_steps
        shape = tuple(obs_spec.shape)
        self.frame_shape = shape if frame_stack == 1 else (shape[0] // frame_stack,) + shape[1:]
        self.rng = np.random.default_rng(seed)
        self._back = np.arange(frame_stack)  # how far back a row's stack reaches: 0 .. frame_stack - 1
        self.pos, self.full = 0, False  # the row the next step goes in; whether the ring has wrapped
        self.size = 0                   # transitions that can be sampled
        self.samples = 0                # calls to sample(), which anneal beta
        self.max_priority = 1.0         # what new transitions get: the highest priority yet
        self.frame = None               # allocated on the first add, once the number of envs per step is known
        self._restart = False           # after load(), the world's episodes start afresh

    def _arrays(self):
        return {name: getattr(self, name) for name in ARRAYS + (('priority',) if self.prioritized else ())}

    def _allocate(self, num_envs, arrays=None):
        steps = self.capacity // num_envs
        if steps < max(self.nstep, self.frame_stack):
            raise ValueError(f'replay.capacity={self.capacity} keeps {steps} steps of each of {num_envs} envs, '
                             f'fewer than nstep={self.nstep} or frame_stack={self.frame_stack}')
        self.num_envs, self.rows = num_envs, steps + 1  # + the row ahead, holding the newest next_obs
        shape = (self.rows, num_envs)
        arrays = arrays or dict(
            action=np.zeros(shape + tuple(self.action_spec.shape), self.action_spec.numpy_dtype),
            reward=np.zeros(shape, np.float32), terminated=np.zeros(shape, bool), truncated=np.zeros(shape, bool),
            valid=np.zeros(shape, bool),  # a transition that can be sampled: written, not a reset row, not forgotten
            age=np.zeros(shape, np.int32))  # earlier frames of its episode in the row's stack, 0..frame_stack - 1
        for name in ARRAYS[1:]:
            setattr(self, name, arrays[name])
        if self.prioritized:  # |TD error| per transition; the tree holds them to the power alpha
            self.priority = arrays.get('priority', np.ones(shape, np.float32))
            self.tree = SumTree((self.priority ** self.alpha * self.valid).ravel())
        frames = np.prod(shape + self.frame_shape, dtype=np.int64) * self.obs_spec.numpy_dtype.itemsize
        need = int(frames) + sum(array.nbytes for array in self._arrays().values() if array is not None)
        available = psutil.virtual_memory().available
        if self.placement is None:
            self.placement = choose_placement(need, self.device, ram_free=available)
        self.frame = self._frames(shape + self.frame_shape, arrays.get('frame'))
        if need > available and self.placement in ('ram', 'pinned', 'memmap'):
            # numpy commits pages as they are written: in RAM the run would fail later, as the ring fills
            where = (f': its frames are memory-mapped from {self.memmap_folder or tempfile.gettempdir()}'
                     if self.placement == 'memmap' else '; replay.device=memmap keeps its frames on disk')
            warnings.warn(f'replay.capacity={self.capacity} needs {need / 1e9:.2f} GB, {available / 1e9:.2f} GB '
                          f'available{where}')

    def _frames(self, shape, saved=None):
        """The frames' array where self.placement says: zeros, or a copy of `saved` (the frames of a loaded replay,
        which in RAM stay the copy-on-write map they were loaded as)."""
        if self.placement == 'cuda':
            return (torch.zeros(shape, dtype=self.obs_spec.dtype, device=_gpu(self.device)) if saved is None
                    else torch.from_numpy(saved).to(_gpu(self.device)))
        if self.placement == 'ram':
            return np.zeros(shape, self.obs_spec.numpy_dtype) if saved is None else saved
        if self.placement == 'pinned':  # (the array keeps its page-locked tensor alive)
            frames = torch.zeros(shape, dtype=self.obs_spec.dtype, pin_memory=True).numpy()
        else:
            folder = Path(self.memmap_folder or tempfile.gettempdir())
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder) as file:  # the map holds the file open; no name, no leftovers
                frames = np.memmap(file, self.obs_spec.numpy_dtype, 'w+', shape=shape)
        if saved is not None:
            frames[...] = saved
        return frames

    def add(self, step):
        """Store one vector step: num_envs transitions, of which the world's reset steps are marked invalid."""
        if self.frame is None:
            self._allocate(len(step.reward))
        if self._restart:
            self._end_episodes()
        row = self.pos
        self._write(row, step.obs)
        self.action[row], self.reward[row] = step.action, step.reward
        self.terminated[row], self.truncated[row], self.valid[row] = step.terminated, step.truncated, step.valid
        self.size += int(np.count_nonzero(step.valid))
        if self.prioritized:
            self.priority[row] = self.max_priority
            self.tree[row * self.num_envs + np.arange(self.num_envs)] = self.priority[row] ** self.alpha * step.valid
        self._advance()
        # the row ahead: this step's next frame, the first of an episode after a reset step
        self._write(self.pos, step.next_obs)
        if self.frame_stack > 1:  # (single frames are all of age 0)
            self.age[self.pos] = np.where(step.valid, np.minimum(self.age[row] + 1, self.frame_stack - 1), 0)

    def _write(self, row, obs):
        """The newest frame of each env's observation into the row."""
        frame = np.asarray(obs) if self.frame_stack == 1 else np.asarray(obs)[:, -self.frame_shape[0]:]
        self.frame[row] = torch.from_numpy(np.ascontiguousarray(frame)).to(self.frame.device) \
            if self.placement == 'cuda' else frame

    def _gather(self, rows, env) -> torch.Tensor:
        """The frames at (rows, env), index arrays that broadcast to a shape S, as a tensor (*S, *frame_shape) on the
        run's device: gathered where they live, then copied (without blocking, from page-locked memory)."""
        shape = np.broadcast_shapes(rows.shape, env.shape)
        flat = (rows * self.num_envs + env).reshape(-1)
        if self.placement == 'cuda':
            frames = self.frame.view(-1, *self.frame_shape)[torch.from_numpy(flat).to(self.frame.device)]
        elif self.placement == 'pinned':
            frames = torch.empty((len(flat),) + self.frame_shape, dtype=self.obs_spec.dtype, pin_memory=True)
            np.take(self.frame.reshape(-1, *self.frame_shape), flat, axis=0, out=frames.numpy())
        else:
            frames = torch.from_numpy(self.frame.reshape(-1, *self.frame_shape)[flat])
        return frames.view(*shape, *self.frame_shape).to(self.device, non_blocking=True)

    def _advance(self):
        """Move to the next row and forget what it overwrites: its transitions, and those whose stacks reach back
        into it (row pos + j keeps j - 1 rows before it)."""
        self.pos = (self.pos + 1) % self.rows
        self.full = self.full or self.pos == 0
        if self.frame_stack == 1:  # no stacks: what the row held is all there is to forget
            rows, forget = self._back + self.pos, self.valid[self.pos:self.pos + 1]
        else:
            rows = (self.pos + self._back) % self.rows
            forget = self.valid[rows] & (self.age[rows] >= self._back[:, None])
        if not forget.any():  # the ring's first lap, or the row held a reset step
            return
        row, env = np.nonzero(forget)
        self.valid[rows[row], env] = False
        self.size -= len(row)
        if self.prioritized:
            self.tree[rows[row] * self.num_envs + env] = 0.0

    def _end_episodes(self):
        """After load() the world starts new episodes: the stored ones end as truncated (they had a future the
        replay never saw), and the row ahead, holding their last next_obs, becomes their reset row."""
        self._restart = False
        if self.pos or self.full:
            last = (self.pos - 1) % self.rows
            self.truncated[last] |= self.valid[last] & ~self.terminated[last]
            self._advance()
            self.age[self.pos] = 0

    def __len__(self):
        return self.size

    def sample(self):
        """A batch of n-step transitions; prioritized, with importance-sampling weights and the samples' indices.
        obs and next_obs may be views of one gathered tensor (with nstep 1 they share frames): read them, or
        reshape them, but do not write into them in place."""
        if self.size == 0:
            raise ValueError('replay is empty: sample() needs a stored transition (learn_after >= 1)')
        batch, filled = self.batch_size, (self.rows if self.full else self.pos) * self.num_envs
        if self.prioritized:  # stratified: one draw from each of batch_size equal slices of the total priority
            index = self.tree.find((np.arange(batch) + self.rng.random(batch)) * (self.tree.total / batch))
        else:
            index = self.rng.integers(filled, size=batch)
        redraw = ~self.valid.reshape(-1)[index]
        while redraw.any():  # reset rows (one per episode), forgotten rows, float rounding in the tree: rare
            index[redraw] = (self.tree.find(self.rng.random(redraw.sum()) * self.tree.total) if self.prioritized
                             else self.rng.integers(filled, size=redraw.sum()))
            redraw = ~self.valid.reshape(-1)[index]
        t, env = np.divmod(index, self.num_envs)
        reward, discount, last = self._returns(t, env)
        obs, next_obs = self._stacks(t, (last + 1) % self.rows, env)

        weight = None
        if self.prioritized:  # (N P(i)) ** -beta over its largest in the batch, beta annealed to 1 (Schaul et al.)
            beta = self.beta + (1 - self.beta) * min(self.samples / self.beta_steps, 1.0)
            weight = (self.size * self.tree[index] / self.tree.total) ** -beta
            weight = self._tensor((weight / weight.max()).astype(np.float32))
        self.samples += 1
        return Batch(obs=obs, action=self._tensor(self.action[t, env]), reward=self._tensor(reward.astype(np.float32)),
                     discount=self._tensor(discount.astype(np.float32)), next_obs=next_obs, weight=weight,
                     index=self._tensor(index) if self.prioritized else None)

    def _returns(self, t, env):
        """The n-step return from each sampled row, its discount, and the row of its last step."""
        if self.nstep == 1:
            reward, n = self._clipped(self.reward[t, env]), 1
        else:
            # the n rows from each sample, (B, n); row k counts if rows 0..k-1 did not end the episode and row k is
            # stored (the newest transition is at pos - 1; past it the ring holds older data, or nothing)
            k, e = np.arange(self.nstep), env[:, None]
            rows = (t[:, None] + k) % self.rows
            ended = self.terminated[rows, e] | self.truncated[rows, e]
            counts = ((np.cumsum(ended, axis=1) - ended) == 0) & (k <= ((self.pos - 1 - t) % self.rows)[:, None])
            reward = (self._clipped(self.reward[rows, e]) * self.gamma ** k * counts).sum(axis=1)
            n = counts.sum(axis=1)  # steps in each return, 1..nstep
        last = (t + n - 1) % self.rows
        discount = self.gamma ** n * ~self.terminated[last, env]  # 0 past a termination; bootstrap otherwise
        return reward, discount, last

    def _clipped(self, reward):
        """Mnih et al. 2015 clip each step's reward for learning; the logs keep the raw return."""
        return reward if self.clip_reward is None else np.clip(reward, -self.clip_reward, self.clip_reward)

    def _stacks(self, t, after, env):
        """The observations of rows t and after (the row past each return's last step), stacks rebuilt from the
        frame_stack rows ending at each, clamped at its episode's first row."""
        batch, stack = len(t), self.frame_stack
        if stack == 1:
            return (self._gather(rows, env) for rows in (t, after))
        back = self._back[::-1]  # oldest first
        rows = [(row[:, None] - np.minimum(back, self.age[row, env][:, None])) % self.rows for row in (t, after)]
        # both in one gather; with nstep 1, after = t + 1, whose stack is t's shifted by one row: one row more
        rows, shift = ((rows[0], rows[1][:, -1:]), 1) if self.nstep == 1 else (rows, stack)
        frames = self._gather(np.concatenate(rows, axis=1), env[:, None])  # (B, shift + stack, ...)
        return (frames[:, start:start + stack].reshape(batch, *self.obs_spec.shape) for start in (0, shift))

    def update_priorities(self, index, priority):
        """Set sampled transitions' priorities to their |TD error| (index from Batch.index); a transition forgotten
        since it was sampled keeps priority 0."""
        if not self.prioritized:
            raise ValueError('replay.prioritized=false: a uniform replay has no priorities to update')
        index = torch.as_tensor(index).cpu().numpy()
        priority = torch.as_tensor(priority).detach().abs().float().cpu().numpy() + 1e-6  # > 0: still sampled
        index, priority = index[self.valid.reshape(-1)[index]], priority[self.valid.reshape(-1)[index]]
        self.priority.reshape(-1)[index] = priority
        self.tree[index] = self.priority.reshape(-1)[index] ** self.alpha  # from the stored float32, as load() does
        self.max_priority = max(self.max_priority, float(priority.max(initial=0)))

    def _tensor(self, array):
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    def save(self, folder) -> dict:
        """Write the ring to folder, loadable at once (save_arrays, then commit). Returns the state written."""
        state = self.save_arrays(folder)
        self.commit(folder, state)
        return state

    def save_arrays(self, folder) -> dict:
        """Write the ring's arrays, one memory-mappable .npy each, into a fresh data folder inside folder, and
        return the state that names it (plain values: JSON and a weights_only checkpoint hold it). Nothing is
        loadable from it until commit(): a checkpoint that holds the state is written in between, so that the
        checkpoint and its replay are one unit, and a save killed midway leaves the previous pair whole."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        data = Path(tempfile.mkdtemp(prefix='data-', dir=folder))
        for name, array in (self._arrays().items() if self.frame is not None else ()):
            np.save(data / f'{name}.npy', array.cpu().numpy() if isinstance(array, torch.Tensor) else array)
        specs = {'obs_spec': self.obs_spec.plain(), 'action_spec': self.action_spec.plain()}
        return dict(data=data.name, **specs, options=self.options, num_envs=getattr(self, 'num_envs', None),
                    pos=self.pos, full=self.full, size=self.size, samples=self.samples, max_priority=self.max_priority,
                    rng=self.rng.bit_generator.state)

    @staticmethod
    def commit(folder, state: dict):
        """Make the arrays save_arrays() wrote the folder's replay (replay.json names them, swapped in by an atomic
        rename), and remove earlier saves and those killed while writing."""
        folder = Path(folder)
        temporary = folder / f'.replay.json.{os.getpid()}.tmp'
        temporary.write_text(json.dumps(state, indent=1))
        os.replace(temporary, folder / 'replay.json')
        for old in folder.glob('.replay.json.*.tmp'):  # left by saves killed before their rename
            old.unlink()
        for old in folder.glob('data-*'):  # earlier saves, and those killed while writing their arrays
            if old.name != state['data']:
                shutil.rmtree(old)

    @classmethod
    def load(cls, folder, state: dict = None, restart: bool = True, **options):
        """The replay save() wrote to folder, its arrays memory-mapped copy-on-write (the files never change), its
        frames copied to where options' placement puts them (in RAM they stay that map). state: the one
        save_arrays() returned (a checkpoint's), else the folder's replay.json. options (device, seed,
        batch_size, nstep, ...) replace the saved ones, except what the data fixes. restart: the world starts new
        episodes, so the stored ones end (a resumed run whose environments were saved mid-episode goes on with them
        instead, and draws its samples where it left off)."""
        folder = Path(folder)
        state = state if state is not None else json.loads((folder / 'replay.json').read_text())
        specs = {key: Spec.from_plain(state[key]) for key in ('obs_spec', 'action_spec')}
        fixed = {**{key: (spec.shape, spec.dtype) for key, spec in specs.items()},  # the bounds may differ
                 'capacity': state['options']['capacity'], 'frame_stack': state['options']['frame_stack']}
        for key, saved in fixed.items():
            given = options.get(key, saved)
            given = (tuple(given.shape), given.dtype) if isinstance(given, Spec) else given
            if given != saved:
                raise ValueError(f'replay.load: {folder} holds a replay with {key}={saved}, not {given}')
        replay = cls(**{**state['options'], **specs, **options})
        if state['num_envs'] is not None:
            replay._allocate(state['num_envs'], {path.stem: np.load(path, mmap_mode='c').view(np.ndarray)
                                                 for path in (folder / state['data']).glob('*.npy')})
        for key in ('pos', 'full', 'size', 'samples', 'max_priority'):
            setattr(replay, key, state[key])
        replay._restart = restart
        if not restart and 'rng' in state:
            replay.rng.bit_generator.state = state['rng']
        return replay
