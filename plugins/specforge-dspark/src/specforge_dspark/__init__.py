"""DSpark (arXiv 2607.05147) strategy for SpecForge: the DFlash backbone from specforge-dflash plus
low-rank Markov logit heads over the previous token and an acceptance-confidence head.

Importing the package imports no torch; the tensor modules load when training starts.
"""
