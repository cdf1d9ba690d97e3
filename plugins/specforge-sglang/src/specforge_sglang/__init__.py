"""SGLang as a SpecForge target engine (``target_engine = "sglang"``) and the judge of ``--format sglang`` exports.

Importing this package imports neither torch nor SGLang.
"""
