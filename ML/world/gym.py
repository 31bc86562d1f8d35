"""Gymnasium environments as a world the loop can step: a vector of training envs, and one env for evaluation."""
import importlib
import pickle
from typing import NamedTuple

import gymnasium
import numpy as np
import torch
from gymnasium.envs.registration import parse_env_id
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from ML import distributed
from ML.errors import ConfigError, PathError, did_you_mean
from ML.specs import Spec


class Step(NamedTuple):
    """One vector step of all envs: numpy arrays with a leading dim of num_envs."""
    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray   # the episode ended for good: do not bootstrap from next_obs
    truncated: np.ndarray    # cut by a time limit: next_obs is real, bootstrap from it
    episode_returns: list    # undiscounted, unclipped returns of the episodes that finished on this step
    valid: np.ndarray        # False on an env's reset step (see GymWorld.step): that row is not a transition


# The package that registers a namespace's ids, and the extra that installs it; another namespace is tried as the
# package of its lowercased name (MiniGrid -> minigrid).
NAMESPACES = {'ALE': ('ale_py', 'atari')}


def register_namespace(env_id: str):
    """Registers the ids of env_id's namespace (ALE/Pong-v5 -> ALE) by importing the package that defines them and
    handing it to gymnasium.register_envs, as ale-py asks; gymnasium.make imports `module:Env-v0` ids' module
    itself, by the same rule. Does nothing for an id already registered or one without a namespace."""
    if env_id in gymnasium.registry:
        return
    try:
        namespace = parse_env_id(env_id.split(':')[-1])[0]
    except gymnasium.error.Error:  # not an id: a path to a class, which the launcher resolves
        return
    if namespace is None:
        return
    package, extra = NAMESPACES.get(namespace, (namespace.lower(), None))
    try:
        module = importlib.import_module(package)
    except ImportError as error:
        if extra is None:  # not a namespace anything installed registers: gymnasium's own error names the id
            return
        raise ConfigError(f"Env={env_id}: the {namespace} namespace comes with {package}, which is not installed "
                          f"(pip install 'ML[{extra}]')") from error
    gymnasium.register_envs(module)


