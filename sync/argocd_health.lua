-- Argo CD health check for OrasCache (cache.converged-computing.github.io).
--
-- OrasCache status follows kstatus: the sync service writes status.observedGeneration and
-- the conditions Ready, Reconciling and Stalled in one write (sync/report/status.py), so this
-- check reads them the way kstatus does:
--   no conditions yet, or status written for an older spec  -> Progressing
--   Stalled=True  (InvalidSpec, Conflict: retrying cannot help)  -> Degraded
--   Reconciling=True  (replicas not ready, an apply or prune to retry)  -> Progressing
--   Ready=True  -> Healthy
-- The message is the sync service's own condition message.
-- Only Lua's base and table libraries are used: argocd-cm scripts run without the others
-- unless resource.customizations.useOpenLibs is set.
-- (The CRD defaults status to {observedGeneration: -1} until the first write; with an
-- older CRD, such an object has no status at all.)
local hs = {}
hs.status = "Progressing"
hs.message = "Waiting for the sync service to report status"
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  hs.message = "Waiting for the sync service to observe generation " .. generation ..
    " (status is for generation " .. observed .. ")"
  return hs
end
local ready, reconciling, stalled = nil, nil, nil
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Ready" then
    ready = condition
  elseif condition.type == "Reconciling" then
    reconciling = condition
  elseif condition.type == "Stalled" then
    stalled = condition
  end
end
local function say(condition)
  if condition.message ~= nil and condition.message ~= "" then
    return condition.message
  end
  if condition.reason ~= nil then
    return condition.reason
  end
  return condition.type
end
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = say(stalled)
elseif reconciling ~= nil and reconciling.status == "True" then
  hs.message = say(reconciling)
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = say(ready)
elseif ready ~= nil then
  hs.message = say(ready)
end
return hs
