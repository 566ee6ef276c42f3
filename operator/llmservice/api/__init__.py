"""The LLMService API: typed models of spec and status, the single source of truth.

The CRD in `crds/` is generated from these models (`llmservice crd`), and offline validation
evaluates the very CEL rules the CRD carries, so the schema, the CRD and the tests never drift.
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
from llmservice.api.validation import FieldError, InvalidLLMService, parse_llmservice

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "SHORT_NAME",
    "VERSION",
    "Condition",
    "FieldError",
    "InvalidLLMService",
    "LLMService",
    "LLMServiceSpec",
    "LLMServiceStatus",
    "Throughput",
    "parse_llmservice",
]
