"""The image every component names until a pipeline sets its own (``lumbar compile`` always does)."""

# Kept equal to pipelines.images.default_images()["cpu"] for this package version (a test checks it).
DEFAULT_IMAGE = "ghcr.io/lumbar-spine/lumbar:0.1.0-cpu"
