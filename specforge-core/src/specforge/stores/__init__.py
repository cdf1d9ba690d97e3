"""The built-in feature stores (``memory``, ``disk``) and the helpers they share.

Importing this package imports no torch: ``options`` and ``dtypes`` are torch-free, and the
store modules import torch only when a tensor is put or read.
"""
