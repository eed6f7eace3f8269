"""MiniPong: gymnasium compliance, determinism, exact masks, difficulty, the three variations, the probe."""

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from interp.envs import MINIPONG_VARIANTS, make_env, make_vector_env
from interp.envs.minipong import PADDLE_H, SHADE
from interp.probe import dual_ball_probe


def play(env, policy, episodes, seed=0):
    returns = []
    for episode in range(episodes):
        obs, info = env.reset(seed=seed + episode)
        done, total = False, 0.0
        while not done:
            obs, reward, terminated, truncated, info = env.step(policy(env, obs))
            total += reward
            done = terminated or truncated
        returns.append(total)
    return np.array(returns)


def random_policy(rng):
    return lambda env, obs: int(rng.integers(3))


def follow(ball_name, aim=0.0):
    """Scripted: move the paddle centre to the named ball, ``aim`` pixels off centre to return at an angle."""

    def policy(env, obs):
        game = env.unwrapped.game
        ball = game.balls[ball_name]
        target = ball.y + 1 + (aim if ball.y > 42 else -aim)
        centre = game.player_y + PADDLE_H / 2
        return 1 if target < centre - 1.5 else 2 if target > centre + 1.5 else 0

    return policy


@pytest.mark.parametrize("env_id", list(MINIPONG_VARIANTS))
def test_env_checker_passes(env_id):
    check_env(make_env(env_id).unwrapped, skip_render_check=False)


@pytest.mark.parametrize("env_id", list(MINIPONG_VARIANTS))
def test_same_seed_and_actions_give_identical_observations(env_id):
    actions = np.random.default_rng(1).integers(3, size=400)
    runs = []
    for seed in (7, 7, 8):
        env = make_env(env_id)
        obs, _ = env.reset(seed=seed)
        frames = [obs]
        for action in actions:
            obs, _, terminated, truncated, _ = env.step(action)
            frames.append(obs)
            if terminated or truncated:
                obs, _ = env.reset()
        runs.append(np.stack(frames))
    assert np.array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


@pytest.mark.parametrize("env_id", list(MINIPONG_VARIANTS))
def test_masks_are_ground_truth(env_id, rng):
    env = make_env(env_id, seed=3, object_masks=True)
    obs, info = env.reset()
    for _ in range(300):
        obs, _, terminated, truncated, info = env.step(int(rng.integers(3)))
        newest, masks = obs[-1], info["object_masks"]
        assert set(masks) == set(env.unwrapped.object_names)
        covered = np.zeros_like(newest, dtype=bool)
        for name, mask in masks.items():
            assert mask.dtype == bool and mask.shape == (84, 84)
            assert mask.any(), name  # every MiniPong object is always on screen
            covered |= mask
        # every drawn pixel belongs to an object, and the ball (drawn last) shows its own shade on all its pixels
        assert not newest[~covered].any()
        assert (newest[masks["ball"]] == SHADE["ball"]).all()
        paddle_pixels = newest[masks["player"] & ~masks["ball"]]
        if "decoy" in masks:
            paddle_pixels = newest[masks["player"] & ~masks["ball"] & ~masks["decoy"]]
        assert (paddle_pixels == SHADE["player"]).all()
        if terminated or truncated:
            obs, info = env.reset()


def test_frame_size_42_maps_masks_onto_the_small_frame():
    env = make_env("MiniPong-v0", seed=0, frame_size=42, object_masks=True)
    obs, info = env.reset()
    obs, *_, info = env.step(0)
    assert obs.shape == (4, 42, 42)
    ball = info["object_masks"]["ball"]
    assert ball.shape == (42, 42) and 1 <= ball.sum() <= 4
    assert obs[-1][ball].max() > 0 and obs[-1][~np.logical_or.reduce(list(info["object_masks"].values()))].max() == 0


def test_random_policy_loses_almost_every_point(rng):
    env = make_env("MiniPong-v0")
    points = env.unwrapped.config.points
    returns = play(env, random_policy(rng), episodes=150)
    assert returns.mean() <= -0.8 * points


