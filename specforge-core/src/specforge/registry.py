"""The plugin manager: built-ins, then entry points, then checks; one registry per process.

Load order is fixed (tox style): the core's own ``specforge.builtin`` modules register through
the same hooks as everyone else, then the ``specforge`` entry points, then ``check_pending``.
A plugin that fails to import, implements an unknown hook, or registers for another
``API_VERSION`` is recorded as broken with the reason; the others keep working.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pluggy

from specforge import hookspecs
from specforge.components import KINDS, ComponentSpec
from specforge.contracts import API_VERSION, MIN_API_VERSION
from specforge.errors import PluginError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "specforge"
CORE_DISTRIBUTION = "specforge-core"
BUILTIN_MODULES = (
    "specforge.builtin.engines",
    "specforge.builtin.stores",
    "specforge.builtin.topologies",
    "specforge.builtin.tensorboard",
)

# Names our own packages provide, so an unknown name can say what to install.
FIRST_PARTY: dict[str, dict[str, str]] = {
    "strategy": {"eagle3": "specforge-eagle3", "dflash": "specforge-dflash", "domino": "specforge-domino",
                 "peagle": "specforge-peagle", "dspark": "specforge-dspark"},
    "feature_store": {"mooncake": "specforge-mooncake"},
    "target_engine": {"sglang": "specforge-sglang"},
}

KIND_LABELS = {"strategy": "strategy", "target_engine": "target engine",
               "feature_store": "feature store", "topology": "topology"}
KIND_PLURALS = {"strategy": "strategies", "target_engine": "target engines",
                "feature_store": "feature stores", "topology": "topologies"}


@dataclass(frozen=True)
class PluginInfo:
    """A loaded (or failed) plugin: its name and where it came from."""

    name: str
    distribution: str | None
    version: str | None
    broken: str = ""  # the reason, when it could not be loaded


@dataclass
class Registered:
    """One registration of a component by one plugin."""

    spec: ComponentSpec
    plugin: PluginInfo
    problem: str = ""  # non-empty: the component cannot be used, and why

    @property
    def status(self) -> str:
        if self.problem:
            return self.problem
        if self.spec.incomplete:
            return f"incomplete: {self.spec.incomplete}"
        if self.spec.api_version < API_VERSION:
            return f"ok (written for plugin API {self.spec.api_version}, deprecated: see docs/api-stability.md)"
        return "ok"


@dataclass
class Registry:
    """Everything the installed plugins registered, by kind and name."""

    pm: pluggy.PluginManager
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    components: dict[str, dict[str, list[Registered]]] = field(
        default_factory=lambda: {kind: {} for kind in KINDS})

    # ------------------------------------------------------------- queries

    def entries(self, kind: str | None = None) -> Iterator[Registered]:
        for k, by_name in self.components.items():
            if kind is None or k == kind:
                for name in sorted(by_name):
                    yield from by_name[name]

    def names(self, kind: str) -> list[str]:
        """Usable names of a kind."""
        return sorted(n for n, regs in self.components[kind].items()
                      if len(regs) == 1 and not regs[0].problem)

    def get(self, kind: str, name: str) -> Registered:
        """The usable registration of ``name``, or a PluginError that says what to do."""
        label = KIND_LABELS[kind]
        regs = self.components[kind].get(name, [])
        if not regs:
            installed = ", ".join(self.names(kind)) or "none"
            hint = FIRST_PARTY.get(kind, {}).get(name)
            if hint:
                raise PluginError(f"{label} {name!r} is not installed: pip install {hint} "
                                  f"(installed {KIND_PLURALS[kind]}: {installed})")
            broken = [p for p in self.plugins.values() if p.broken]
            extra = "".join(f"\n  broken plugin {p.name!r} ({p.distribution}): {p.broken}" for p in broken)
            raise PluginError(f"unknown {label} {name!r}; installed {KIND_PLURALS[kind]}: {installed}{extra}")
        if len(regs) > 1:
            who = " and ".join(f"{r.plugin.distribution or r.plugin.name}" for r in regs)
            raise PluginError(f"{label} {name!r} is registered by two distributions: {who}; "
                              f"uninstall one of them or disable it with SPECFORGE_DISABLE_PLUGINS")
        reg = regs[0]
        if reg.problem:
            raise PluginError(f"{label} {name!r} from {reg.plugin.distribution or reg.plugin.name} "
                              f"is broken: {reg.problem}")
        if reg.spec.incomplete:
            raise PluginError(f"{label} {name!r} from {reg.plugin.distribution or reg.plugin.name} "
                              f"is incomplete: {reg.spec.incomplete}")
        return reg

    # ------------------------------------------------------------- hooks

    def call_observers(self, hook: str, **kwargs: Any) -> None:
        """Run an observer hook; a failure names the plugin and stops the run."""
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            try:
                impl.function(**{a: kwargs[a] for a in impl.argnames})
            except Exception as exc:
                raise PluginError(f"plugin {impl.plugin_name!r} failed in {hook}: "
                                  f"{type(exc).__name__}: {exc}") from exc

    def check_export(self, strategy: str, fmt: str, export_dir: Any, info: dict) -> list[str]:
        """Every export problem any plugin reports, prefixed with the plugin's name."""
        problems: list[str] = []
        kwargs = {"strategy": strategy, "fmt": fmt, "export_dir": export_dir, "info": info}
        for impl in self.pm.hook.specforge_check_export.get_hookimpls():
            try:
                found = impl.function(**{a: kwargs[a] for a in impl.argnames}) or []
            except Exception as exc:
                found = [f"check crashed: {type(exc).__name__}: {exc}"]
            problems.extend(f"[{impl.plugin_name}] {p}" for p in found)
        return problems

    def add_commands(self, cli: Any) -> None:
        for impl in self.pm.hook.specforge_register_commands.get_hookimpls():
            try:
                impl.function(cli=cli)
            except Exception as exc:  # a broken verb must not take the whole CLI down
                self._mark_broken(impl.plugin_name, f"specforge_register_commands: {exc}")

    def _mark_broken(self, plugin: str, reason: str) -> None:
        info = self.plugins.get(plugin)
        if info is not None and not info.broken:
            self.plugins[plugin] = PluginInfo(info.name, info.distribution, info.version, reason)
        log.warning("plugin %s is broken: %s", plugin, reason)


