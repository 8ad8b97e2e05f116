"""Shared fixtures: a real S3-compatible server (moto in server mode) and store roots on every backend."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's S3 server on a free loopback port; sets the endpoint and dummy credentials for this process
    and every subprocess it starts. Yields the endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1"
    )
    try:
        yield endpoint
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def s3_bucket(s3_server: str) -> str:
    """A fresh bucket on the moto server; yields ``s3://bucket``."""
    import boto3

    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    return f"s3://{name}"


@pytest.fixture(params=["local", "file", "s3"])
def store_root(request: pytest.FixtureRequest, tmp_path) -> str:
    """A store prefix on each backend: a plain path, a file:// URI and an s3:// prefix."""
    if request.param == "local":
        return str(tmp_path / "store")
    if request.param == "file":
        return f"file://{tmp_path}/store"
    bucket = request.getfixturevalue("s3_bucket")
    return f"{bucket}/prefix/store"


PHANTOM_SEED = 7


@pytest.fixture(scope="session")
def phantom(tmp_path_factory) -> Path:
    """A tiny phantom dataset (16 training, 2 test studies, fixed seed), shared by the session."""
    from lumbar_core.synthetic import generate, get_profile

    root = tmp_path_factory.mktemp("phantom") / "data"
    generate(root, studies=16, test_studies=2, profile=get_profile("tiny"), seed=PHANTOM_SEED, workers=2)
    return root


@pytest.fixture(scope="session")
def ingested(phantom, tmp_path_factory) -> str:
    """The phantom's training split ingested into a local run; yields the run prefix."""
    from lumbar_core.stages.ingest import IngestParams, run

    run_uri = str(tmp_path_factory.mktemp("run") / "run")
    run(data_uri=str(phantom), run_uri=run_uri, params=IngestParams(workers=2))
    return run_uri


@pytest.fixture(scope="session")
def segmented(phantom, ingested) -> str:
    """The ingested run with vertebra-train (short CPU training), vertebra-segment, disc-label and balance."""
    from lumbar_core.stages import balance, disc_label, vertebra_segment, vertebra_train

    vertebra_train.run(spider_uri=str(phantom / "spider"), run_uri=ingested, params=vertebra_train.VertebraTrainParams(epochs=6))
    vertebra_segment.run(run_uri=ingested, params=vertebra_segment.VertebraSegmentParams())
    disc_label.run(run_uri=ingested, params=disc_label.DiscLabelParams())
    balance.run(run_uri=ingested, params=balance.BalanceParams(allow_missing=True))
    return ingested
