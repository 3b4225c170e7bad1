"""A real S3-compatible server on loopback for the object-store tests: moto's standalone server (the
``moto[server]`` dev dependency) in its own process on 127.0.0.1 with a port the OS picks.

It checks credentials: the server starts with IAM authentication on (moto's INITIAL_NO_AUTH_ACTION_COUNT),
the fixture creates an IAM user with an access key allowed everything, and every later request must be
signed with that key, so a wrong key gets the same 403 ``InvalidAccessKeyId`` as on AWS.

Tests import the fixtures by name (``from tests.s3_server import s3, s3_server  # noqa: F401``). By hand:
``python -m tests.s3_server`` prints the endpoint and serves until interrupted.

Nothing here talks to anything but 127.0.0.1: the AWS variables point botocore at the local endpoint,
at files that do not exist instead of ~/.aws, and turn off the EC2 metadata lookup (169.254.169.254).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
SETUP_ACTIONS = 3  # unauthenticated requests the server allows: create user, access key, user policy


@dataclass
class S3Server:
    """A running loopback S3 server and the credentials it accepts."""
    endpoint: str
    access_key: str
    secret_key: str
    process: subprocess.Popen
    log: Path
    buckets: list[str] = field(default_factory=list)

    def env(self, config_dir: Path) -> dict[str, str]:
        """The environment a user exports to reach this server (the names every AWS SDK reads)."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": REGION,
                "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_CONFIG_FILE": str(config_dir / "aws-config-absent"),
                "AWS_SHARED_CREDENTIALS_FILE": str(config_dir / "aws-credentials-absent")}

    def client(self, **credentials):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=credentials.get("key", self.access_key),
                            aws_secret_access_key=credentials.get("secret", self.secret_key))

    def new_bucket(self, prefix: str = "defr") -> str:
        """Creates a bucket with a unique name (tests share one server) and returns the name."""
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.client().create_bucket(Bucket=name)
        self.buckets.append(name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key under ``prefix`` (read with boto3, independently of the code under test)."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]


def start(log: Path, timeout: float = 60) -> S3Server:
    """Starts the server process, enables authentication and creates the IAM user whose key it accepts."""
    import boto3

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(INITIAL_NO_AUTH_ACTION_COUNT=str(SETUP_ACTIONS), AWS_EC2_METADATA_DISABLED="true",
               PYTHONPATH=str(ROOT))
    endpoint_file = log.with_suffix(".endpoint")
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tests.s3_server", str(endpoint_file)], stdout=out,
                                stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    deadline = time.monotonic() + timeout
    while not endpoint_file.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if not endpoint_file.exists():
        proc.kill()
        raise RuntimeError(f"the loopback S3 server did not start in {timeout:.0f} s; its log {log}:\n"
                           f"{log.read_text()[-3000:]}")
    endpoint = endpoint_file.read_text().strip()
    # The only unauthenticated requests (SETUP_ACTIONS of them); every later one must be signed.
    iam = boto3.client("iam", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="setup",
                       aws_secret_access_key="setup")
    iam.create_user(UserName="defr-tests")
    key = iam.create_access_key(UserName="defr-tests")["AccessKey"]
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    iam.put_user_policy(UserName="defr-tests", PolicyName="everything", PolicyDocument=json.dumps(policy))
    return S3Server(endpoint, key["AccessKeyId"], key["SecretAccessKey"], proc, log)


def stop(server: S3Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(10)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> S3Server:
    """One loopback S3 server for the test session (tests make their own buckets)."""
    from tests.conftest import require_module

    require_module("moto", "the object-store tests need moto[server] (the dev extra: `make install-dev`)")
    server = start(tmp_path_factory.mktemp("s3-server") / "server.log")
    yield server
    stop(server)


@pytest.fixture
def s3(s3_server, monkeypatch, tmp_path) -> S3Server:
    """The server with its credentials and endpoint exported as AWS_* variables, as a user would, and
    fsspec's cached S3 clients dropped (they hold the credentials they were made with)."""
    for key in [k for k in os.environ if k.startswith(("AWS_", "FSSPEC_S3"))]:
        monkeypatch.delenv(key)
    for key, value in s3_server.env(tmp_path).items():
        monkeypatch.setenv(key, value)
    forget_s3_clients()
    yield s3_server
    forget_s3_clients()


def forget_s3_clients() -> None:
    """Drops fsspec's cached S3 filesystems (each keeps the credentials it resolved when made)."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


def main(argv: list[str] | None = None) -> None:
    """Serves S3 (and the IAM API the fixture needs) on 127.0.0.1 at a free port until killed; prints the
    endpoint, and writes it to the file named by the first argument, if any, once it accepts requests."""
    from moto.moto_server.werkzeug_app import (DomainDispatcherApplication, MotoRequestHandler,
                                               create_backend_app)
    from werkzeug.serving import make_server

    argv = sys.argv[1:] if argv is None else argv
    parent = os.getppid()

    def exit_with_parent() -> None:  # a test run killed hard (SIGKILL, OOM) leaves no server behind
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=exit_with_parent, daemon=True).start()
    server = make_server("127.0.0.1", 0, DomainDispatcherApplication(create_backend_app), threaded=True,
                         request_handler=MotoRequestHandler)
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    print(f"S3 endpoint {endpoint}", flush=True)
    if argv:
        tmp = Path(argv[0]).with_suffix(".tmp")
        tmp.write_text(endpoint + "\n")
        tmp.replace(argv[0])  # the parent never reads half a line
    server.serve_forever()


if __name__ == "__main__":
    main()
