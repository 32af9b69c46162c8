# syntax=docker/dockerfile:1
# Build: docker build -t reco-server .
# Run (TLS on the public port; the certificate and key are mounted, never built in):
#   docker run -p 50051:50051 -p 9464:9464 -v "$PWD/tls:/etc/reco/tls:ro" reco-server
# tls/ holds tls.crt (the chain) and tls.key; for mTLS add ca.crt and set
# RECO_TLS_CLIENT_CA=/etc/reco/tls/ca.crt (the health check then needs RECO_HEALTHCHECK_CERT and
# RECO_HEALTHCHECK_KEY). The health check connects to 127.0.0.1: the certificate must name it,
# or set RECO_HEALTHCHECK_SERVER_NAME (and RECO_HEALTHCHECK_CA when a CA signed it).
# Admin (ReloadModel) is not on the public port: it listens on the Unix socket
# /run/reco/admin-50051.sock inside the container (docker exec to reach it).
# The default bundle (15,000 generated rows, seed 7: deterministic) is trained, compiled and
# signed at image build time with a key generated there. For production, mount your bundles and
# your own key, and set RECO_BUNDLE and RECO_BUNDLE_KEY_FILE: anyone with this image can read
# its built-in key.

FROM python:3.11-slim AS build
# gcc compiles the model library; libgomp1 is LightGBM's OpenMP runtime (training only).
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev libgomp1 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY reco ./reco
COPY training ./training
COPY compiler ./compiler
COPY server ./server
# The build tools (training, compiler) live in this stage only; the wheel carries the code.
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir '.[train,build]' \
 && /opt/venv/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .
RUN /opt/venv/bin/python -m training generate --rows 15000 --seed 7 --out /tmp/data \
 && /opt/venv/bin/python -m training keygen --out /keys/bundle.key \
 && /opt/venv/bin/python -m training train --data /tmp/data --out /bundles/default \
      --bundle-key-file /keys/bundle.key \
 && /opt/venv/bin/python -m compiler build /bundles/default --bundle-key-file /keys/bundle.key

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home reco \
 && install -d -o reco -g reco -m 0700 /run/reco
# Only what a serving process needs: the project's wheel with the serve extra (no pandas,
# matplotlib, scikit-learn, LightGBM, Treelite or onnxmltools; docs/architecture.md).
COPY --from=build /wheels /wheels
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir "$(ls /wheels/*.whl)[serve]" \
 && rm -rf /wheels
# Bundles and the key belong to root: the server reads them and can change neither.
COPY --from=build /bundles /bundles
COPY --from=build --chown=root:reco --chmod=0440 /keys/bundle.key /etc/reco/bundle.key
USER reco
# RECO_HOST=0.0.0.0 is the public listener only; Admin stays on the socket in RECO_RUNTIME_DIR.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    RECO_BUNDLE=/bundles/default \
    RECO_BUNDLE_KEY_FILE=/etc/reco/bundle.key \
    RECO_HOST=0.0.0.0 \
    RECO_PORT=50051 \
    RECO_METRICS_PORT=9464 \
    RECO_TLS_CERT=/etc/reco/tls/tls.crt \
    RECO_TLS_KEY=/etc/reco/tls/tls.key \
    RECO_RUNTIME_DIR=/run/reco
EXPOSE 50051 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-m", "server.healthcheck"]
ENTRYPOINT ["python", "-m", "server"]
