"""Pipelines over checkpoints and runs. :data:`STAGES` is the registry of analysis stages (:mod:`analyses.stage`),
in the order ``interp analyse`` runs them; adding one is a module with a ``STAGE`` and an entry here."""

from analyses import agreement, atom, evaluation, health, maps, sanity, stills, video

STAGES = {stage.name: stage for stage in (maps.STAGE, atom.STAGE, agreement.STAGE, sanity.STAGE, health.STAGE,
                                          evaluation.STAGE, stills.STAGE, video.STAGE)}
ALIASES = {"overlap": "agreement"}
"""earlier names of stages, still accepted on the command line"""


def figures_of(run) -> dict[str, list]:
    """The figures and pictures each stage has written for ``run`` (an ``interp.runs.Run``): stage name -> paths,
    as the stages declare them (:attr:`analyses.stage.Stage.figures`)."""
    return {name: sorted(path for pattern in stage.figures for path in run.analysis.glob(pattern))
            for name, stage in STAGES.items() if stage.figures}
