"""Small, generic torch building blocks that strategy plugins share.

Import the submodules directly (``from specforge.nn.norm import RMSNorm``): this package imports
no torch itself, so nothing on the CLI's start-up path pays for it.

- ``norm``: RMSNorm
- ``rope``: rotary embedding from a target config (default, linear, llama3, yarn, dynamic, ...)
- ``mlp``: SwiGLU MLP
- ``attention``: GQA ``repeat_kv`` and boolean causal/padding masks
"""
