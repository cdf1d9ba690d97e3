"""The ``specforge`` command. Nothing here imports torch: training code loads only when a run starts.

Verbs appear only when they work: the core's own (``CORE_COMMANDS``) and whatever installed
plugins add through ``specforge_register_commands``.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import click

from specforge import __version__
from specforge.errors import SpecforgeError

log = logging.getLogger("specforge")

# "module:attr" of click commands the core ships; imported when the CLI is built (torch-free).
CORE_COMMANDS: tuple[str, ...] = (
    "specforge.commands.capture:command",
    "specforge.commands.export:command",
    "specforge.commands.eval:command",
    "specforge.commands.bench:command",
    "specforge.commands.prepare_data:command",
    "specforge.commands.new:command",
    "specforge.commands.demo:command",
)


class SpecforgeGroup(click.Group):
    """A click group that turns user-facing errors (the core's or a plugin's) into one line, exit 2.

    ``specforge -v`` prints the traceback as well.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SpecforgeError as exc:
            if _VERBOSE:
                traceback.print_exc()
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)
        except click.UsageError as exc:  # a bad flag value of a subcommand: one line too
            where = exc.ctx.command_path if exc.ctx is not None else "specforge"
            click.echo(f"error: {exc.format_message()} (see {where} --help)", err=True)
            ctx.exit(2)


_VERBOSE = False


@click.group(cls=SpecforgeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="specforge")
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def cli(verbose: bool) -> None:
    """Train speculative-decoding draft models for your target LLM.

    Start with `specforge run --strategy eagle3` (the embedded demo: a tiny target and data
    built offline) or point --target-model and --data at your own.
    """
    global _VERBOSE
    _VERBOSE = verbose
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")


# ----------------------------------------------------------------- plugins


def _component_rows(kind: str | None) -> list[dict[str, Any]]:
    from specforge.registry import get_registry

    registry = get_registry()
    rows = [
        {"name": reg.spec.name, "kind": reg.spec.kind, "distribution": reg.plugin.distribution,
         "version": reg.plugin.version, "summary": reg.spec.summary, "status": reg.status,
         "plugin": reg.plugin.name, **({"export_formats": list(reg.spec.export_formats)}
                                       if hasattr(reg.spec, "export_formats") else {})}
        for reg in registry.entries(kind)
    ]
    if kind is None:
        rows += [
            {"name": p.name, "kind": "plugin", "distribution": p.distribution, "version": p.version,
             "summary": "", "status": f"broken: {p.broken}", "plugin": p.name}
            for p in registry.plugins.values() if p.broken
        ]
        rows += _observer_rows(registry)
    return rows


def _observer_rows(registry: Any) -> list[dict[str, Any]]:
    """Plugins implementing run hooks (TensorBoard, W&B, ...): they register no component to list."""
    from specforge.hookspecs import OBSERVER_HOOKS

    hooks: dict[str, list[str]] = {}
    for hook in OBSERVER_HOOKS:
        for impl in getattr(registry.pm.hook, hook).get_hookimpls():
            hooks.setdefault(impl.plugin_name, []).append(hook.removeprefix("specforge_"))
    return [{"name": name, "kind": "observer", "distribution": registry.plugins[name].distribution,
             "version": registry.plugins[name].version, "summary": f"run hooks: {', '.join(used)}",
             "status": "ok", "plugin": name}
            for name, used in sorted(hooks.items()) if name in registry.plugins]


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per component).")
@click.option("--kind", type=click.Choice(["strategy", "target_engine", "feature_store", "topology"]),
              help="Only this kind of component.")
