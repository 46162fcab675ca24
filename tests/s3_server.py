"""A real S3 API on 127.0.0.1 for tests: moto's server mode, in a thread of the test process.

The platform reaches it the way it reaches MinIO or AWS: through the standard
``AWS_ENDPOINT_URL`` and credential variables, which :func:`aws_environment`
returns for a running server.
"""

from __future__ import annotations

import uuid

from moto.server import ThreadedMotoServer

__all__ = ["MotoS3", "aws_environment"]


def aws_environment(endpoint: str) -> dict[str, str]:
    """The standard AWS variables that point S3 clients at ``endpoint`` with test credentials."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


class MotoS3:
    """moto's S3 server on a free port of 127.0.0.1 (``start``/``stop``)."""

    def __init__(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.endpoint = ""

    def start(self) -> MotoS3:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.stop()

    def new_bucket(self) -> str:
        """Create an empty bucket with a unique name and return the name."""
        import boto3

        name = f"mlops-{uuid.uuid4().hex[:16]}"
        env = aws_environment(self.endpoint)
        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_DEFAULT_REGION"],
        )
        client.create_bucket(Bucket=name)
        return name
