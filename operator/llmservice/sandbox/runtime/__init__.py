"""The local runtime: real processes for the sandbox's Pods, reachable at their Pod IPs.

kwok marks Pods Running without running anything. For the project's own workloads the
runtime starts the matching process (see `workloads.WORKLOADS`) bound to the Pod IP, which
kwok hands out from a loopback range, and stops it when the Pod goes away. Each process
authenticates to the API server as its Pod's ServiceAccount.
"""
