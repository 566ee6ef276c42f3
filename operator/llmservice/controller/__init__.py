"""The operator: kopf handlers around one level-based `reconcile()`.

Layers, each in its own module: `conditions` (the condition table), `compare` (is a live
object already what we want), `observe` (status from what the cluster shows), `throughput`
(rates from the engines' vLLM counters), `kube` (the only module that talks to the API
server), `store` (what the watches have seen), `render_cache` (validation and rendering
per generation), `refusals` (API errors that are the object's fault) and `fieldpaths`
(which spec field a child's field comes from), `reconcile` (the loop body), `periodic`
(every LLMService again at an interval) and `handlers` (kopf wiring).
"""
