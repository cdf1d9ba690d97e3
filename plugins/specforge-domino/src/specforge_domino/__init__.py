"""Domino (DFlash + GRU logit correction) strategy for SpecForge, built on specforge-dflash.

Importing the package imports no torch; the tensor modules load when training starts.
"""