def test_the_opponent_can_be_beaten_by_angled_returns_but_not_by_flat_ones():
    env = make_env("MiniPong-v0")
    points = env.unwrapped.config.points
    angled = play(env, follow("ball", aim=4.0), episodes=20)
    flat = play(env, follow("ball", aim=0.0), episodes=20)
    assert angled.mean() >= 0.6 * points
    assert angled.mean() > flat.mean() + 1.0


def test_episode_ends_after_the_configured_points_and_truncates(rng):
    env = make_env("MiniPong-v0", points=2)
    env.reset(seed=0)
    points_seen, terminated, truncated = 0, False, False
    while not (terminated or truncated):
        _, reward, terminated, truncated, info = env.step(int(rng.integers(3)))
        points_seen += reward != 0
    assert terminated and info["points_played"] == 2 and points_seen == 2
    env = make_env("MiniPong-v0", max_steps=10)
    env.reset(seed=0)
    flags = [env.step(0)[2:4] for _ in range(10)]
    assert flags[-1] == (False, True) and not any(any(f) for f in flags[:-1])


def test_touch_rewards_returns_and_standard_does_not():
    touch = play(make_env("MiniPong-Touch-v0"), follow("ball"), episodes=3)
    standard = play(make_env("MiniPong-v0", max_steps=1000), follow("ball"), episodes=3)
    # flat returns: the opponent never misses, so the standard game pays nothing while Touch pays every return
    assert touch.mean() > 20 and abs(standard.mean()) <= 1


def test_two_ball_probe_tells_which_ball_the_paddle_follows():
    class Follower:
        def __init__(self, name):
            self.env, self.name = None, name

        def __call__(self, obs):
            # the probe passes observations only: find the ball by its shade in the newest frame
            rows, _ = np.nonzero(obs[-1] == SHADE[self.name])
            paddle_rows, _ = np.nonzero(obs[-1][:, 78:80] == SHADE["player"])
            if len(rows) == 0 or len(paddle_rows) == 0:
                return 0
            target, centre = rows.mean(), paddle_rows.mean()
            return 1 if target < centre - 1.5 else 2 if target > centre + 1.5 else 0

    real = dual_ball_probe(Follower("ball"), episodes=3, seed=0).set_index("ball")
    decoy = dual_ball_probe(Follower("decoy"), episodes=3, seed=0).set_index("ball")
    assert real.loc["ball", "intercept_rate"] > 0.8 > real.loc["decoy", "intercept_rate"]
    assert decoy.loc["decoy", "intercept_rate"] > decoy.loc["ball", "intercept_rate"]
    assert real.loc["ball", "tracking"] > 0.6 and decoy.loc["decoy", "tracking"] > 0.6
    assert real.attrs["mean_return"] > decoy.attrs["mean_return"]


def test_vector_env_batches_and_autoresets():
    envs = make_vector_env("MiniPong-v0", 3, seed=0, points=1)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (3, 4, 84, 84) and obs.dtype == np.uint8
    assert not np.array_equal(obs[0], obs[1])  # sub-environments get different seeds
    done_seen = False
    for _ in range(200):
        obs, reward, terminated, truncated, _ = envs.step(np.zeros(3, dtype=np.int64))
        done_seen |= bool(terminated.any())
    assert done_seen and obs.shape == (3, 4, 84, 84)


def test_batched_games_equal_single_games_with_the_same_seeds():
    actions = np.random.default_rng(2).integers(3, size=(150, 3))
    envs = make_vector_env("MiniPong-TwoBall-v0", 3, points=50)  # no episode ends
    batch = [envs.reset(seed=10)[0]] + [envs.step(a)[0] for a in actions]
    for i in range(3):
        env = make_env("MiniPong-TwoBall-v0", points=50)
        single = [env.reset(seed=10 + i)[0]] + [env.step(a)[0] for a in actions[:, i]]
        assert np.array_equal(np.stack(single), np.stack(batch)[:, i])
