"""The one rollout loop: its episode boundary, its policies, and the same play as a batched evaluation."""

import numpy as np
import pytest

from interp.agents import make_agent
from interp.envs import make_env
from interp.rollout import rollout


def test_an_episode_end_is_seen_at_the_end_and_the_next_step_starts_an_episode():
    agent = make_agent("baseline", (4, 42, 42), 3).eval()
    env = make_env("MiniPong-v0", seed=0, frame_size=42, max_steps=15)
    played = list(rollout(env, "sampled", agent=agent, seed=0, episodes=2))
    ends = [step.index for step in played if step.ended]
    assert ends == [14, 29] and len(played) == 30  # the rollout stops with the second episode's last step
    for step in played:
        starts = step.index in (0, 15)
        assert bool(step.steps.inputs["done"][0, 0]) == starts
        if starts:  # a new episode: no previous action or reward for the agent, nothing earned yet
            assert int(step.steps.inputs["last_action"][0, 0]) == 0 and float(step.steps.inputs["reward"][0, 0]) == 0
            assert step.episode_return == 0
        else:
            previous = played[step.index - 1]
            assert int(step.steps.inputs["last_action"][0, 0]) == previous.action
            assert step.episode_return == previous.episode_return + previous.reward
    assert played[14].truncated and not played[14].terminated


def test_policies_are_reproducible_and_a_callable_plays_what_it_returns():
    env = make_env("MiniPong-v0", seed=0, frame_size=42)
    first = [step.action for step in rollout(env, "random", seed=3, steps=50)]
    assert first == [step.action for step in rollout(env, "random", seed=3, steps=50)]
    assert first != [step.action for step in rollout(env, "random", seed=4, steps=50)]
    seen = []
    played = list(rollout(env, lambda obs: seen.append(obs) or 2, steps=5))
    assert [step.action for step in played] == [2] * 5
    assert all(np.array_equal(obs, step.obs) for obs, step in zip(seen, played, strict=True))
    assert played[0].steps is None and played[0].rgb is None


@pytest.mark.parametrize("policy", ["greedy", "sampled"])
def test_an_agent_policy_needs_an_agent_and_an_unknown_one_is_refused(policy):
    env = make_env("MiniPong-v0", seed=0, frame_size=42)
    with pytest.raises(ValueError, match="needs an agent"):
        next(rollout(env, policy))
    with pytest.raises(ValueError, match="one of"):
        next(rollout(env, "sample"))
