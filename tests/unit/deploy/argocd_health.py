"""Run the shipped Argo CD health script the way Argo CD does: Lua 5.1, `obj`, few libraries.

Argo CD evaluates `resource.customizations.health.<group>_<kind>` with gopher-lua (Lua 5.1),
the live object as the global `obj` (JSON objects and arrays as tables, arrays from 1), and,
unless `useOpenLibs` is set for the kind, only the package, base and table libraries and a
safe part of os. The runner gives the script less still: a fresh environment with the base
functions and `table`, and no metatable on strings, so a call to a string function or
method fails here as it would there. It checks the answer as Argo CD does: a table whose
`status` is one of Argo CD's health statuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lupa.lua51 as lua51

REPO = Path(__file__).resolve().parents[3]
ARGOCD = REPO / "deploy" / "argocd"
HEALTH_SCRIPT = ARGOCD / "health.lua"
CONFIGMAP_KEY = "resource.customizations.health.serving.llmservice.dev_LLMService"
# The statuses Argo CD accepts from a health script.
STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}

# Lua 5.1's base library, without what loads code or touches the process.
_BASE = [
    "assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall", "rawequal",
    "rawget", "rawset", "select", "setmetatable", "tonumber", "tostring", "type", "unpack",
    "xpcall", "_VERSION",
]  # fmt: skip

_RUN = """
local script, obj, base, tbl = ...
local chunk, problem = loadstring(script, "health.lua")
if chunk == nil then error(problem) end
local env = {}
for _, name in ipairs(base) do env[name] = _G[name] end
env.table = tbl
env._G = env
env.obj = obj
setfenv(chunk, env)
local saved = getmetatable("")
debug.setmetatable("", nil)
local ok, hs = pcall(chunk)
debug.setmetatable("", saved)
if not ok then error(hs) end
return hs
"""


@dataclass(frozen=True)
class Health:
    status: str
    message: str


def argocd_health(obj: dict[str, Any], script: str | None = None) -> Health:
    """The health the script assigns to `obj`; raises if the script fails or answers nonsense."""
    source = HEALTH_SCRIPT.read_text(encoding="utf-8") if script is None else script
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    table = runtime.table_from
    run = runtime.execute(f"return function(...) {_RUN} end")
    base = table(_BASE)
    globals_ = runtime.globals()
    hs = run(source, table(obj, recursive=True), base, globals_.table)
    if hs is None:
        raise AssertionError("the health script returned nothing")
    status, message = hs["status"], hs["message"]
    if status not in STATUSES:
        raise AssertionError(f"the health script returned status {status!r}")
    if not isinstance(message, str):
        raise AssertionError(f"the health script returned message {message!r}")
    return Health(status, message)
