# syntax=docker/dockerfile:1
# Build: docker build -t reco-server .      Run: docker run -p 50051:50051 -p 9464:9464 reco-server
# The default bundle (15,000 generated rows, seed 7: deterministic) is trained and compiled at
# image build time; mount another bundle and set RECO_BUNDLE to serve it instead.

FROM python:3.11-slim AS build
# gcc compiles the model library; libgomp1 is LightGBM's OpenMP runtime.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev libgomp1 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY reco ./reco
COPY training ./training
COPY compiler ./compiler
COPY server ./server
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir .
RUN /opt/venv/bin/python -m training generate --rows 15000 --seed 7 --out /tmp/data \
 && /opt/venv/bin/python -m training train --data /tmp/data --out /bundles/default \
 && /opt/venv/bin/python -m compiler build /bundles/default

FROM python:3.11-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home reco
COPY --from=build /opt/venv /opt/venv
COPY --from=build --chown=reco:reco /bundles /bundles
USER reco
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    RECO_BUNDLE=/bundles/default \
    RECO_HOST=0.0.0.0 \
    RECO_PORT=50051 \
    RECO_METRICS_PORT=9464
EXPOSE 50051 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-m", "server.healthcheck"]
ENTRYPOINT ["python", "-m", "server"]
