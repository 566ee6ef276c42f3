"""The operator: kopf handlers around one level-based `reconcile()`.

Layers, each in its own module: `conditions` (the condition table), `compare` (is a live
object already what we want), `observe` (status from what the cluster shows), `throughput`
(rates from the engines' vLLM counters), `kube` (the only module that talks to the API
server), `store` (what the watches have seen), `reconcile` (the loop body) and `handlers`
(kopf wiring).
"""