# ----------------------------------------------------------------- loading


def _split_env(var: str) -> set[str] | None:
    value = os.environ.get(var)
    if value is None:
        return None
    return {v.strip() for v in value.split(",") if v.strip()}


def _core_version() -> str | None:
    try:
        return importlib.metadata.version(CORE_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None


def _entry_points() -> Iterable[importlib.metadata.EntryPoint]:
    return importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)


def _register_plugin(pm: pluggy.PluginManager, registry: Registry, obj: Any, info: PluginInfo) -> None:
    """Register one plugin object; on a validation problem, record it as broken instead."""
    try:
        pm.register(obj, name=info.name)
        pm.check_pending()
    except Exception as exc:
        if pm.get_plugin(info.name) is not None:
            pm.unregister(name=info.name)
        registry.plugins[info.name] = PluginInfo(info.name, info.distribution, info.version,
                                                 f"{type(exc).__name__}: {exc}")
        return
    registry.plugins[info.name] = info


def _collect_components(registry: Registry) -> None:
    for kind, hook in hookspecs.REGISTRATION_HOOKS.items():
        spec_class = KINDS[kind]
        for impl in getattr(registry.pm.hook, hook).get_hookimpls():
            plugin = registry.plugins[impl.plugin_name]
            seen: list[Registered] = []

            def register(spec: ComponentSpec, *, _plugin: PluginInfo = plugin, _seen: list[Registered] = seen,
                         _cls: type = spec_class, _hook: str = hook) -> None:
                if not isinstance(spec, _cls):
                    raise TypeError(f"{_hook} must register {_cls.__name__} objects, got {type(spec).__name__}")
                problem = _api_problem(spec, _plugin)
                _seen.append(Registered(spec, _plugin, problem))

            try:
                impl.function(register=register)
            except Exception as exc:
                registry._mark_broken(impl.plugin_name, f"{hook}: {type(exc).__name__}: {exc}")
                continue
            for reg in seen:
                registry.components[kind].setdefault(reg.spec.name, []).append(reg)

    for by_name in registry.components.values():
        for name, regs in by_name.items():
            if len(regs) > 1:
                dists = " and ".join(r.plugin.distribution or r.plugin.name for r in regs)
                for r in regs:
                    r.problem = f"duplicate: {name!r} is registered by {dists}"


def _api_problem(spec: ComponentSpec, plugin: PluginInfo) -> str:
    """Why a component's plugin API version cannot be used here ("" when it can)."""
    oldest = API_VERSION if spec.kind == "topology" else MIN_API_VERSION  # topologies changed in API 2
    if oldest <= spec.api_version <= API_VERSION:
        return ""
    action = "upgrade" if spec.api_version < oldest else "upgrade specforge-core for"
    return (f"broken: written for plugin API {spec.api_version}, this specforge-core accepts "
            f"{oldest}..{API_VERSION} for a {spec.kind}; {action} {plugin.distribution or plugin.name}")


def load_registry(extra_plugins: Iterable[tuple[str, Any]] = ()) -> Registry:
    """Build a fresh registry: built-ins, entry points (filtered by env), extra plugins, checks."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    registry = Registry(pm=pm)
    core_version = _core_version()

    for module_name in BUILTIN_MODULES:
        module = importlib.import_module(module_name)
        _register_plugin(pm, registry, module, PluginInfo(module_name, CORE_DISTRIBUTION, core_version))

    only = _split_env("SPECFORGE_LOAD_PLUGINS")
    disabled = _split_env("SPECFORGE_DISABLE_PLUGINS") or set()
    for ep in _entry_points():
        dist = ep.dist.name if ep.dist else None
        version = ep.dist.version if ep.dist else None
        names = {ep.name, dist}
        if names & disabled or (only is not None and not names & only):
            continue
        if pm.get_plugin(ep.name) is not None or ep.name in registry.plugins:
            registry.plugins[f"{ep.name}@{dist}"] = PluginInfo(
                ep.name, dist, version, f"entry point name {ep.name!r} is already taken by "
                f"{registry.plugins[ep.name].distribution}")
            continue
        try:
            module = ep.load()
        except Exception as exc:
            registry.plugins[ep.name] = PluginInfo(ep.name, dist, version, f"{type(exc).__name__}: {exc}")
            continue
        _register_plugin(pm, registry, module, PluginInfo(ep.name, dist, version))

    for name, obj in extra_plugins:
        _register_plugin(pm, registry, obj, PluginInfo(name, None, None))

    _collect_components(registry)
    return registry


_extra: dict[str, Any] = {}
_cached: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded once."""
    global _cached
    if _cached is None:
        _cached = load_registry(_extra.items())
    return _cached


def add_plugin(obj: Any, name: str) -> None:
    """Register an in-process plugin object (tests, notebooks); reloads the registry."""
    global _cached
    _extra[name] = obj
    _cached = None


def remove_plugin(name: str) -> None:
    global _cached
    _extra.pop(name, None)
    _cached = None

