"""The LLMService API: typed models of spec and status, the single source of truth.

The CRD in `crds/` is generated from these models (`llmservice crd`), and offline validation
evaluates the very CEL rules the CRD carries, so the schema, the CRD and the tests never drift.

Validation (`llmservice.api.validation`, with cel-python behind it) is not imported here:
the router reads the models' defaults and has no use for a CEL interpreter.
"""

from llmservice.api.resource import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAME,
    VERSION,
    LLMService,
)
from llmservice.api.spec import LLMServiceSpec
from llmservice.api.status import Condition, LLMServiceStatus, Throughput

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "SHORT_NAME",
    "VERSION",
    "Condition",
    "LLMService",
    "LLMServiceSpec",
    "LLMServiceStatus",
    "Throughput",
]
