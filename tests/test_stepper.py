"""The one agent stepper: stepping equals one call over the sequence, resets by mask, seeded sampling."""

import pytest
import torch

from interp.agents import make_agent
from interp.agents.stepper import Stepper, step_inputs

MEMORY = {"timesformer_divided": {"mem_len": 3, "patch_embedding": "conv"}, "mott": {"vision": "convnet"},
          "adaptive": {"mem_len": 4}}


@pytest.mark.parametrize("name", ["baseline", *MEMORY])
def test_stepping_with_resets_equals_one_call_over_the_sequence(name):
    torch.manual_seed(0)
    agent = make_agent(name, num_actions=3, **MEMORY.get(name, {})).eval()
    generator = torch.Generator().manual_seed(1)
    steps, batch = 6, 3
    frames = torch.randint(0, 256, (steps, batch, 4, 84, 84), dtype=torch.uint8, generator=generator)
    actions = torch.randint(0, 3, (steps, batch), generator=generator)
    rewards = torch.randn(steps, batch, generator=generator)
    starts = torch.zeros(steps, batch, dtype=torch.bool)
    starts[0], starts[3, 1] = True, True  # environment 1 starts a new episode at step 3
    stepper = Stepper(agent, batch)
    stepped = []
    for t in range(steps):
        outputs = stepper.forward(frames[t])
        stepped.append(outputs["policy_logits"])
        if t + 1 < steps:
            stepper.advance(actions[t], rewards[t], starts=starts[t + 1])
    # the same inputs for one call: previous action and reward, zero where an episode starts
    last_action = torch.cat([torch.zeros(1, batch, dtype=torch.long), actions[:-1]]).masked_fill(starts, 0)
    reward = torch.cat([torch.zeros(1, batch), rewards[:-1]]).masked_fill(starts, 0.0)
    with torch.no_grad():
        whole, _ = agent(step_inputs(frames, last_action, reward, starts), agent.initial_state(batch))
    assert torch.allclose(torch.stack(stepped), whole["policy_logits"], atol=1e-5)


def test_forward_again_recomputes_the_same_step_and_advance_needs_a_forward():
    agent = make_agent("adaptive", num_actions=3, mem_len=4).eval()
    stepper = Stepper(agent, 2)
    frames = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    first = stepper.forward(frames)["policy_logits"]
    assert torch.equal(stepper.forward(frames)["policy_logits"], first)  # the state moves only on advance
    stepper.advance(torch.tensor([1, 2]), [0.5, 0.0], starts=[False, True])
    assert stepper.last_action.tolist() == [1, 0] and stepper.reward.tolist() == [0.5, 0.0]
    assert stepper.done.tolist() == [False, True]
    with pytest.raises(RuntimeError, match="forward"):
        stepper.advance(torch.tensor([1, 2]), [0.0, 0.0], starts=[False, False])
    stepper.reset()
    assert stepper.done.all() and torch.equal(stepper.forward(frames)["policy_logits"], first)


def test_sampling_draws_from_its_generator_only():
    agent = make_agent("baseline", num_actions=3).eval()
    frames = torch.randint(0, 256, (64, 4, 84, 84), dtype=torch.uint8)

    def sample(seed):
        return Stepper(agent, 64, policy="sampled", generator=torch.Generator().manual_seed(seed)).forward(frames)[
            "action"]

    before = torch.random.get_rng_state()
    assert torch.equal(sample(3), sample(3)) and not torch.equal(sample(3), sample(4))
    assert torch.equal(torch.random.get_rng_state(), before)  # torch's global random state untouched
    greedy = Stepper(agent, 64).forward(frames)
    assert torch.equal(greedy["action"], greedy["policy_logits"].argmax(-1))
