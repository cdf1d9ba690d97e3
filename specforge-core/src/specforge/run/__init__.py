"""The run lifecycle, in one package; the only caller of topologies.

``specforge run`` -> ``run(config)``: build the topology, hand it the core's launcher
(``launcher.py``), which either starts worker processes or runs the worker lifecycle here
(``worker.py``: claim the folder, ``assemble.py``, the topology's ``train``, ``finish.py``).
``folder.py`` answers what a path is and who may write a run folder; ``rebuild.py`` and
``evaluate.py`` serve `specforge export` and `specforge eval`; ``demo.py`` is the embedded demo.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from specforge.config import RunConfig


def run(config: RunConfig) -> Any:
    """Run ``config``; returns the outcome (export, τ report) in the process that finished it."""
    from specforge.contracts import Topology
    from specforge.errors import PluginError
    from specforge.run.launcher import CoreLauncher

    component = config.components["topology"]
    topology = component.build()
    if not isinstance(topology, Topology):
        raise PluginError(f"topology {component.name!r} from {component.registered.plugin.distribution} lacks "
                          f"launch(launcher) and train(run) (plugin API {component.spec.api_version}); upgrade it")
    launcher = CoreLauncher(config, topology)
    try:
        return topology.launch(launcher)
    finally:
        launcher.close()
