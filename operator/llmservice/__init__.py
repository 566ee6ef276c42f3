"""LLMService: one Kubernetes resource, a complete LLM serving stack on GPUs."""

__version__ = "0.1.0"
