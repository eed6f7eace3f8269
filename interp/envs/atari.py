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


def make_atari_env(
    env_id: str,
    *,
    frame_size: int = 84,
    object_masks: bool = False,
    modifications: list[str] | tuple[str, ...] = (),
    noop_max: int = 30,
    repeat_action_probability: float = 0.0,
    full_action_space: bool = False,
) -> gym.Env:
    """One ALE game: no-op reset, frame skip 4 with max-pooling, grayscale, resize, 4 stacked frames.

    Observations are uint8 ``[4, frame_size, frame_size]``, oldest first; ``env.render()`` gives the raw RGB
    ``[210, 160, 3]`` frame. Sticky actions are off by default (as in the thesis' NoFrameskip setting).
    """
    if modifications:
        base = _HackAtariFlags(_make_hackatari(env_id, list(modifications), repeat_action_probability,
                                               full_action_space))
    else:
        base = gym.make(env_id, frameskip=1, repeat_action_probability=repeat_action_probability,
                        full_action_space=full_action_space, render_mode="rgb_array")
    env = AtariPreprocessing(base, noop_max=noop_max, frame_skip=4, screen_size=frame_size)
    env = FrameStackObservation(env, 4)
    if object_masks:
        env = OCAtariObjectMasks(env, game_name(env_id), frame_size)
    return env


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
