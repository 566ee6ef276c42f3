"""The LLMService resource: identity constants, metadata and the top-level model."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmservice.api.schema_types import CamelModel, cel
from llmservice.api.spec import LLMServiceSpec
from llmservice.api.status import LLMServiceStatus

GROUP = "serving.llmservice.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "LLMService"
PLURAL = "llmservices"
SINGULAR = "llmservice"
SHORT_NAME = "llms"

# Children are named `<name>-<suffix>`; the longest suffix fixes the longest allowed name so
# every derived name stays a 63-character DNS label.
CHILD_NAME_SUFFIXES = ("-engine", "-router", "-models")
MAX_NAME_LENGTH = 63 - max(len(suffix) for suffix in CHILD_NAME_SUFFIXES)

# Root-level rules: only metadata.name and metadata.namespace are visible to CEL there.
NAME_RULES = (
    cel(
        f"self.metadata.name.size() <= {MAX_NAME_LENGTH}",
        f"metadata.name must be at most {MAX_NAME_LENGTH} characters so that derived names"
        " (<name>-engine, <name>-router, <name>-models) fit 63",
        ".metadata.name",
    ),
    cel(
        "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
        "metadata.name must start with a letter and contain only lowercase letters, digits"
        " and '-', because it names Services",
        ".metadata.name",
    ),
)


class ObjectMeta(BaseModel):
    """The part of metadata that rendering reads. Server-set fields are accepted and kept."""

    model_config = ConfigDict(extra="allow", frozen=True)

    # Length and form of the name are checked by NAME_RULES, the same CEL the CRD carries.
    name: Annotated[str, Field(min_length=1)]
    namespace: Annotated[str, Field(min_length=1, max_length=63)] = "default"
    uid: str | None = None
    generation: int | None = None
    # The API server validates an object's own labels and annotations itself, with its own
    # limits (an applied object's last-applied-configuration annotation can be long).
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class LLMService(CamelModel):
    """An LLMService resource as read from a file or from the API server."""

    api_version: Literal["serving.llmservice.dev/v1alpha1"] = Field(
        alias="apiVersion", description="Always serving.llmservice.dev/v1alpha1."
    )
    kind: Literal["LLMService"] = Field(description="Always LLMService.")
    metadata: ObjectMeta
    spec: LLMServiceSpec
    status: LLMServiceStatus | None = None

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace
