"""The one rollout loop: its episode boundary, its policies, and the same play as a batched evaluation."""

import numpy as np
import pytest
import torch

from interp.agents import make_agent
from interp.envs import make_env, make_vector_env
from interp.rollout import VectorRollout, rollout


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


def test_a_vector_rollout_plays_each_game_as_the_rollout_plays_it_alone_across_episode_ends():
    """The two boundary rules agree: a game of the vector rollout, less its reset steps, is the one-game rollout of
    the same seed, episode after episode (an agent with memory, so a missed state reset would show)."""
    agent = make_agent("timesformer_divided", (4, 42, 42), 3, mem_len=4, embed_dim=16).eval()
    games = VectorRollout(make_vector_env("MiniPong-v0", 3, seed=5, frame_size=42, max_steps=12), "greedy",
                          agent=agent, seed=5)
    actions, logits, rewards, returns, lengths = ([[] for _ in range(3)] for _ in range(5))
    for _ in range(40):
        starts = games.terminal.clone()  # these games reset at this step, ignoring its action
        games.step()
        for game in range(3):
            if starts[game]:
                assert games.episode_return[game] == 0 and games.episode_step[game] == 0
                continue
            actions[game].append(int(games.outputs["action"][game]))
            logits[game].append(games.outputs["policy_logits"][game])
            rewards[game].append(float(games.reward[game]))
            if games.terminal[game]:
                returns[game].append(float(games.episode_return[game]))
                lengths[game].append(int(games.episode_step[game]))
    games.close()
    for game in range(3):
        alone = list(rollout(make_env("MiniPong-v0", seed=5 + game, frame_size=42, max_steps=12), "greedy",
                             agent=agent, seed=5 + game, steps=len(actions[game])))
        assert actions[game] == [step.action for step in alone]
        alone_logits = torch.cat([step.outputs["policy_logits"] for step in alone])
        torch.testing.assert_close(torch.stack(logits[game]), alone_logits, rtol=0, atol=1e-5)
        assert rewards[game] == [step.reward for step in alone]
        ended = [step for step in alone if step.ended]
        assert len(ended) >= 2 and returns[game] == [step.episode_return + step.reward for step in ended]
        assert lengths[game] == [12] * len(ended)
