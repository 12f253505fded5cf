"""A real S3-compatible server for the shared-storage tests: moto's standalone server (`moto_server`, from
the `moto[server]` test dependency), started by the tests as a separate process on a free port.

`S3Server.env(bucket)` is the environment a deployment sets (docs/configuration.md#shared-storage-s3-minio);
`s3_storages(...)` is what config.settings makes of them, for a test's `settings.STORAGES`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.orthanc import free_port

ACCESS_KEY, SECRET_KEY, REGION = "cbir-test-key", "cbir-test-secret", "us-east-1"


@dataclass
class S3Server:
    url: str
    log: Path

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def bucket(self) -> str:
        """A new, empty, private bucket."""
        name = f"cbir-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def get(self, bucket: str, key: str) -> bytes:
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()

    def env(self, bucket: str) -> dict[str, str]:
        """The environment of a deployment (web process and every worker) storing in `bucket`."""
        return {
            "MEDIA_STORAGE": "s3",
            "AWS_STORAGE_BUCKET_NAME": bucket,
            "AWS_S3_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_S3_REGION_NAME": REGION,
            "AWS_S3_ADDRESSING_STYLE": "path",
        }


def start_moto(folder: Path) -> tuple[subprocess.Popen, S3Server]:
    binary = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    if not Path(binary).is_file():
        pytest.fail("moto_server is missing: install the test extra (`make install`: moto[server]).", pytrace=False)
    port = free_port()
    log = folder / "moto.log"
    env = {**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [binary, "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    server = S3Server(url=f"http://127.0.0.1:{port}", log=log)
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"{server.url}/moto-api/", timeout=2).status_code < 500:
                return process, server
        except requests.ConnectionError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"moto_server did not start: {log.read_text(errors='replace')[-2000:]}", pytrace=False)
        time.sleep(0.1)


def s3_storages(server: S3Server, bucket: str) -> dict:
    """config.settings' STORAGES under `server.env(bucket)` (tests/test_shared_storage.py checks they agree)."""
    options = {
        "bucket_name": bucket,
        "default_acl": "private",
        "querystring_auth": True,
        "file_overwrite": True,
        "region_name": REGION,
        "endpoint_url": server.url,
        "access_key": ACCESS_KEY,
        "secret_key": SECRET_KEY,
        "addressing_style": "path",
    }
    backend = "storages.backends.s3.S3Storage"
    return {
        "default": {"BACKEND": backend, "OPTIONS": {**options, "location": "media"}},
        "artefacts": {"BACKEND": backend, "OPTIONS": {**options, "location": "artefacts"}},
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
    }
