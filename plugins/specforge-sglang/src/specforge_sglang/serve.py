"""Start an SGLang server whose target captures features for SpecForge.

    python -m specforge_sglang.serve --capture-layers 1 17 32 [--shm-dir /dev/shm/specforge] -- \\
        --model-path /models/Qwen3-8B --port 30000 [any other sglang.launch_server flags]

then train with ``--target-engine sglang --set target_engine.server_url=http://HOST:30000
--set target_engine.capture_layers=[1,17,32]`` (plus ``target_engine.shm_dir`` for binary
features on the same machine). It sets SGLang's external-model variable to the capture class,
adds the flags capture needs (no prefix cache, no chunked prefill, hidden states on, no
tokenizer), and runs ``sglang.launch_server`` in this process. The server listens on
127.0.0.1 unless ``--host`` is given (``--host 0.0.0.0`` serves every machine that can reach
this one, without authentication); on one machine (no ``--dist-init-addr``, ``--nnodes`` 1) its
tensor-parallel ranks meet through a file rather than torch's TCP store, which would listen on
every interface.
"""

from __future__ import annotations

import argparse
import json
import runpy
import sys
from pathlib import Path

from specforge_sglang.backends import apply_environment, capture_environment, one_machine_rendezvous
from specforge_sglang.capture_plan import CapturePlan
from specforge_sglang.versions import check_capture_architecture, require_sglang

LOOPBACK_HOST = "127.0.0.1"
"""Where the server listens unless the user passes ``--host``: features are raw bytes without
authentication, so serving other machines is the user's explicit choice."""

REQUIRED_FLAGS: dict[str, list[str]] = {
    "--disable-radix-cache": [],
    "--enable-return-hidden-states": [],
    "--skip-tokenizer-init": [],
    "--chunked-prefill-size": ["-1"],
}
"""Flags capture relies on: every prompt token computed in one prefill, ids in and out."""


def _flag_value(args: list[str], flag: str) -> str | None:
    for k, arg in enumerate(args):
        if arg == flag and k + 1 < len(args):
            return args[k + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def server_argv(capture_args: argparse.Namespace, sglang_args: list[str]) -> tuple[list[str], dict[str, str]]:
    """The ``launch_server`` arguments and the environment for them; raises on what cannot work."""
    model = _flag_value(sglang_args, "--model-path")
    if not model:
        raise SystemExit("specforge_sglang.serve: pass SGLang's --model-path after `--`")
    config = json.loads((Path(model) / "config.json").read_text())
    check_capture_architecture(config, model)
    chunk = _flag_value(sglang_args, "--chunked-prefill-size")
    if chunk is not None and chunk != "-1":
        raise SystemExit("specforge_sglang.serve: capture needs --chunked-prefill-size -1 (a chunked prefill "
                         "returns features for its last chunk only)")
    argv = list(sglang_args)
    if _flag_value(argv, "--host") is None:
        argv += ["--host", LOOPBACK_HOST]
    for flag, values in REQUIRED_FLAGS.items():
        if flag not in argv and _flag_value(argv, flag) is None:
            argv += [flag, *values]
    if capture_args.shm_dir:
        Path(capture_args.shm_dir).mkdir(parents=True, exist_ok=True)
    plan = CapturePlan(layers=tuple(capture_args.capture_layers), shm_dir=capture_args.shm_dir)
    cpu = _flag_value(argv, "--device") == "cpu"
    env = capture_environment(plan, cpu=cpu)
    if _flag_value(argv, "--dist-init-addr") is None and (_flag_value(argv, "--nnodes") or "1") == "1":
        env.update(one_machine_rendezvous())  # one machine: tensor-parallel ranks meet through a file
    return argv, env


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    ours, sglang_args = (args[:args.index("--")], args[args.index("--") + 1:]) if "--" in args else (args, [])
    parser = argparse.ArgumentParser(prog="python -m specforge_sglang.serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--capture-layers", type=int, nargs="*", default=[],
                        help="target layer ids to capture (0-based outputs of decoder layers)")
    parser.add_argument("--shm-dir", default="", help="directory for binary feature files (same machine)")
    parser.add_argument("--allow-untested-version", action="store_true")
    capture_args = parser.parse_args(ours)
    require_sglang(allow_untested=capture_args.allow_untested_version)
    launch_args, env = server_argv(capture_args, sglang_args)
    apply_environment(env)
    sys.argv = ["sglang.launch_server", *launch_args]
    runpy.run_module("sglang.launch_server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
