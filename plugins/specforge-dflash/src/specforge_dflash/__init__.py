"""DFlash block-parallel draft-model strategy for SpecForge.

Importing the package imports no torch: ``plugin``, ``options``, ``layer_ids``, ``draft_config``
and ``strategy`` are torch-free at import time; the tensor modules load when training starts.
"""
