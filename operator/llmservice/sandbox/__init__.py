"""A local Kubernetes control plane with simulated GPU nodes, and a runtime for its Pods.

The real kube-apiserver, kube-controller-manager, kube-scheduler and etcd, built from source
once (`build`), run on loopback with kwok playing the kubelets of nodes that advertise
`nvidia.com/gpu`. The local runtime (`runtime/`) starts the project's own processes for the
project's Pods at their Pod IPs. `cluster.Sandbox` is the one entry point: the
`llmservice sandbox` command and the e2e fixture both use it.
"""
