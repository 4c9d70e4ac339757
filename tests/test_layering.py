"""The layering, read from the source: `shared/` never imports `servers/`, and engine modules never
reach the MCP SDK, directly or through another module of the suite."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SDK = ("mcp", "mcp_types")

# The modules that face MCP: they declare tools, shape results or run transports. Every other module
# of shared/ and servers/ is an engine (or policy) and must work without the SDK.
MCP_FACING = {
    "shared.server", "shared.transport", "servers.registry", "servers.cli",
    "shared.auth", "shared.jwks", "shared.admission",  # the HTTP transport's token verifier and call gate
    "servers.audio_tools.calls", "servers.image_tools.calls",
}


def _is_mcp_facing(module: str) -> bool:
    return module in MCP_FACING or (module.endswith(".server") and module.startswith("servers."))


def _modules() -> dict[str, Path]:
    found = {}
    for top in ("shared", "servers"):
        for path in (REPO / top).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path) -> set[str]:
    """Every module named by an import anywhere in the file, lazy imports inside functions included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _within(names: set[str], roots: tuple[str, ...]) -> set[str]:
    return {name for name in names if name.split(".")[0] in roots}


def test_shared_never_imports_servers():
    offenders = {module: sorted(_within(_imports(path), ("servers",)))
                 for module, path in _modules().items() if module.startswith("shared")}
    assert not {m: found for m, found in offenders.items() if found}


def test_engine_modules_never_reach_the_mcp_sdk():
    modules = _modules()
    direct = {module: _imports(path) for module, path in modules.items()}
    suite = {module: {name for name in names if name in modules} for module, names in direct.items()}

    def reaches_sdk(module: str) -> list[str] | None:
        """The import chain from `module` to the SDK, or None."""
        seen: set[str] = set()
        paths = [[module]]
        while paths:
            path = paths.pop()
            current = path[-1]
            if _within(direct[current], SDK):
                return path + sorted(_within(direct[current], SDK))[:1]
            for following in sorted(suite[current] - seen):
                seen.add(following)
                paths.append([*path, following])
        return None

    chains = {module: chain for module in modules if not _is_mcp_facing(module)
              if (chain := reaches_sdk(module)) is not None}
    assert not chains, "\n".join(" -> ".join(chain) for chain in chains.values())
    assert all(_is_mcp_facing(module) for module in modules if _within(direct[module], SDK))


def test_named_temporary_files_are_made_only_through_the_registry():
    """A named temporary made past shared/scratch.py would outlive a server stopped with SIGTERM
    (shutdown ends the process with os._exit, which runs no finally blocks)."""
    named = {"mkstemp", "mkdtemp", "NamedTemporaryFile", "TemporaryDirectory"}
    offenders = []
    for module, path in _modules().items():
        if module == "shared.scratch":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in named:
                offenders.append(f"{module}:{node.lineno} {node.attr}")
            elif isinstance(node, ast.ImportFrom) and node.module == "tempfile":
                offenders += [f"{module}:{node.lineno} {a.name}" for a in node.names if a.name in named]
    assert not offenders, offenders
