"""P-EAGLE (parallel-drafting EAGLE) for SpecForge; ``specforge_peagle.plugin`` registers strategy ``peagle``."""
