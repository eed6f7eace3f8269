"""ALE games with the standard Atari preprocessing, OCAtari object masks and HackAtari modifications."""

from __future__ import annotations

import importlib
import re

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

from interp.envs.masks import boxes_to_masks
from interp.errors import EnvironmentOptionError

ALE_SCREEN = (210, 160)


def game_name(env_id: str) -> str:
    """``"ALE/MsPacman-v5"`` -> ``"MsPacman"``."""
    return env_id.split("/")[-1].split("-")[0]


PREPROCESSING = ("ale", "sb3", "deepmind", "cleanrl")
"""how frames become observations: ``ale`` (gymnasium's AtariPreprocessing: grayscale frames max-pooled), or as
another library's Atari wrappers make them, for agents trained there (:class:`LibraryFrames`)"""


def make_atari_env(
    env_id: str,
    *,
    frame_size: int = 84,
    object_masks: bool = False,
    modifications: list[str] | tuple[str, ...] = (),
    noop_max: int = 30,
    repeat_action_probability: float = 0.0,
    full_action_space: bool = False,
    preprocessing: str = "ale",
) -> gym.Env:
    """One ALE game: no-op reset, frame skip 4 with max-pooling, grayscale, resize, 4 stacked frames.

    Observations are uint8 ``[4, frame_size, frame_size]``, oldest first; ``env.render()`` gives the raw RGB
    ``[210, 160, 3]`` frame. Sticky actions are off by default (as in the thesis' NoFrameskip setting).
    ``preprocessing`` other than ``ale`` makes the observations another library's (:data:`PREPROCESSING`).
    """
    if preprocessing not in PREPROCESSING:
        raise EnvironmentOptionError(f"preprocessing must be one of {', '.join(PREPROCESSING)}, not "
                                     f"{preprocessing!r}")
    if modifications:
        base = _HackAtariFlags(_make_hackatari(env_id, list(modifications), repeat_action_probability,
                                               full_action_space))
    else:
        base = gym.make(env_id, frameskip=1, repeat_action_probability=repeat_action_probability,
                        full_action_space=full_action_space, render_mode="rgb_array")
    if preprocessing == "ale":
        env = FrameStackObservation(AtariPreprocessing(base, noop_max=noop_max, frame_skip=4,
                                                       screen_size=frame_size), 4)
    else:
        env = LibraryFrames(base, preprocessing, frame_size, noop_max)
    if object_masks:
        env = OCAtariObjectMasks(env, game_name(env_id), frame_size)
    return env


class LibraryFrames(gym.Wrapper):
    """Observations as Stable-Baselines3 (``sb3``: ``AtariWrapper`` and ``VecFrameStack``), OpenAI Baselines' and
    TorchBeast's ``wrap_deepmind`` (``deepmind``) or CleanRL's ``ppo_atari`` (``cleanrl``) make them, written from
    their documented steps:

    - reset: 1 to ``noop_max`` no-ops, their number drawn from the game's own random generator; then, in a game with
      FIRE, the actions FIRE and 2, each as a 4-frame step (the libraries' ``FireResetEnv``);
    - step: the action repeated 4 times, rewards summed, and the RGB maximum of the last two frames (these libraries
      max-pool colour frames, gymnasium's AtariPreprocessing grayscale ones: at the edges of moving objects up to
      16 grey levels apart);
    - the frame: grayscale (ITU-R 601 luma, as cv2) then area-resized, or, for ``cleanrl``, resized then grayscale;
    - the stack of 4, oldest first, starts with zeros (``sb3``'s ``VecFrameStack``) or with copies of the first
      frame (``deepmind``, ``cleanrl``).

    Not reproduced: losing a life ending an episode (``EpisodicLifeEnv``, a training device; Pong has no lives) and
    reward clipping (the trainer's choice).
    """

    def __init__(self, env: gym.Env, library: str, frame_size: int, noop_max: int = 30):
        super().__init__(env)
        self.library, self.frame_size, self.noop_max = library, frame_size, noop_max
        self.fire = env.unwrapped.get_action_meanings()[1:2] == ["FIRE"] and env.action_space.n >= 3
        self.observation_space = gym.spaces.Box(0, 255, (4, frame_size, frame_size), np.uint8)
        self.stack: list[np.ndarray] = []

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        rgb, info = self._noop_reset(seed=seed, options=options)
        for action in ((1, 2) if self.fire else ()):
            rgb, _, terminated, truncated, info = self._skip(action)
            if terminated or truncated:
                rgb, info = self._noop_reset()
        frame = self._frame(rgb)
        self.stack = [np.zeros_like(frame) if self.library == "sb3" else frame] * 3 + [frame]
        return np.stack(self.stack), info

    def step(self, action):
        rgb, reward, terminated, truncated, info = self._skip(action)
        self.stack = [*self.stack[1:], self._frame(rgb)]
        return np.stack(self.stack), reward, terminated, truncated, info

    def _noop_reset(self, **kwargs):
        rgb, info = self.env.reset(**kwargs)
        for _ in range(int(self.env.unwrapped.np_random.integers(1, self.noop_max + 1)) if self.noop_max else 0):
            rgb, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                rgb, info = self.env.reset()
        return rgb, info

    def _skip(self, action):
        total, frames = 0.0, []
        for _ in range(4):
            rgb, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            frames = [*frames[-1:], rgb]
            if terminated or truncated:
                break
        return np.maximum.reduce(frames), total, terminated, truncated, info

    def _frame(self, rgb: np.ndarray) -> np.ndarray:
        import cv2

        size = (self.frame_size, self.frame_size)
        if self.library == "cleanrl":
            return cv2.cvtColor(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
        return cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), size, interpolation=cv2.INTER_AREA)


