-- Argo CD health of a serving.llmservice.dev/v1alpha1 LLMService, from its kstatus status.
--
-- Install as the argocd-cm key
-- resource.customizations.health.serving.llmservice.dev_LLMService (see README.md).
-- Argo CD runs it in gopher-lua (Lua 5.1) with `obj` set to the live object and, unless
-- useOpenLibs is set, only the package, base and table libraries and a safe part of os
-- loaded: the script calls no string or io function. Numbers may reach it as strings
-- (json.Number), so generations are compared through tonumber.
--
--   no status yet, or metadata.generation not yet observed  -> Progressing
--   Stalled=True (Unschedulable, SecretNotFound, ...)        -> Degraded, with its message
--   Reconciling=True (rolling out, waiting, API errors)      -> Progressing, with its message
--   Ready=True (reason ScaledToZero too: no engine replica,   -> Healthy
--     the router up)
--   Ready=False, reason ScaledToZero (no engine replica,     -> Healthy: the spec or the
--     the router not ready)                                     autoscaler asks for no
--     replica and got none, as Argo CD's own check says of a Deployment scaled to 0;
--     Suspended would hold `argocd app wait --health` and sync waves for ever.
--   Ready=Unknown or missing                                 -> Progressing
--   Ready=False otherwise                                    -> Degraded, with its message

local hs = {}

local function find(conditions, kind)
  for _, condition in ipairs(conditions) do
    if condition.type == kind then
      return condition
    end
  end
  return nil
end

local function is_true(condition)
  return condition ~= nil and condition.status == "True"
end

-- "Reason: message", or whichever of the two the condition has.
local function describe(condition)
  local reason = condition.reason or ""
  local message = condition.message or ""
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  end
  if message ~= "" then
    return message
  end
  return reason
end

local status = obj.status
if status == nil or status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

local generation = tonumber(obj.metadata.generation)
if generation ~= nil and tonumber(status.observedGeneration) ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local stalled = find(status.conditions, "Stalled")
if is_true(stalled) then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

local reconciling = find(status.conditions, "Reconciling")
if is_true(reconciling) then
  hs.status = "Progressing"
  hs.message = describe(reconciling)
  return hs
end

local ready = find(status.conditions, "Ready")
if ready == nil or ready.status == "Unknown" then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end
if ready.reason == "ScaledToZero" then
  hs.status = "Healthy"
  hs.message = "No engine replica serves requests: " .. describe(ready)
  return hs
end
hs.status = "Degraded"
hs.message = describe(ready)
return hs