class GymWorld:
    """A registered gymnasium id ('CartPole-v1') or a class / callable that builds a gymnasium.Env."""
    online = True

    def __init__(self, env, num_envs=1, eval_episodes=10, seed=1, device='cpu', video=False, process=0, processes=1,
                 **env_kwargs):
        """video: render the evaluation env, so that the first episode of each evaluation is recorded (an mp4 named
        by the loop step) to video_folder, which the launcher sets once the run's folder is known.

        process of processes: which of the run's processes steps these envs (0 of 1 alone). Process p's training
        envs take the seeds seed + p * num_envs + i, so process 0's are a run of one process's; it plays its share
        of the eval_episodes (evaluate), from seed + processes * num_envs + p (seed + num_envs alone)."""
        if isinstance(env, gymnasium.Env):
            raise ConfigError(f'env={env!r} is an instance; give its id, class or a function that builds it '
                              f'(the world builds num_envs={num_envs} copies and one more to evaluate)')
        self.name = env if isinstance(env, str) else getattr(env, '__name__', type(env).__name__)
        self.num_envs, self.eval_episodes, self.seed, self.device = num_envs, eval_episodes, seed, device
        self.process, self.processes = process, processes

        def make(**render):
            if not isinstance(env, str):
                return _unit_actions(env(**env_kwargs, **render))
            register_namespace(env)
            try:
                return _unit_actions(gymnasium.make(env, **env_kwargs, **render))
            except (gymnasium.error.UnregisteredEnv, gymnasium.error.DeprecatedEnv) as e:
                raise PathError(f'Env={env!r} is not a registered gymnasium id'
                                f'{did_you_mean(env, gymnasium.registry)}') from e
            except gymnasium.error.DependencyNotInstalled as e:  # Box2D, MuJoCo, ...: gymnasium names the install
                extra = " (for Box2D: pip install 'ML[box2d]')" if 'box2d' in str(e).lower() else ''
                raise ConfigError(f'Env={env!r}: {str(e).strip().splitlines()[0]}{extra}') from e

        self.eval_env = make(**({'render_mode': 'rgb_array'} if video else {}))
        self.video_folder, self._recorder = None, None
        if not isinstance(self.eval_env, gymnasium.Env):
            raise ConfigError(f'env={self.name!r} built a {type(self.eval_env).__name__}, not a gymnasium.Env')
        # Gymnasium >= 1.0 resets an ended sub-env on the *next* call to step (NEXT_STEP, the default): that call
        # ignores the action and returns the new episode's first observation with reward 0, so the row pairs the
        # old episode's last obs with the new one's first and is not a transition (step marks it invalid).
        # https://farama.org/Vector-Autoreset-Mode, https://gymnasium.farama.org/main/api/vector/autoreset/
        self.envs = SyncVectorEnv([make] * num_envs, autoreset_mode=AutoresetMode.NEXT_STEP)

        # a suite of environments (Atari, DMC) names itself, its task, and how many frames each observation stacks
        self.suite = _attribute(self.eval_env, 'suite', 'gym')
        self.name = _attribute(self.eval_env, 'task', self.name)
        self.frame_stack = _attribute(self.eval_env, 'frame_stack', 1)
        self.action_repeat = _attribute(self.eval_env, 'action_repeat', 1)  # frames per step: Atari 4, DMC 2
        self.obs_spec, self._obs_dtype = _obs_spec(self.envs.single_observation_space)
        self.action_spec, self._action_start = _action_spec(self.envs.single_action_space)
        self._obs, _ = self.envs.reset(seed=seed + process * num_envs)  # sub-env i gets that + i
        self._resetting = np.zeros(num_envs, bool)  # which envs' next step is a reset step
        self._returns = np.zeros(num_envs)           # return so far of each env's running episode
        # what a reset step stores as its action, which the env ignores
        self._idle_action = np.zeros((num_envs, *self.action_spec.shape), self.action_spec.numpy_dtype)

    def _tensor(self, obs):
        return torch.from_numpy(np.asarray(obs, self._obs_dtype)).to(self.device)

    def step(self, agent, counters):
        """Act with the exploring policy in every env and return what happened."""
        if self._resetting.all():  # every env resets this step and ignores its action: no need to ask the agent
            action = self._idle_action
        else:
            action = agent.act(self._tensor(self._obs), counters).cpu().numpy()
        next_obs, reward, terminated, truncated, _ = self.envs.step(
            action + self._action_start if self._action_start else action)
        self._returns += reward  # a reset step's reward is 0
        ended, finished = terminated | truncated, []
        if ended.any():
            finished = self._returns[ended].tolist()
            self._returns[ended] = 0
        step = Step(self._obs, action, reward, next_obs, terminated, truncated, episode_returns=finished,
                    valid=~self._resetting)
        self._obs, self._resetting = next_obs, ended
        return step

    def evaluate(self, agent, counters):
        """Run eval_episodes separate episodes with the greedy policy on the eval env: {'return': their mean,
        'return_std', 'episodes'}. Several processes share them out (process p plays eval_episodes // processes,
        one more for p < eval_episodes % processes) and every process returns the statistics of all of them."""
        returns = []
        # the same seed every evaluation, so successive evaluations face the same start states; past the training
        # envs' seeds (seed + processes * num_envs - 1 the last), and apart for each process
        obs, _ = self.eval_env.reset(seed=self.seed + self.processes * self.num_envs + self.process)
        if self.video_folder is not None and self._recorder is None:  # gymnasium's own recorder, started below
            self.eval_env = self._recorder = gymnasium.wrappers.RecordVideo(
                self.eval_env, str(self.video_folder), episode_trigger=lambda episode: False)
        recorder = self._recorder
        share = self.eval_episodes // self.processes + (self.process < self.eval_episodes % self.processes)
        for episode in range(share):
            if recorder is not None and episode == 0:
                recorder.start_recording(f'step-{counters.step}')
            total, done = 0.0, False
            while not done:
                action = agent.act(self._tensor(obs[None]), counters, greedy=True)[0].cpu().numpy()
                obs, reward, terminated, truncated, _ = self.eval_env.step(action + self._action_start)
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
            if recorder is not None and episode == 0:
                recorder.stop_recording()
            obs, _ = self.eval_env.reset()
        returns = distributed.gather(returns) if self.processes > 1 else returns
        result = {'return': float(np.mean(returns)), 'return_std': float(np.std(returns)), 'episodes': len(returns)}
        normalize = _attribute(self.eval_env, 'human_normalized', None)
        if normalize is not None:  # Atari: (return - random) / (human - random)
            result['human_normalized'] = float(normalize(result['return']))
        return result

    def state_dict(self) -> dict:
        """Where every training env is, for a checkpoint: the environments themselves, pickled (their simulator
        state, time limit and random generator; None for one that cannot be pickled, e.g. a MuJoCo renderer), which
        of them reset on their next step, the observations the agent acts on next, and the returns so far."""
        try:
            envs = pickle.dumps(self.envs.envs)
        except Exception:  # pickling an arbitrary env can fail in many ways; the run then restarts its episodes
            envs = None
        return {'envs': envs, 'autoreset': torch.from_numpy(self.envs._autoreset_envs.copy()),
                'obs': torch.from_numpy(np.array(self._obs)), 'resetting': torch.from_numpy(self._resetting.copy()),
                'returns': torch.from_numpy(self._returns.copy())}

    def load_state_dict(self, state: dict) -> bool:
        """Puts the training envs back where state_dict() found them; returns False (and leaves them on fresh
        episodes) when they were not saved, or were saved with another number of envs."""
        if state.get('envs') is None or len(state['resetting']) != self.num_envs:
            return False
        envs = pickle.loads(state['envs'])  # the user's own environments, from the user's own checkpoint
        for old in self.envs.envs:
            old.close()
        self.envs.envs = envs
        self.envs._autoreset_envs = state['autoreset'].numpy().copy()
        self._obs = state['obs'].numpy().copy()
        self._resetting, self._returns = state['resetting'].numpy().copy(), state['returns'].numpy().copy()
        return True

    def close(self):
        self.envs.close()
        self.eval_env.close()


