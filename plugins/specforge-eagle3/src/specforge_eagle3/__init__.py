"""EAGLE3 draft-model strategy for SpecForge (registered as ``eagle3`` by ``specforge_eagle3.plugin``)."""
