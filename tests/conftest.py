"""Shared fixtures: run `luigi`/`deeprecipe` as a user would, in subprocesses."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


def base_env(extra: dict | None = None) -> dict:
    # in-process training tests leave MASTER_PORT etc. set (and that port bound): not for children
    dist_vars = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DEEPRECIPE_", "TOYFLOW_")) and k not in dist_vars}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra or {})
    return env


def luigi_cmd(*args: str, local: bool = True) -> list[str]:
    cmd = [str(BIN / "luigi"), *args]
    if local:
        cmd.append("--local-scheduler")
    return cmd


def run(cmd: list[str], env: dict | None = None, timeout: float = 300, check: bool = True):
    r = subprocess.run(cmd, cwd=REPO, env=base_env(env), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}\nSTDOUT:\n{r.stdout[-4000:]}\n"
                             f"STDERR:\n{r.stderr[-6000:]}")
    return r


def deeprecipe(*args: str, env: dict | None = None, check: bool = True):
    return run([str(BIN / "deeprecipe"), *args], env=env, check=check)


@pytest.fixture
def store(tmp_path) -> str:
    return str(tmp_path / "store")


@pytest.fixture(scope="session")
def moto_server():
    """A real S3-protocol server (moto) on 127.0.0.1; yields the env that points s3fs at it."""
    port = free_port()
    exe = shutil.which("moto_server", path=str(BIN)) or "moto_server"
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing-secret-never-logged", "AWS_DEFAULT_REGION": "us-east-1"}
        yield env
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def s3_bucket(moto_server):
    import boto3
    name = f"bucket-{time.time_ns()}"
    boto3.client("s3", endpoint_url=moto_server["AWS_ENDPOINT_URL"], region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing-secret-never-logged"
                 ).create_bucket(Bucket=name)
    return name


@pytest.fixture
def luigid(tmp_path):
    """A real central scheduler on 127.0.0.1; yields its port."""
    port = free_port()
    proc = subprocess.Popen([str(BIN / "luigid"), "--address", "127.0.0.1", "--port", str(port),
                             "--state-path", str(tmp_path / "luigid.state"), "--logdir", str(tmp_path)],
                            cwd=REPO, env=base_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
