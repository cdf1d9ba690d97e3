"""The one import a plugin author needs: ``from specforge.plugin import hookimpl, StrategySpec, ...``.

It is ``specforge.api`` under its historical name; torch-side helpers are in
``specforge.api.nn``, ``specforge.api.stores``, ``specforge.api.engines`` and
``specforge.api.export``.

    from specforge.plugin import hookimpl, StrategySpec

    @hookimpl
    def specforge_register_strategies(register):
        register(StrategySpec(name="my-algo", summary="...", factory="my_pkg.strategy:MyAlgo",
                              options=MyOptions))
"""

from __future__ import annotations

from specforge.api import *  # noqa: F403
from specforge.api import __all__  # noqa: F401