def make_atari_vector_env(
    env_id: str,
    num_envs: int,
    *,
    frame_size: int = 84,
    noop_max: int = 30,
    repeat_action_probability: float = 0.0,
    full_action_space: bool = False,
    num_threads: int = 0,
) -> gym.vector.VectorEnv:
    """ale-py's native vector env with the same preprocessing as :func:`make_atari_env` (next-step autoreset).

    Rewards are not clipped here: clipping is the trainer's choice.
    """
    from ale_py.vector_env import AtariVectorEnv

    game = gym.spec(env_id).kwargs["game"]
    return AtariVectorEnv(
        game, num_envs, img_height=frame_size, img_width=frame_size, stack_num=4, frameskip=4, maxpool=True,
        grayscale=True, noop_max=noop_max, repeat_action_probability=repeat_action_probability,
        full_action_space=full_action_space, reward_clipping=False, use_fire_reset=False, episodic_life=False,
        num_threads=num_threads,
    )


def hackatari_modifications(game: str) -> list[str]:
    """Names of the HackAtari modifications available for a game (empty if HackAtari has none)."""
    try:
        module = importlib.import_module(f"hackatari.games.{game.lower()}")
    except ModuleNotFoundError:
        return []
    return sorted(name for name in dir(module.GameModifications) if not name.startswith("_"))


def _make_hackatari(env_id: str, modifications: list[str], repeat_action_probability: float,
                    full_action_space: bool) -> gym.Env:
    game = game_name(env_id)
    available = hackatari_modifications(game)
    unknown = sorted(set(modifications) - set(available))
    if unknown:  # HackAtari itself silently ignores names it does not know
        raise EnvironmentOptionError(f"unknown HackAtari modification(s) {unknown} for {game}; available: "
                                     f"{available or 'none'}")
    from hackatari import HackAtari

    # frameskip=1: AtariPreprocessing skips frames (with max-pooling) around it, so the modifications that
    # HackAtari applies before every emulated frame still run at every frame.
    env = HackAtari(env_id, modifs=modifications, mode="ram", obs_mode="ori", frameskip=1,
                    repeat_action_probability=repeat_action_probability, full_action_space=full_action_space,
                    render_mode="rgb_array")
    env.ale = env._ale  # AtariPreprocessing reads `unwrapped.ale`
    return env


class _HackAtariFlags(gym.Wrapper):
    """Restores gymnasium's (terminated, truncated) order, which OCAtari/HackAtari's step() returns swapped,
    and seeds the random no-op count that AtariPreprocessing draws from ``unwrapped.np_random``
    (OCAtari's reset does not seed it)."""

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.env.unwrapped.np_random = np.random.default_rng(seed)
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        obs, reward, truncated, terminated, info = self.env.step(action)
        return obs, reward, terminated, truncated, info

    def render(self):
        return self.env.unwrapped.getScreenRGB()


class OCAtariObjectMasks(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Adds ``info["object_masks"]``: object name -> bool ``[S, S]`` for the newest frame.

    Object boxes come from OCAtari's RAM extraction, in 210x160 screen coordinates, and are mapped onto the
    resized frame with :func:`interp.envs.masks.box_to_mask`. Names are OCAtari's categories in snake case
    (Pong: ``player``, ``ball``, ``enemy``), numbered when a game has several of a kind (``ghost1``,
    ``ghost2``, ... in order of OCAtari's object list). An absent object has an empty mask.
    """

    def __init__(self, env: gym.Env, game: str, frame_size: int):
        gym.utils.RecordConstructorArgs.__init__(self, game=game, frame_size=frame_size)
        gym.Wrapper.__init__(self, env)
        from ocatari.core import AVAILABLE_GAMES
        from ocatari.ram import extract_ram_info

        if game not in AVAILABLE_GAMES:
            raise ValueError(f"OCAtari has no object extraction for {game}; it covers {', '.join(AVAILABLE_GAMES)}")
        importlib.import_module(f"ocatari.ram.{game.lower()}")  # extract_ram_info looks the game up in sys.modules
        self._extract = extract_ram_info
        self.game = game
        self.frame_size = frame_size
        counts = extract_ram_info.get_max_objects(game, False)
        self.object_names = [_name(category, i, n) for category, n in counts.items() for i in range(n)]
        self._max_count = counts
        self._objects: list = []

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._objects = self._extract.init_objects(self.game, False)
        return obs, self._add_masks(info)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, self._add_masks(info)

    def object_boxes(self) -> dict[str, tuple[int, int, int, int] | None]:
        """Boxes ``(x, y, w, h)`` in 210x160 screen coordinates from the current RAM; None when absent."""
        self._extract.detect_objects_ram(self._objects, self.env.unwrapped.ale.getRAM(), self.game, False)
        boxes: dict[str, tuple[int, int, int, int] | None] = dict.fromkeys(self.object_names)
        seen: dict[str, int] = {}
        for obj in self._objects:
            if not obj or obj.category not in self._max_count:
                continue
            index = seen.get(obj.category, 0)
            seen[obj.category] = index + 1
            if index < self._max_count[obj.category]:
                boxes[_name(obj.category, index, self._max_count[obj.category])] = tuple(int(v) for v in obj.xywh)
        return boxes

    def _add_masks(self, info: dict) -> dict:
        info = dict(info)
        info["object_masks"] = boxes_to_masks(self.object_boxes(), ALE_SCREEN, self.frame_size)
        return info


def _name(category: str, index: int, count: int) -> str:
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", category).lower()
    return snake if count == 1 else f"{snake}{index + 1}"
