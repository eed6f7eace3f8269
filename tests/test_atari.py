"""ALE games through the factory: preprocessing, OCAtari object masks, HackAtari, the native vector env."""

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from scipy import ndimage

from analyses.evalset import build_evalset
from interp.agents import make_agent
from interp.envs import TESTED_ATARI_GAMES, UnknownEnvironmentError, make_env, make_vector_env

PONG_BACKGROUND = 87  # grayscale of Pong's brown field
# between the walls and below the score; OCAtari reports the ball absent once it is past a paddle, so the
# columns stop at the paddles' outer edges
PLAYFIELD = np.s_[14:77, 6:80]


def test_env_checker_passes_for_the_ale_wrapper():
    check_env(make_env("ALE/Pong-v5", object_masks=True), skip_render_check=False)


@pytest.mark.parametrize("env_id", TESTED_ATARI_GAMES)
def test_observation_format_and_raw_frame(env_id):
    env = make_env(env_id, seed=0, object_masks=True)
    obs, info = env.reset()
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert env.render().shape == (210, 160, 3)
    assert info["object_masks"] and all(m.shape == (84, 84) and m.dtype == bool
                                         for m in info["object_masks"].values())


def test_42x42_option():
    env = make_env("ALE/Pong-v5", seed=0, frame_size=42, object_masks=True)
    obs, info = env.reset()
    assert obs.shape == (4, 42, 42) and info["object_masks"]["player"].shape == (42, 42)


def test_an_evaluation_set_is_played_at_the_agents_frame_size():
    agent = make_agent("baseline", (4, 42, 42), 6)
    evalset = build_evalset(agent, "ALE/Pong-v5", frames=2, context=2, progress=False)
    assert evalset.obs.shape[1:] == (4, 42, 42) and evalset.masks["ball"].shape[1:] == (42, 42)


def test_pong_masks_sit_on_the_objects_bright_pixels(rng):
    env = make_env("ALE/Pong-v5", seed=1, object_masks=True)
    env.reset()
    checked = {"ball": 0, "player": 0, "enemy": 0}
    for step in range(400):
        obs, _, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
        newest, masks = obs[-1].astype(int), info["object_masks"]
        field = np.zeros_like(newest, dtype=bool)
        field[PLAYFIELD] = True
        differs = np.abs(newest - PONG_BACKGROUND) > 25
        bright = differs & field
        for name, mask in masks.items():
            if not mask.any():
                continue
            # the mask marks something that differs from the background...
            assert differs[mask].any(), (name, step)
            checked[name] += 1
        # ...and every object pixel on the field is in a mask; the newest frame is max-pooled with the frame
        # before, so a moving object may also show where it was one emulator frame earlier (up to 2 pixels away)
        union = np.logical_or.reduce([ndimage.binary_dilation(m, np.ones((3, 3)), 2) for m in masks.values()])
        assert not (bright & ~union).any(), step
        if terminated or truncated:
            env.reset()
    assert min(checked.values()) > 100, checked


def test_ball_mask_holds_the_ball_brightest_pixel():
    env = make_env("ALE/Pong-v5", seed=2, object_masks=True)
    env.reset()
    checked = 0
    for _ in range(300):
        obs, *_, info = env.step(0)
        masks = info["object_masks"]
        interior = np.zeros((84, 84), dtype=bool)
        interior[PLAYFIELD] = True
        for paddle in ("player", "enemy"):
            interior &= ~ndimage.binary_dilation(masks[paddle], np.ones((3, 3)), 2)
        ball = masks["ball"]
        if not ball.any() or not interior[ball].all():
            continue  # absent, or touching a wall or a paddle
        field = np.where(interior, obs[-1].astype(int), 0)
        assert field.max() > PONG_BACKGROUND + 40  # the ball is near white, blended by the resize
        brightest = np.unravel_index(field.argmax(), field.shape)
        assert ndimage.binary_dilation(ball)[brightest]
        checked += 1
    assert checked > 50


def test_same_seed_same_observations():
    runs = []
    for _ in range(2):
        env = make_env("ALE/Pong-v5", seed=5)
        frames = [env.reset(seed=5)[0]] + [env.step(a)[0] for a in [0, 2, 3, 2, 2, 3, 0, 1] * 10]
        runs.append(np.stack(frames))
    assert np.array_equal(runs[0], runs[1])


def test_hackatari_modification_through_the_factory():
    env = make_env("ALE/Pong-v5", seed=0, object_masks=True, modifications=["lazy_enemy"])
    obs, info = env.reset()
    assert obs.shape == (4, 84, 84) and set(info["object_masks"]) == {"player", "ball", "enemy"}
    # terminated/truncated come back in gymnasium's order (OCAtari swaps them): an ALE game truncated by the
    # frame limit must say truncated, not terminated
    limited = make_env("ALE/Pong-v5", seed=0, modifications=["lazy_enemy"])
    limited.unwrapped._env.unwrapped._max_num_frames_per_episode = 200
    limited.unwrapped._env.unwrapped.ale.setInt("max_num_frames_per_episode", 200)
    limited.reset(seed=0)
    for _ in range(100):
        _, _, terminated, truncated, _ = limited.step(0)
        if terminated or truncated:
            break
    assert truncated and not terminated


def test_unknown_modification_is_an_error():
    with pytest.raises(ValueError, match="lazy_enemy"):
        make_env("ALE/Pong-v5", modifications=["lazy_enmy"])


def test_unknown_env_id_names_close_matches():
    with pytest.raises(UnknownEnvironmentError, match="ALE/Pong-v5"):
        make_env("ALE/Pongg-v5")
    with pytest.raises(UnknownEnvironmentError, match="MiniPong-v0"):
        make_env("MiniPong-v1")


def test_native_vector_env_is_seeded_and_batched():
    runs = []
    for _ in range(2):
        envs = make_vector_env("ALE/Pong-v5", 2, seed=3)
        obs, _ = envs.reset(seed=3)
        frames = [obs] + [envs.step(np.array([2, 3]))[0] for _ in range(20)]
        runs.append(np.stack(frames))
        envs.close()
    assert runs[0].shape == (21, 2, 4, 84, 84) and runs[0].dtype == np.uint8
    assert np.array_equal(runs[0], runs[1])