def plugins_command(as_json: bool, kind: str | None) -> None:
    """List installed components: name, kind, distribution, version, status."""
    rows = _component_rows(kind)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no components installed")
        return
    widths = {k: max(len(k), *(len(str(r[k] or "-")) for r in rows))
              for k in ("kind", "name", "distribution", "version")}
    header = "  ".join(k.upper().ljust(widths[k]) for k in widths) + "  STATUS  SUMMARY"
    click.echo(header)
    for r in rows:
        cells = "  ".join(str(r[k] or "-").ljust(widths[k]) for k in widths)
        exports = f" (exports: {', '.join(r['export_formats'])})" if r.get("export_formats") else ""
        click.echo(f"{cells}  {r['status']}  {r['summary']}{exports}")


# ----------------------------------------------------------------- run


@cli.command("run", context_settings={"show_default": True})
@click.option("--strategy", help="Draft algorithm (see `specforge plugins --kind strategy`).")
@click.option("--target-engine", help="Where target features come from.  [default: hf]")
@click.option("--store", help="Feature store.  [default: the topology's: offline→disk, online→memory]")
@click.option("--topology", help="offline | online | disaggregated.  [default: offline]")
@click.option("--target-model", type=click.Path(), help="Local Hugging Face model directory "
              "(default: the embedded demo target).")
@click.option("--data", type=click.Path(), help="Conversations JSONL (default: the embedded demo data).")
@click.option("--output-dir", type=click.Path(), help="Parent of the run folder.  [default: runs]")
@click.option("--name", help="Run folder name.  [default: <strategy>-<topology>]")
@click.option("-c", "--config", "config_file", type=click.Path(), help="A run.toml.")
@click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override one config key; repeatable (e.g. --set training.lr=3e-4).")
@click.option("--resume", is_flag=False, flag_value="last", default=None, metavar="[DIR]",
              help="Continue exactly from the newest checkpoint of this run, or of DIR (a run or checkpoint).")
@click.option("--init-draft", type=click.Path(exists=True),
              help="Warm-start the draft's weights and extra state from a run or checkpoint (new optimizer).")
@click.option("--nproc-per-node", type=int, help="Trainer processes on this machine (one per GPU).  [default: 1]")
@click.option("--nnodes", type=int, help="Machines in the run; run the same command on each.  [default: 1]")
@click.option("--node-rank", type=int, help="This machine's rank among --nnodes (0 hosts the group).  [default: 0]")
@click.option("--master-addr", help="Address of node 0, reachable by every node.  [default: 127.0.0.1]")
@click.option("--master-port", type=int, help="Port node 0 listens on for the process group.  [default: free port]")
@click.option("--overwrite", is_flag=True, default=None,
              help="Replace a run already in the run folder (it is moved aside to <name>.replaced-<time>).")
@click.option("--tensorboard", is_flag=True, default=None,
              help="Write TensorBoard events to runs/<name>/tensorboard/ (pip install specforge-core[tensorboard]).")
@click.option("--plan", is_flag=True, help="Print the resolved plan and exit (imports no torch).")
def run_command(config_file: str | None, sets: Sequence[str], plan: bool, **flags: Any) -> None:
    """Train a draft model: capture target features, train, export, evaluate."""
    from specforge.config import resolve
    from specforge.registry import get_registry

    config = resolve(get_registry(), config_file=config_file, flags=flags, sets=sets)
    if plan:
        from specforge.run.plan import describe_plan

        for line in describe_plan(config):
            click.echo(line)
        return
    from specforge.run import run

    outcome = run(config)
    if outcome is not None and outcome.summary:
        click.echo(outcome.summary)


# ----------------------------------------------------------------- assembly


def build_cli() -> click.Group:
    """The CLI with the core's verbs and every installed plugin's."""
    for target in CORE_COMMANDS:
        module_name, _, attr = target.partition(":")
        command = getattr(importlib.import_module(module_name), attr)
        cli.add_command(command)
    from specforge.registry import get_registry

    get_registry().add_commands(cli)
    return cli


def main(argv: Sequence[str] | None = None) -> Any:
    """Console-script entry point: ``specforge = specforge.cli:main``."""
    return build_cli().main(args=list(argv) if argv is not None else sys.argv[1:], prog_name="specforge")
