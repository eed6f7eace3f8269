"""IMPALA / V-trace training of the agents in ``interp.agents``, writing checkpoints across training."""
