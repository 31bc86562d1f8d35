"""Atari 2600 games (ale-py, ROMs included), preprocessed to the field's standards through gymnasium's own wrappers.

Machado et al. (2018), "Revisiting the Arcade Learning Environment", JAIR 61: sticky actions, and only a game over
ends an episode. Mnih et al. (2015), "Human-level control through deep reinforcement learning", Methods: 4 frames
per action with the last two max-pooled, 84x84 grayscale, a stack of 4, up to 30 no-op starts. Rewards stay raw:
the learner clips them (replay.clip_reward), and evaluation reports raw and human-normalized returns.

    ML task=atari/pong        ML task=atari/base env.game=space_invaders        ML task=RL Env=Atari +env.game=pong
"""
import ale_py
import gymnasium
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

from ML.errors import ConfigError, PathError, did_you_mean


class Atari(gymnasium.Wrapper):
    """One game, preprocessed: observations (frame_stack, screen_size, screen_size) uint8, rewards unclipped."""
    suite = 'atari'  # GymWorld files the run under .../atari/<game>_<seed>

    def __init__(self,
                 game: str = None,                    # pong, breakout, space_invaders or SpaceInvaders: any ALE game
                 sticky_actions: float = 0.25,        # chance each frame repeats the previous action instead
                                                      # (ale-py's repeat_action_probability; Machado et al. 2018)
                 frame_skip: int = 4,                 # frames per action, rewards summed, the last two max-pooled
                                                      # as sprites flicker between frames (Mnih et al. 2015)
                 screen_size: int = 84,               # frames grayscaled and resized to screen_size^2 (Mnih et al.)
                 noop_max: int = 30,                  # episodes start after 1..noop_max no-op frames, so that
                                                      # starts vary (Mnih et al. 2015); 0: none
                 frame_stack: int = 4,                # frames per observation, so motion is visible (Mnih et al.)
                 full_action_space: bool = False,     # True: all 18 joystick actions; False: the game's own (DQN)
                 terminal_on_life_loss: bool = False,  # lives are per-game knowledge: game over alone ends an
                                                      # episode (Machado et al. 2018)
                 max_episode_frames: int = 108_000,   # 30 minutes at 60 Hz (27k steps), then truncated: ALE v5's
                                                      # cap, and the one the human scores below were taken under
                 render_mode: str = None):            # 'rgb_array' lets a video recorder render the game
        if game is None:
            raise ConfigError('env.game: Atari needs a game, e.g. env.game=pong')
        self.task = _canonical(game)      # 'space_invaders', whichever way the user spelled it
        self.frame_stack = frame_stack    # GymWorld reads it: observations hold this many frames
        self.action_repeat = frame_skip   # GymWorld reads it: a step is this many emulator frames (Machado's unit)
        # frameskip=1 in the emulator so that AtariPreprocessing does the skipping and can max-pool the last two frames;
        # stickiness then applies to each emulator frame, as Machado et al. (2018) define it
        # obs_type='grayscale': the emulator's own frames are read in grayscale, a third of the RGB copy per frame
        env = gymnasium.make(_ale_ids()[self.task], frameskip=1, repeat_action_probability=sticky_actions,
                             full_action_space=full_action_space, max_num_frames_per_episode=max_episode_frames,
                             obs_type='grayscale', render_mode=render_mode)
        env = AtariPreprocessing(env, noop_max=noop_max, frame_skip=frame_skip, screen_size=screen_size,
                                 terminal_on_life_loss=terminal_on_life_loss, grayscale_obs=True)
        # after a reset the stack holds copies of the first frame (padding_type='reset', as Baselines' FrameStack)
        super().__init__(FrameStackObservation(env, frame_stack))

    @property
    def human_normalized(self):
        """score -> (score - random) / (human - random): 0 plays like a uniformly random policy, 1 like a
        professional human tester. Only the 57 games of Atari-57 have published scores: for another game this
        attribute is missing (an AttributeError saying so), so GymWorld logs its raw returns alone."""
        if self.task not in RANDOM_AND_HUMAN:
            raise AttributeError(f'env.game={self.task}: no published random and human scores to normalize by; '
                                 f'the 57 games of Atari-57 have them (ML.world.atari.RANDOM_AND_HUMAN)')
        random, human = RANDOM_AND_HUMAN[self.task]
        return lambda score: (score - random) / (human - random)


