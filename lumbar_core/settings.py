"""Every environment variable the library reads, read lazily (at call time, never at import).

| variable | meaning |
|---|---|
| ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) | S3-compatible endpoint (MinIO, SeaweedFS, moto); unset means AWS |
| ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_DEFAULT_REGION`` | read by boto3 itself |
| ``LUMBAR_S3_MAX_ATTEMPTS`` | HTTP attempts per S3 call before giving up (default 6; botocore itself never retries) |
| ``LUMBAR_CODE_VERSION`` | code version recorded in stage manifests (images set it; default: package version) |
| ``LUMBAR_WORKERS`` | worker processes for parallel work (default: CPU count) |
"""

from __future__ import annotations

import os


def aws_endpoint_url() -> str | None:
    """The S3 endpoint URL, or None for AWS's default endpoints."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def s3_max_attempts() -> int:
    """How many times one S3 operation is tried before its error is raised.

    This is the only retry count: :func:`lumbar_core.store.retry` makes these attempts, while botocore
    is configured for one HTTP attempt per call and boto3's transfers for one download attempt.
    """
    return max(1, int(os.environ.get("LUMBAR_S3_MAX_ATTEMPTS", "6")))


def code_version() -> str:
    """The version of this code, recorded in every manifest."""
    from lumbar_core import __version__

    return os.environ.get("LUMBAR_CODE_VERSION") or __version__


def workers() -> int:
    """Worker processes for parallel work: ``LUMBAR_WORKERS`` or the CPU count."""
    value = os.environ.get("LUMBAR_WORKERS")
    return max(1, int(value)) if value else max(1, os.cpu_count() or 1)
