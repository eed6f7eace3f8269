"""Environments: ALE games with the standard Atari preprocessing, and MiniPong.

Every environment made here has observations uint8 ``[4, S, S]`` (4 stacked grayscale frames, oldest first,
``S = frame_size``), and with ``object_masks=True`` puts ``info["object_masks"]`` (object name -> bool
``[S, S]`` for the newest frame) into every reset and step.

>>> env = make_env("MiniPong-v0", seed=0, object_masks=True)
>>> obs, info = env.reset()
>>> obs.shape, sorted(info["object_masks"])
((4, 84, 84), ['ball', 'enemy', 'player'])
"""

from __future__ import annotations

import difflib
from functools import cache, partial

import gymnasium as gym

from interp.envs.minipong import MiniPongConfig, MiniPongEnv, MiniPongVectorEnv
from interp.errors import EnvironmentOptionError, UserError

MINIPONG_VARIANTS = {
    "MiniPong-v0": "standard",
    "MiniPong-TwoBall-v0": "twoball",
    "MiniPong-Touch-v0": "touch",
}
MINIPONG_OPTIONS = ("points", "max_steps", "enemy_speed")
ATARI_OPTIONS = ("modifications", "noop_max", "repeat_action_probability", "full_action_space", "preprocessing")
# the games the toolkit is tested on; every other ALE id works the same way
TESTED_ATARI_GAMES = ("ALE/Pong-v5", "ALE/Breakout-v5", "ALE/Enduro-v5", "ALE/MsPacman-v5", "ALE/Seaquest-v5")


SET_BY_COMMANDS = {"frame_size": "--frame-size", "seed": "--seed", "object_masks": "the analyses themselves"}
"""environment options a command sets itself -> what sets them; given again as an option they would clash"""


def check_user_options(options: dict) -> dict:
    """Refuse the environment options a user gives that a command sets itself (:data:`SET_BY_COMMANDS`)."""
    clashing = sorted(set(options) & set(SET_BY_COMMANDS))
    if clashing:
        raise EnvironmentOptionError(f"environment option(s) {clashing} are not options: "
                                     + "; ".join(f"{name} is set by {SET_BY_COMMANDS[name]}" for name in clashing))
    return options


class UnknownEnvironmentError(UserError, ValueError):
    """An environment id that is neither MiniPong nor an ALE game."""


@cache
def ale_env_ids() -> tuple[str, ...]:
    """All ALE ids known to gymnasium (``ALE/<Game>-v5`` and the older ones)."""
    import ale_py

    gym.register_envs(ale_py)
    return tuple(sorted(i for i, spec in gym.registry.items() if "ale_py" in str(spec.entry_point)))


def env_ids() -> list[str]:
    """Every id :func:`make_env` accepts."""
    return [*MINIPONG_VARIANTS, *ale_env_ids()]


def is_minipong(env_id: str) -> bool:
    return env_id in MINIPONG_VARIANTS


def _check_env_id(env_id: str) -> None:
    if is_minipong(env_id) or env_id in ale_env_ids():
        return
    close = difflib.get_close_matches(env_id, env_ids(), n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownEnvironmentError(
        f"unknown environment {env_id!r}{hint} (MiniPong: {', '.join(MINIPONG_VARIANTS)}; ALE games: 'ALE/<Game>-v5')"
    )


def _check_options(env_id: str, options: dict) -> None:
    allowed = MINIPONG_OPTIONS if is_minipong(env_id) else ATARI_OPTIONS
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise EnvironmentOptionError(f"unknown option(s) {unknown} for {env_id}; allowed: {', '.join(allowed)}")


def _minipong_config(env_id: str, frame_size: int, options: dict) -> MiniPongConfig:
    numbers = {name: value for name, value in options.items() if name != "variant"}
    wrong = sorted(name for name, value in numbers.items() if not isinstance(value, int | float)
                   or isinstance(value, bool))
    if wrong:
        raise EnvironmentOptionError(f"{env_id}: option(s) {wrong} take numbers, got "
                                     f"{', '.join(repr(options[name]) for name in wrong)}")
    try:
        return MiniPongConfig(variant=MINIPONG_VARIANTS[env_id], frame_size=frame_size, **options)
    except ValueError as error:
        raise EnvironmentOptionError(f"{env_id}: {error}") from None


def make_env(
    env_id: str, *, seed: int | None = None, frame_size: int = 84, object_masks: bool = False, **options
) -> gym.Env:
    """Make one environment.

    Args:
        env_id: ``MiniPong-v0``, ``MiniPong-TwoBall-v0``, ``MiniPong-Touch-v0`` or an ALE id like ``ALE/Pong-v5``.
        seed: seeds the environment (its first reset is done with it) and its action space.
        frame_size: side of the square observation (84, or 42 as in the thesis' small setting).
        object_masks: add ``info["object_masks"]``; ground truth for MiniPong, OCAtari's RAM extraction for ALE.
        **options: MiniPong: ``points``, ``max_steps``, ``enemy_speed``. ALE: ``modifications`` (HackAtari names,
            e.g. ``["lazy_enemy"]``), ``noop_max`` (30), ``repeat_action_probability`` (0.0),
            ``full_action_space`` (False).

    Returns:
        a gymnasium.Env with observations uint8 ``[4, frame_size, frame_size]``.
    """
    _check_env_id(env_id)
    _check_options(env_id, options)
    if is_minipong(env_id):
        config = _minipong_config(env_id, frame_size, options)
        env = MiniPongEnv(config, object_masks=object_masks)
    else:
        from interp.envs.atari import make_atari_env

        env = make_atari_env(env_id, frame_size=frame_size, object_masks=object_masks, **options)
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


def make_vector_env(
    env_id: str, num_envs: int, *, seed: int | None = None, frame_size: int = 84, num_threads: int = 0, **options
) -> gym.vector.VectorEnv:
    """Make ``num_envs`` environments stepped as one batch, with next-step autoreset.

    Plain ALE games use ale-py's native vector env (the fastest option here, stepping games in ``num_threads`` C++
    threads; 0: one per core),
    MiniPong its own batch of games drawing into one buffer, and ALE games with HackAtari modifications
    gymnasium's SyncVectorEnv. No object masks: this is the training path. Observations are
    uint8 ``[num_envs, 4, frame_size, frame_size]``. Sub-environment ``i`` is seeded with ``seed + i``.
    """
    _check_env_id(env_id)
    _check_options(env_id, options)
    if is_minipong(env_id):
        config = _minipong_config(env_id, frame_size, options)
        envs = MiniPongVectorEnv(num_envs, config)
    elif not options.get("modifications") and options.get("preprocessing", "ale") == "ale":
        from interp.envs.atari import make_atari_vector_env

        options.pop("modifications", None)
        options.pop("preprocessing", None)
        envs = make_atari_vector_env(env_id, num_envs, frame_size=frame_size, num_threads=num_threads, **options)
    else:
        envs = gym.vector.SyncVectorEnv(
            [partial(make_env, env_id, frame_size=frame_size, **options) for _ in range(num_envs)]
        )
    if seed is not None:
        envs.reset(seed=seed)
        envs.action_space.seed(seed)
    return envs


__all__ = [
    "MINIPONG_VARIANTS",
    "TESTED_ATARI_GAMES",
    "EnvironmentOptionError",
    "UnknownEnvironmentError",
    "env_ids",
    "make_env",
    "make_vector_env",
]
