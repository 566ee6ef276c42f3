# The one image of the project: `llmservice operator` and `llmservice router` both run from
# it (the CRD's default router image is this image).
#   docker build -t ghcr.io/llmservice/llmservice:0.1.0 .
#
# It installs llmservice exactly as the packaging test and the sandbox's Pods do (see
# operator/llmservice/sandbox/product.py): `pip wheel --no-deps` builds the wheel from
# pyproject.toml, README.md and operator/, then `pip install --no-compile` installs that
# wheel with no extras. The templates are package data inside the wheel.

FROM python:3.11-slim AS wheel
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Mounted, not copied: the wheel is installed and leaves no layer behind.
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    pip install --no-compile /wheels/llmservice-*.whl

# The same numeric user as the Deployment's securityContext (runAsNonRoot needs a number).
RUN groupadd --gid 65532 llmservice \
    && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin llmservice
USER 65532:65532
WORKDIR /

# kopf's liveness endpoint (operator) and the router's port.
EXPOSE 8081 8080
ENTRYPOINT ["llmservice"]
CMD ["--help"]