def _unit_actions(env):
    """An env whose Box actions have other finite bounds (Pendulum's [-2, 2]) rescaled to [-1, 1] by gymnasium's
    RescaleAction: agents act in one range (tanh-squashed, as stable-baselines3's policies do too)."""
    space = getattr(env, 'action_space', None)
    if not (isinstance(env, gymnasium.Env) and isinstance(space, gymnasium.spaces.Box)):
        return env
    finite = np.isfinite(space.low).all() and np.isfinite(space.high).all()
    if finite and ((space.low != -1).any() or (space.high != 1).any()):
        return gymnasium.wrappers.RescaleAction(env, -1.0, 1.0)
    return env


def _attribute(env, name, default):
    """An attribute of the env or of any wrapper inside it (gymnasium >= 1.0 wrappers no longer forward them)."""
    try:
        return env.get_wrapper_attr(name)
    except AttributeError:
        return default


def _obs_spec(space):
    """The spec of one observation, and the numpy dtype observations are handed over in."""
    if not isinstance(space, gymnasium.spaces.Box):
        raise ConfigError(f'observation space {space} is not supported; the world reads Box observations')
    # networks run in float32, and hand-written envs often declare float64 Boxes: cast those once, here
    dtype = np.float32 if np.issubdtype(space.dtype, np.floating) else space.dtype
    return Spec(tuple(space.shape), torch.from_numpy(np.empty(0, dtype)).dtype), dtype


def _action_spec(space):
    """The spec the agent acts in, and the offset the env expects: a Discrete(n, start) agent picks 0..n-1."""
    if isinstance(space, gymnasium.spaces.Discrete):
        return Spec((), torch.int64, discrete=True, low=0, high=int(space.n) - 1), int(space.start)
    if isinstance(space, gymnasium.spaces.Box):
        lows, highs = np.unique(space.low), np.unique(space.high)
        if len(lows) > 1 or len(highs) > 1:
            raise ConfigError(f'action bounds {space.low}..{space.high} differ per dimension and are not all '
                              'finite; give the env finite bounds (the world rescales them to [-1, 1])')
        low, high = (float(b[0]) if np.isfinite(b[0]) else None for b in (lows, highs))
        return Spec(tuple(space.shape), torch.float32, low=low, high=high), 0
    raise ConfigError(f'action space {space} is not supported; the world acts in Discrete or Box spaces')
