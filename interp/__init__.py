"""Interpretability toolkit for attention-based Atari agents.

Subpackages: ``interp.envs`` (ALE and MiniPong environments with object masks), ``interp.render`` (overlays
and videos). Nothing heavy is imported here, so ``import interp`` stays cheap.
"""

__version__ = "0.1.0"
