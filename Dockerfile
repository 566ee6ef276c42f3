# The one image of the project: `llmservice operator` and `llmservice router` both run from
# it (the CRD's default router image is this image).
#   docker build -t ghcr.io/llmservice/llmservice:0.1.0 .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LLMSERVICE_TEMPLATES=/opt/llmservice/templates

WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN pip install --no-compile . \
    && rm -rf /src

# Rendering reads its Jinja2 templates from here (see llmservice/render/templating.py).
COPY templates/ /opt/llmservice/templates/

# The same numeric user as the Deployment's securityContext (runAsNonRoot needs a number).
RUN groupadd --gid 65532 llmservice \
    && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin llmservice
USER 65532:65532
WORKDIR /

# kopf's liveness endpoint (operator) and the router's port.
EXPOSE 8081 8080
ENTRYPOINT ["llmservice"]
CMD ["--help"]