def _ale_ids() -> dict:
    """Every game ale-py ships, snake_case -> its gymnasium id: {'space_invaders': 'ALE/SpaceInvaders-v5', ...}."""
    gymnasium.register_envs(ale_py)  # registers the ALE/ ids with gymnasium.make (and nothing else)
    v5 = {spec.name.lower(): spec.id for spec in gymnasium.registry.values()
          if spec.namespace == 'ALE' and spec.version == 5}
    return {rom: v5[rom.replace('_', '')] for rom in ale_py.roms.get_all_rom_ids() if rom.replace('_', '') in v5}


def _canonical(game: str) -> str:
    """'SpaceInvaders', 'space-invaders', 'space_invaders' -> 'space_invaders', or a PathError naming the closest."""
    games = _ale_ids()
    by_letters = {name.replace('_', ''): name for name in games}
    letters = str(game).replace('_', '').replace('-', '').lower()
    if letters not in by_letters:
        raise PathError(f'env.game={game}: not an Atari game ale-py {ale_py.__version__} ships'
                        f'{did_you_mean(game, games) or did_you_mean(letters, by_letters)}; '
                        'ale_py.roms.get_all_rom_ids() lists them')
    return by_letters[letters]


# Undiscounted episode returns of a uniformly random policy and of a professional human game tester on Atari-57,
# from episodes begun after 1..30 no-ops and capped at 108,000 frames: the table of Rainbow (Hessel et al. 2018) and
# Agent57 (Badia et al. 2020, appendix), as DeepMind's DQN Zoo ships it (dqn_zoo/atari_data.py). Mnih et al. 2015
# give older human scores for 49 of these games (Pong's is 9.3 there). Video Pinball's random and human scores are
# close together, so its normalized scores run large.
RANDOM_AND_HUMAN = {
    'alien': (227.8, 7127.7), 'amidar': (5.8, 1719.5), 'assault': (222.4, 742.0), 'asterix': (210.0, 8503.3),
    'asteroids': (719.1, 47388.7), 'atlantis': (12850.0, 29028.1), 'bank_heist': (14.2, 753.1),
    'battle_zone': (2360.0, 37187.5), 'beam_rider': (363.9, 16926.5), 'berzerk': (123.7, 2630.4),
    'bowling': (23.1, 160.7), 'boxing': (0.1, 12.1), 'breakout': (1.7, 30.5), 'centipede': (2090.9, 12017.0),
    'chopper_command': (811.0, 7387.8), 'crazy_climber': (10780.5, 35829.4), 'defender': (2874.5, 18688.9),
    'demon_attack': (152.1, 1971.0), 'double_dunk': (-18.6, -16.4), 'enduro': (0.0, 860.5),
    'fishing_derby': (-91.7, -38.7), 'freeway': (0.0, 29.6), 'frostbite': (65.2, 4334.7), 'gopher': (257.6, 2412.5),
    'gravitar': (173.0, 3351.4), 'hero': (1027.0, 30826.4), 'ice_hockey': (-11.2, 0.9), 'jamesbond': (29.0, 302.8),
    'kangaroo': (52.0, 3035.0), 'krull': (1598.0, 2665.5), 'kung_fu_master': (258.5, 22736.3),
    'montezuma_revenge': (0.0, 4753.3), 'ms_pacman': (307.3, 6951.6), 'name_this_game': (2292.3, 8049.0),
    'phoenix': (761.4, 7242.6), 'pitfall': (-229.4, 6463.7), 'pong': (-20.7, 14.6), 'private_eye': (24.9, 69571.3),
    'qbert': (163.9, 13455.0), 'riverraid': (1338.5, 17118.0), 'road_runner': (11.5, 7845.0),
    'robotank': (2.2, 11.9), 'seaquest': (68.4, 42054.7), 'skiing': (-17098.1, -4336.9),
    'solaris': (1236.3, 12326.7), 'space_invaders': (148.0, 1668.7), 'star_gunner': (664.0, 10250.0),
    'surround': (-10.0, 6.5), 'tennis': (-23.8, -8.3), 'time_pilot': (3568.0, 5229.2), 'tutankham': (11.4, 167.6),
    'up_n_down': (533.4, 11693.2), 'venture': (0.0, 1187.5), 'video_pinball': (16256.9, 17667.9),
    'wizard_of_wor': (563.5, 4756.5), 'yars_revenge': (3092.9, 54576.9), 'zaxxon': (32.5, 9173.3),
}
