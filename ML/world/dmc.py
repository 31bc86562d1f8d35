"""The DeepMind Control Suite (Tassa et al. 2018, dm_control) as a gymnasium.Env, seen as DrQ-v2 sees it
(Yarats et al. 2021; facebookresearch/drqv2 dmc.py): 84x84 renders, action repeat 2, a stack of 3 frames on the
channel axis, actions in [-1, 1]. `Env=DMC +env.task=walker_walk`; `env.pixels=false` gives the state instead.
"""
import contextlib
import os
from collections import deque

# MuJoCo picks its OpenGL backend when dm_control is first imported, so this comes before that import. EGL renders
# without a display: on a GPU, or on a CPU through Mesa's software driver (Debian: libegl1, libgl1-mesa-dri).
# A MUJOCO_GL the user set (osmesa, glfw) wins.
os.environ.setdefault('MUJOCO_GL', 'egl')

import gymnasium  # noqa: E402 (after MUJOCO_GL, above)
import numpy as np  # noqa: E402

# Mesa's software renderer (llvmpipe: EGL or OSMesa without a GPU) loads its LLVM into the process for all to see;
# triton, which torch imports with its compiler when the first optimizer is built, carries another LLVM and dies
# of a segmentation fault when it loads after Mesa's (seen with Mesa 22.3 and triton 3.8). Loaded first, both work.
with contextlib.suppress(ImportError):
    import triton  # noqa: E402, F401

try:
    from dm_control import suite as control_suite
    from dm_control.suite.wrappers import action_scale
except ModuleNotFoundError as error:
    raise ImportError(f'Env=DMC needs dm_control and mujoco: pip install "ML[dmc]" ({error})') from error
except (ImportError, AttributeError) as error:  # no renderer: PyOpenGL without MUJOCO_GL's library fails with
    # "'NoneType' object has no attribute 'eglQueryString'", EGL without a driver with "Cannot initialize ... display"
    raise ImportError(f'Env=DMC renders with MUJOCO_GL={os.environ["MUJOCO_GL"]}, which cannot start here: apt-get '
                      f'install libegl1 libgl1-mesa-dri, or libosmesa6 and MUJOCO_GL=osmesa ({error})') from error

from ML.errors import ConfigError, PathError, did_you_mean  # noqa: E402

# 'walker_walk' -> ('walker', 'walk'); a lookup, not a split, since domains (ball_in_cup, point_mass) and tasks
# (swingup_sparse) both hold underscores
TASKS = {f'{domain}_{task}': (domain, task) for domain, task in control_suite.ALL_TASKS}
VIDEO_SIZE = 256  # pixels a side of a rendered video, as drqv2's video.py records them


class DMC(gymnasium.Env):
    """One dm_control suite task. Episodes never terminate (the suite's tasks have no end state but LQR's); they
    are truncated after episode_length simulator steps, so a learner bootstraps through their last step."""
    suite = 'dmc'

    def __init__(self, task=None,
                 pixels=True,            # observe renders (uint8 frames); False: the state vector (float32)
                 size=84,                # render height and width (drqv2: 84)
                 camera=None,            # render camera; None: 2 for quadruped (zoomed in), else 0, as drqv2
                 action_repeat=2,        # simulator steps per action, their rewards summed (drqv2: 2)
                 frame_stack=None,       # observations stacked on the first axis; None: 3 for pixels (drqv2),
                                         # 1 for states (the state already holds the velocities)
                 episode_length=1000,    # simulator steps per episode (the suite's 1000)
                 render_mode=None):      # 'rgb_array' lets a video recorder render the scene (VIDEO_SIZE square)
        if task is None:
            raise ConfigError(f'env.task: DMC needs a task, e.g. Env=DMC +env.task=walker_walk '
                              f'(tasks: {", ".join(TASKS)})')
        if task not in TASKS:
            raise PathError(f'env.task={task}: not a DeepMind Control task{did_you_mean(task, TASKS)}')
        if render_mode not in (None, 'rgb_array'):
            raise ConfigError(f'env.render_mode={render_mode}: DMC renders rgb_array images, or nothing (null)')
        for key, value in [('size', size), ('action_repeat', action_repeat), ('frame_stack', frame_stack),
                           ('episode_length', episode_length)]:
            if value is not None and value < 1:
                raise ConfigError(f'env.{key}={value}: must be at least 1')
        domain, name = TASKS[task]
        self.task, self.pixels, self.size, self.action_repeat = task, pixels, size, action_repeat
        self.camera = camera if camera is not None else {'quadruped': 2}.get(domain, 0)
        self.frame_stack = frame_stack or (3 if pixels else 1)
        self.episode_length, self.render_mode = episode_length, render_mode

        # no time limit of dm_control's own: this env counts the steps and truncates, so that episode_length can
        # shorten or lengthen every task alike; the seed comes at reset
        env = control_suite.load(domain, name, task_kwargs={'time_limit': float('inf')})
        self._env = action_scale.Wrapper(env, minimum=-1.0, maximum=1.0)  # every task acts in [-1, 1]
        # a video plays at the speed of the simulation: one image per action of control_timestep * action_repeat
        self.metadata = {'render_modes': ['rgb_array'],
                         'render_fps': round(1 / (env.control_timestep() * action_repeat))}
        actions = self._env.action_spec()
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, actions.shape, np.float32)
        if pixels:
            self.observation_space = gymnasium.spaces.Box(0, 255, (3 * self.frame_stack, size, size), np.uint8)
        else:
            state = sum(int(np.prod(spec.shape)) for spec in self._env.observation_spec().values())
            self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (state * self.frame_stack,), np.float32)
        self._frames = deque(maxlen=self.frame_stack)  # oldest first: the newest frame is the last 3 channels
        self._steps = 0                                # simulator steps in this episode

    def _frame(self, time_step):
        if self.pixels:
            image = self._env.physics.render(height=self.size, width=self.size, camera_id=self.camera)
            return image.transpose(2, 0, 1).copy()  # (H, W, 3) -> (3, H, W), channels first as torch convolves
        return np.concatenate([np.asarray(value, np.float32).ravel() for value in time_step.observation.values()])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self._env.task.random.seed(seed)  # the task draws each episode's start state from this generator
        time_step = self._env.reset()
        self._steps = 0
        frame = self._frame(time_step)
        self._frames.extend([frame] * self.frame_stack)  # a new episode's stack starts as copies of its first frame
        return np.concatenate(self._frames), {}

    def step(self, action):
        reward = 0.0
        for _ in range(self.action_repeat):
            time_step = self._env.step(np.asarray(action, np.float64))
            reward += time_step.reward
            self._steps += 1
            if time_step.last() or self._steps >= self.episode_length:
                break
        # with no time limit, dm_control ends an episode only at a task's own end state (LQR reaching its goal)
        terminated = time_step.last()
        truncated = not terminated and self._steps >= self.episode_length
        self._frames.append(self._frame(time_step))
        return np.concatenate(self._frames), reward, terminated, truncated, {}

    def render(self):
        """The scene now, (VIDEO_SIZE, VIDEO_SIZE, 3) uint8, from the observations' camera."""
        return self._env.physics.render(height=VIDEO_SIZE, width=VIDEO_SIZE, camera_id=self.camera)

    def close(self):
        self._env.physics.free()  # the render context; dm_control otherwise frees it at interpreter exit, noisily
