"""Entry module (``[project.entry-points.specforge] mooncake = "specforge_mooncake.plugin"``).

Registration only: imports neither torch nor mooncake, so `specforge plugins` and `--plan`
stay fast and work where Mooncake's native libraries are missing.
"""

from __future__ import annotations

from typing import Any

from specforge.plugin import FeatureStoreSpec, hookimpl
from specforge_mooncake.options import MooncakeStoreOptions


@hookimpl
def specforge_register_feature_stores(register: Any) -> None:
    register(FeatureStoreSpec(
        name="mooncake",
        summary="Mooncake distributed store: raw bytes over TCP/RDMA between processes and machines "
                "(managed master by default)",
        factory="specforge_mooncake.store:MooncakeStore",
        options=MooncakeStoreOptions,
        cross_process=True,
        persistent=False,
    ))


@hookimpl
def specforge_register_commands(cli: Any) -> None:
    from specforge_mooncake.commands import mooncake

    cli.add_command(mooncake)
