"""Checkpoints written by other libraries, loaded as agents with this toolkit's interface, never running their code.

One module per source, each with an :class:`Importer` registered in :data:`IMPORTERS`:

- :mod:`interp.importers.sb3`: Stable-Baselines3 ``.zip`` files of PPO and A2C (``CnnPolicy``) and DQN;
- :mod:`interp.importers.cleanrl`: CleanRL state dicts of ``ppo_atari``'s ``Agent`` and ``dqn_atari``'s
  ``QNetwork`` (also in the ``{"model_weights", "args"}`` form);
- :mod:`interp.importers.torchbeast`: TorchBeast ``model.tar`` files of ``AtariNet``.

Every file is read with ``torch.load(weights_only=True)`` (tensors, numbers, strings and containers), SB3's
``data`` as plain JSON whose pickled fields are never decoded. Each importer maps the weights onto an agent of
:data:`interp.agents.AGENTS` and says in the metadata which library wrote it (``source``), the algorithm, the
observations' preprocessing (:data:`interp.envs.atari.PREPROCESSING`), what the critic is (``value``: the learned
value, or the greedy action's Q-value ``max_q``), and the environment when the file names it.
"""

from __future__ import annotations

from pathlib import Path

from interp.agents import Checkpoint, CheckpointError, load_checkpoint
from interp.agents.checkpoint import FORMAT, safe_load
from interp.importers import cleanrl, sb3, torchbeast
from interp.importers.base import Importer

IMPORTERS: dict[str, Importer] = {importer.name: importer for importer in (sb3.IMPORTER, cleanrl.IMPORTER,
                                                                            torchbeast.IMPORTER)}


def source_of(path: str | Path) -> str:
    """``interp`` for this toolkit's checkpoints, else the name of the importer that recognises the file; a file no
    importer knows is a :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    payload = None if sb3.is_sb3_zip(path) else safe_load(path, mmap=True)
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        return "interp"
    for importer in IMPORTERS.values():
        if importer.recognises(path, payload):
            return importer.name
    raise CheckpointError(f"{path}: {_what_it_is(path, payload)}, not a checkpoint of this toolkit, "
                          f"Stable-Baselines3 (PPO, A2C, DQN), CleanRL (ppo_atari, dqn_atari) or TorchBeast (AtariNet)")


def _what_it_is(path: Path, payload) -> str:
    """What a file no importer recognises holds, in a few words."""
    if payload is None:
        return "a zip archive without Stable-Baselines3's data and policy.pth"
    if isinstance(payload, dict):
        keys = ", ".join(str(key) for key in list(payload)[:3]) + (" ..." if len(payload) > 3 else "")
        return f"a torch file holding a dict of {len(payload)} entries ({keys})" if payload else "an empty dict"
    return f"a torch file holding a {type(payload).__name__}"


def load_any(path: str | Path, *, expected_name: str | None = None) -> Checkpoint:
    """A checkpoint of this toolkit or of a library :data:`IMPORTERS` knows, as an agent (eval mode) and metadata."""
    path = Path(path)
    source = source_of(path)
    if source == "interp":
        return load_checkpoint(path, expected_name=expected_name)
    checkpoint = IMPORTERS[source].build(path, None if source == "sb3" else safe_load(path))
    if expected_name is not None and checkpoint.agent.name != expected_name:
        raise CheckpointError(f"{path}: holds a {checkpoint.agent.name!r} agent, not {expected_name!r}")
    checkpoint.agent.eval()
    return checkpoint
