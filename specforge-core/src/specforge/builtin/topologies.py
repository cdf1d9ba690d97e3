"""Registrations of the core's own topologies, through the same hook as any plugin."""

from __future__ import annotations

from specforge.components import TopologySpec
from specforge.plugin import hookimpl
from specforge.topologies.options import DisaggregatedOptions, OfflineOptions, OnlineOptions


@hookimpl
def specforge_register_topologies(register):
    register(TopologySpec(
        name="offline", summary="capture every sample into a store, then train N epochs from it",
        factory="specforge.topologies.offline:OfflineTopology", options=OfflineOptions, default_store="disk"))
    register(TopologySpec(
        name="online", summary="capture and train batch by batch in one process group",
        factory="specforge.topologies.online:OnlineTopology", options=OnlineOptions, default_store="memory"))
    register(TopologySpec(
        name="disaggregated", summary="producer processes capture into a shared store, trainer processes consume",
        factory="specforge.topologies.disaggregated:DisaggregatedTopology", options=DisaggregatedOptions,
        default_store="disk", store_requires=frozenset({"cross_process"})))
