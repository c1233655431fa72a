"""Connections honour their extras as Airflow's Postgres and Amazon providers do.

Postgres extras must reach psycopg2's connect call; an aws connection without keys must
use the default credential chain (checked against loopback stand-ins for the container
credentials endpoint and STS, with the real minio client signing real requests); a CA
bundle must be what TLS trusts (a real TLS server on loopback); no secret in any repr or
in the worker's arguments, and the worker's environment carries what IAM needs.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import sqlalchemy as sa
import urllib3
from minio.credentials.providers import IamAwsProvider, StaticProvider

from callscribe import config, db, pipeline, storage
from tests.tls import TestCA

PG_SECRET = "pg-S3cr3t/with@chars"
KEY_SECRET = "sslkey-Passphr4se"
S3_SECRET = "s3-S3cr3t-value-1b2c"

# Every variable that could hand the chain credentials from this machine or its user.
CHAIN_VARS = pipeline.WORKER_AWS_CHAIN_ENV + ("AWS_ACCESS_KEY", "AWS_SECRET_KEY", "AWS_CA_BUNDLE", "SSL_CERT_FILE")


@pytest.fixture
def bare_aws_env(monkeypatch, tmp_path):
    """No AWS credentials anywhere: no variables, no shared credentials file."""
    for name in CHAIN_VARS + ("CALLSCRIBE_S3_ENDPOINT", "CALLSCRIBE_PG_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))


# ---------------------------------------------------------------- loopback servers


@contextlib.contextmanager
def serve(handle: Callable[[BaseHTTPRequestHandler], tuple[int, dict[str, str], bytes]],
          tls: ssl.SSLContext | None = None) -> Iterator[tuple[int, list[dict]]]:
    """An HTTP(S) server on 127.0.0.1: ``handle`` answers; every request is recorded."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def _any(self):
            seen.append({"method": self.command, "path": self.path, "headers": dict(self.headers)})
            status, headers, body = handle(self)
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = do_PUT = do_POST = _any

        def log_message(self, *args):  # keep test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()


def _ok(_req) -> tuple[int, dict[str, str], bytes]:
    return 200, {}, b""


@pytest.fixture(scope="module")
def tls_server_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    ca, other = TestCA(folder / "ca"), TestCA(folder / "other", name="some other CA")
    return ca.pem, other.pem, ca.issue("s3")


@pytest.fixture
def https_s3(tls_server_files):
    """An HTTPS endpoint on loopback with a certificate from the test CA; answers 200."""
    _ca, _other, server = tls_server_files
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(server.cert, server.key)
    with serve(_ok, tls=ctx) as (port, seen):
        yield f"127.0.0.1:{port}", seen


# ---------------------------------------------------------------- postgres


def _pg_conn(extra: dict) -> config.ConnectionInfo:
    return config.connection_from_json("callscribe_postgres", json.dumps({
        "conn_type": "postgres", "host": "db.example.internal", "port": 6543, "login": "callscribe",
        "password": PG_SECRET, "schema": "calls", "extra": extra}))


class _Stop(Exception):
    pass


def _driver_kwargs(engine: sa.Engine) -> dict:
    """The keyword arguments the engine hands psycopg2.connect, caught before any network."""
    seen: dict = {}

    def capture(dialect, conn_rec, cargs, cparams):
        seen.update(cparams)
        raise _Stop

    sa.event.listen(engine, "do_connect", capture)
    try:
        with pytest.raises(_Stop):
            engine.connect()
    finally:
        sa.event.remove(engine, "do_connect", capture)
    return seen


def test_postgres_extras_reach_the_driver():
    pg = config.pg_from_connection(_pg_conn({
        "sslmode": "verify-full", "sslrootcert": "/etc/callscribe/ca.pem", "sslcert": "/etc/callscribe/client.crt",
        "sslkey": "/etc/callscribe/client.key", "sslpassword": KEY_SECRET, "connect_timeout": 5, "keepalives": True,
        "cursor": "dictcursor", "sqlalchemy_query": {"application_name": "callscribe"},
    }))
    engine = db.engine_from_settings(pg)
    try:
        kwargs = _driver_kwargs(engine)
    finally:
        engine.dispose()
    assert kwargs == {
        "host": "db.example.internal", "port": 6543, "user": "callscribe", "password": PG_SECRET, "dbname": "calls",
        "sslmode": "verify-full", "sslrootcert": "/etc/callscribe/ca.pem", "sslcert": "/etc/callscribe/client.crt",
        "sslkey": "/etc/callscribe/client.key", "sslpassword": KEY_SECRET, "connect_timeout": "5",
        "keepalives": "1", "application_name": "callscribe",
    }
    # The options travel beside the URL, so no rendering of the URL shows them.
    assert not engine.url.query
    assert "sslmode" not in engine.dialect.create_connect_args(engine.url)[1]
    for text in (repr(engine.url), str(engine.url), repr(pg)):
        assert PG_SECRET not in text and KEY_SECRET not in text
    assert "verify-full" in repr(pg) and "sslpassword" in repr(pg)


def test_postgres_without_extras_connects_as_before():
    pg = config.pg_from_connection(_pg_conn({}))
    assert pg.options == () and pg.connect_args() == {}
    url = f"postgresql+psycopg2://callscribe:{quote(PG_SECRET, safe='')}@db.example.internal:6543/calls"
    assert pg.sqlalchemy_url() == url


def test_postgres_uri_form_carries_tls_extras(monkeypatch, bare_aws_env):
    monkeypatch.setenv("AIRFLOW_CONN_CALLSCRIBE_POSTGRES",
                       f"postgresql://callscribe:{quote(PG_SECRET, safe='')}@db.example.internal:6543/calls"
                       "?sslmode=verify-full&sslrootcert=%2Fetc%2Fcallscribe%2Fca.pem")
    pg = config.pg_settings()
    assert (pg.host, pg.port, pg.user, pg.password, pg.dbname) == ("db.example.internal", 6543, "callscribe",
                                                                  PG_SECRET, "calls")
    assert pg.connect_args() == {"sslmode": "verify-full", "sslrootcert": "/etc/callscribe/ca.pem"}


@pytest.mark.parametrize("extra", [{"iam": True}, {"redshift": True, "iam": True}, {"azure_conn_id": "azure"}])
def test_cloud_token_logins_are_refused_not_ignored(extra):
    with pytest.raises(ValueError, match=next(iter(extra))):
        config.pg_from_connection(_pg_conn(extra))


def test_an_extra_the_driver_cannot_take_is_refused():
    with pytest.raises(ValueError, match="sslmode"):
        config.pg_from_connection(_pg_conn({"sslmode": ["verify-full"]}))


# ---------------------------------------------------------------- the URI form, as Airflow reads it

URIS = [
    f"postgresql://callscribe:{quote(PG_SECRET, safe='')}@DB.example.internal:6543/calls"
    "?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
    "postgres://callscribe@db/callscribe",
    "aws://?__extra__=" + quote(json.dumps({"endpoint_url": "https://minio:9000", "verify": "/ca.pem",
                                            "service_config": {"sts": {"endpoint_url": "https://sts.local"}}})),
    f"aws://AKIAEXAMPLE:{quote(S3_SECRET, safe='')}@/?region_name=eu-west-1&bucket=calls&verify=false",
    "aws://",
    "google-cloud-platform://user@host:1/x",
]


@pytest.mark.parametrize("uri", URIS)
def test_uri_parsing_matches_airflow(uri):
    from airflow.sdk import Connection

    theirs = Connection.from_uri(uri, conn_id="c")
    ours = config.connection_from_uri("c", uri)
    fields = ("conn_type", "host", "port", "login", "password", "schema")
    assert {f: getattr(ours, f) or None for f in fields} == {f: getattr(theirs, f) or None for f in fields}
    assert ours.extra_dejson == theirs.extra_dejson


# ---------------------------------------------------------------- object store: credentials


def _s3_conn(login=None, password=None, **extra) -> config.ConnectionInfo:
    return config.connection_from_json("callscribe_s3", json.dumps({
        "conn_type": "aws", "login": login, "password": password, "extra": extra}))


def test_keys_in_the_connection_are_static_credentials(bare_aws_env):
    s3 = config.s3_from_connection(_s3_conn("AKIAEXAMPLE", S3_SECRET, endpoint_url="https://minio.internal:9000",
                                            bucket="recordings", aws_session_token="sess-1"))
    assert (s3.endpoint, s3.secure, s3.bucket, s3.uses_default_chain) == ("minio.internal:9000", True, "recordings",
                                                                          False)
    store = storage.Store(s3)
    assert isinstance(store.client._provider, StaticProvider)
    creds = store.client._provider.retrieve()
    assert (creds.access_key, creds.secret_key, creds.session_token) == ("AKIAEXAMPLE", S3_SECRET, "sess-1")
    # The provider's other place for keys: the extra.
    s3x = config.s3_from_connection(_s3_conn(endpoint_url="http://m:9000", aws_access_key_id="AKIAX",
                                             aws_secret_access_key=S3_SECRET))
    assert (s3x.access_key, s3x.secret_key, s3x.secure) == ("AKIAX", S3_SECRET, False)


def test_a_connection_without_keys_uses_the_default_chain(bare_aws_env):
    s3 = config.s3_from_connection(_s3_conn(region_name="eu-west-1", bucket="calls"))
    # No endpoint: AWS S3 itself, over TLS, as boto3 does.
    assert (s3.endpoint, s3.secure, s3.region, s3.uses_default_chain) == ("s3.amazonaws.com", True, "eu-west-1", True)
    provider = storage.Store(s3).client._provider
    assert isinstance(provider, storage.DefaultCredentialChain)
    names = [name for name, _ in provider.providers]
    assert names == ["environment", "shared credentials file", "IAM"]
    assert isinstance(provider.providers[-1][1], IamAwsProvider)
    assert "AWS_SECRET_ACCESS_KEY" not in s3.to_env() and "CALLSCRIBE_S3_SECRET_KEY" not in s3.to_env()


@pytest.mark.parametrize(("conn", "endpoint", "secure"), [
    ({"host": "minio.internal", "port": 9000}, "minio.internal:9000", False),
    # No port: the host alone (it was "minio.internal:None"), as the docs' "host and port" reads.
    ({"host": "minio.internal"}, "minio.internal", False),
    # A host that names its scheme (the Host field, or the URI form's aws://https%3A%2F%2F...).
    ({"host": "https://minio.internal:9000"}, "minio.internal:9000", True),
])
def test_the_connections_host_is_the_endpoint_without_endpoint_url(conn, endpoint, secure, bare_aws_env):
    s3 = config.s3_from_connection(config.connection_from_json("callscribe_s3", json.dumps({
        "conn_type": "aws", "login": "AKIAEXAMPLE", "password": S3_SECRET, **conn})))
    assert (s3.endpoint, s3.secure) == (endpoint, secure)


def test_half_a_key_pair_is_refused(bare_aws_env):
    with pytest.raises(ValueError, match="without its secret key"):
        config.s3_from_connection(_s3_conn("AKIAEXAMPLE", None, endpoint_url="http://m:9000"))


@pytest.mark.parametrize("extra", ["role_arn", "profile_name"])
def test_identities_the_client_cannot_take_are_refused(extra, bare_aws_env):
    with pytest.raises(ValueError, match=extra):
        config.s3_from_connection(_s3_conn(endpoint_url="http://m:9000", **{extra: "x"}))


def test_the_chain_takes_keys_from_the_environment(bare_aws_env, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    creds = storage.DefaultCredentialChain().retrieve()
    assert (creds.access_key, creds.secret_key) == ("AKIAENV", S3_SECRET)


def _container_credentials(_req):
    return 200, {"Content-Type": "application/json"}, json.dumps({
        "AccessKeyId": "ASIACONTAINER", "SecretAccessKey": S3_SECRET, "Token": "container-session",
        "Expiration": "2099-01-01T00:00:00Z"}).encode()


def test_container_credentials_sign_the_stores_requests(bare_aws_env, monkeypatch, https_s3, tls_server_files):
    """EKS Pod Identity / ECS: the chain asks the container endpoint, the client signs with what it got."""
    ca, _other, _server = tls_server_files
    endpoint, s3_seen = https_s3
    with serve(_container_credentials) as (port, seen):
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"http://127.0.0.1:{port}/v1/credentials")
        monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "pod-identity-token")
        s3 = config.S3Settings(endpoint, bucket="calls", secure=True, region="us-east-1", ca_bundle=str(ca))
        assert storage.Store(s3).client.bucket_exists("calls")
    assert seen[0]["path"] == "/v1/credentials" and seen[0]["headers"]["Authorization"] == "pod-identity-token"
    request = s3_seen[-1]["headers"]
    assert "Credential=ASIACONTAINER/" in request["Authorization"]
    assert request["X-Amz-Security-Token"] == "container-session"


STS_OK = f"""<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
<AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>ASIAIRSA</AccessKeyId>
<SecretAccessKey>{S3_SECRET}</SecretAccessKey><SessionToken>irsa-session</SessionToken>
<Expiration>2099-01-01T00:00:00Z</Expiration></Credentials></AssumeRoleWithWebIdentityResult>
</AssumeRoleWithWebIdentityResponse>"""


def _irsa_env(monkeypatch, tmp_path, sts_port: int) -> str:
    token = "eyJhbGciOiJSUzI1NiJ9.projected-sa-token.sig"
    (tmp_path / "token").write_text(token)
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/callscribe-worker")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(tmp_path / "token"))
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", f"http://127.0.0.1:{sts_port}/")
    return token


def test_irsa_web_identity(bare_aws_env, monkeypatch, tmp_path):
    """IRSA on EKS: the role ARN and projected token from the environment go to STS."""
    with serve(lambda _req: (200, {"Content-Type": "text/xml"}, STS_OK.encode())) as (port, seen):
        token = _irsa_env(monkeypatch, tmp_path, port)
        s3 = config.s3_from_connection(_s3_conn(region_name="eu-west-1"))
        creds = storage.credentials_provider(s3).retrieve()
    assert (creds.access_key, creds.secret_key, creds.session_token) == ("ASIAIRSA", S3_SECRET, "irsa-session")
    query = parse_qs(urlsplit(seen[0]["path"]).query)
    assert seen[0]["method"] == "POST" and query["Action"] == ["AssumeRoleWithWebIdentity"]
    assert query["RoleArn"] == ["arn:aws:iam::123456789012:role/callscribe-worker"]
    assert query["WebIdentityToken"] == [token]


def test_a_refused_web_identity_is_an_outage_and_does_not_leak_the_token(bare_aws_env, monkeypatch, tmp_path):
    with serve(lambda _req: (403, {}, b"<Error><Code>AccessDenied</Code></Error>")) as (port, _seen):
        token = _irsa_env(monkeypatch, tmp_path, port)
        provider = storage.credentials_provider(config.S3Settings("s3.amazonaws.com", secure=True))
        with pytest.raises(storage.CredentialsUnavailable) as err:
            provider.retrieve()
    message = str(err.value)
    assert "403" in message and "environment:" in message and "IAM:" in message
    assert token not in message and "projected-sa-token" not in message
    # Not an object's fault: the pipeline retries the task instead of failing a recording.
    assert storage.unavailable(err.value)


def test_no_credentials_anywhere_says_what_was_tried(bare_aws_env, monkeypatch):
    with serve(_ok) as (port, _seen):
        pass  # closed again: nothing listens on this port now
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"http://127.0.0.1:{port}/creds")
    with pytest.raises(storage.CredentialsUnavailable, match="not reachable"):
        storage.DefaultCredentialChain().retrieve()


# ---------------------------------------------------------------- object store: trust


def test_verify_path_becomes_the_ca_bundle(bare_aws_env, monkeypatch):
    s3 = config.s3_from_connection(_s3_conn(endpoint_url="https://minio.internal", verify="/etc/callscribe/ca.pem"))
    assert s3.ca_bundle == "/etc/callscribe/ca.pem" and s3.verify
    pool = storage.Store(s3).client._http
    assert pool.connection_pool_kw["ca_certs"] == "/etc/callscribe/ca.pem"
    assert pool.connection_pool_kw["cert_reqs"] == "CERT_REQUIRED"
    # botocore's variable when the connection names no CA; the connection's own wins.
    monkeypatch.setenv("AWS_CA_BUNDLE", "/etc/pki/corp.pem")
    assert config.s3_from_connection(_s3_conn(endpoint_url="https://m")).ca_bundle == "/etc/pki/corp.pem"
    assert config.s3_from_connection(_s3_conn(endpoint_url="https://m", verify="/x.pem")).ca_bundle == "/x.pem"
    monkeypatch.delenv("AWS_CA_BUNDLE")
    monkeypatch.setenv("SSL_CERT_FILE", "/etc/ssl/system.pem")
    pool_kw = storage.http_client(config.S3Settings("m", secure=True)).connection_pool_kw
    assert pool_kw["ca_certs"] == "/etc/ssl/system.pem"


@pytest.mark.parametrize("value", [False, "false", "False"])
def test_verify_false_turns_checks_off(value, bare_aws_env):
    s3 = config.s3_from_connection(_s3_conn(endpoint_url="https://m", verify=value))
    assert not s3.verify and s3.ca_bundle is None
    assert storage.http_client(s3).connection_pool_kw["cert_reqs"] == "CERT_NONE"


def test_the_ca_bundle_is_what_tls_trusts(bare_aws_env, https_s3, tls_server_files):
    ca, other, _server = tls_server_files
    endpoint, seen = https_s3
    good = config.S3Settings(endpoint, "AKIAEXAMPLE", S3_SECRET, secure=True, region="us-east-1", ca_bundle=str(ca))
    assert storage.Store(good).client.bucket_exists("calls")
    assert seen[-1]["method"] == "HEAD" and seen[-1]["path"] == "/calls"
    wrong = config.S3Settings(endpoint, "AKIAEXAMPLE", S3_SECRET, secure=True, ca_bundle=str(other))
    with pytest.raises(urllib3.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        storage.http_client(wrong).request("HEAD", f"https://{endpoint}/calls", retries=False)
    # certifi's public CAs do not know the test CA either.
    default = config.S3Settings(endpoint, "AKIAEXAMPLE", S3_SECRET, secure=True)
    with pytest.raises(urllib3.exceptions.SSLError):
        storage.http_client(default).request("HEAD", f"https://{endpoint}/calls", retries=False)
    unchecked = config.S3Settings(endpoint, "AKIAEXAMPLE", S3_SECRET, secure=True, verify=False)
    with pytest.warns(urllib3.exceptions.InsecureRequestWarning):
        response = storage.http_client(unchecked).request("HEAD", f"https://{endpoint}/calls", retries=False)
    assert response.status == 200


# ---------------------------------------------------------------- secrets and the worker


def test_reprs_never_show_secrets():
    conn = _s3_conn("AKIAEXAMPLE", S3_SECRET, aws_session_token="sess-secret-9", endpoint_url="http://m:1")
    s3 = config.s3_from_connection(conn)
    pg_conn = _pg_conn({"sslpassword": KEY_SECRET})
    for text in (repr(conn), repr(s3), repr(pg_conn), repr(config.pg_from_connection(pg_conn))):
        for secret in (S3_SECRET, "sess-secret-9", PG_SECRET, KEY_SECRET):
            assert secret not in text


def test_env_round_trip_with_and_without_keys(monkeypatch):
    for s3 in (config.S3Settings("m:9000", "AK", S3_SECRET, bucket="b", secure=True, region="eu-west-1",
                                 session_token="t", ca_bundle="/ca.pem"),
               config.S3Settings("s3.amazonaws.com", bucket="b", secure=True, region="eu-west-1",
                                 sts_endpoint="https://sts.local", verify=False)):
        monkeypatch.setattr(config.os, "environ", s3.to_env())
        assert config.s3_from_env() == s3


def _base_env() -> dict[str, str]:
    return {
        "PATH": "/usr/bin", "HOME": "/home/airflow",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://airflow:pw@db/airflow",
        "AIRFLOW_CONN_CALLSCRIBE_POSTGRES": "{...}", "CALLSCRIBE_PG_PASSWORD": "pw", "PGSSLROOTCERT": "/pg/ca.pem",
        "AWS_ROLE_ARN": "arn:aws:iam::1:role/r", "AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/secrets/token",
        "AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "AKIATASK", "AWS_SECRET_ACCESS_KEY": "task-secret",
        "AWS_CA_BUNDLE": "/etc/pki/corp.pem", "SSL_CERT_FILE": "/etc/ssl/certs/ca.pem",
    }


def test_a_worker_without_keys_gets_the_chains_variables():
    s3 = config.S3Settings("s3.amazonaws.com", bucket="calls", secure=True, region="eu-west-1")
    env = pipeline.worker_environment(s3, _base_env())
    for name in ("AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_REGION", "AWS_ACCESS_KEY_ID",
                 "AWS_SECRET_ACCESS_KEY", "AWS_CA_BUNDLE", "SSL_CERT_FILE"):
        assert env[name] == _base_env()[name]
    assert "CALLSCRIBE_S3_ACCESS_KEY" not in env and env["CALLSCRIBE_S3_ENDPOINT"] == "s3.amazonaws.com"
    # Never Airflow's or the database's: the worker has no business with either.
    assert not [k for k in env if k.startswith("AIRFLOW") or "PG" in k]


def test_a_worker_with_keys_gets_no_other_identity():
    s3 = config.S3Settings("m:9000", "AK", S3_SECRET, bucket="calls")
    env = pipeline.worker_environment(s3, _base_env())
    assert env["CALLSCRIBE_S3_SECRET_KEY"] == S3_SECRET
    assert env["AWS_CA_BUNDLE"] == "/etc/pki/corp.pem"  # which CA to trust is no secret
    assert not [k for k in env if k.startswith("AWS_") and k != "AWS_CA_BUNDLE"]


def test_a_worker_process_without_keys_finds_its_role(bare_aws_env, monkeypatch):
    """The real child process, with the environment run_worker_local gives it, gets IAM credentials."""
    with serve(_container_credentials) as (port, seen):
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"http://127.0.0.1:{port}/v1/credentials")
        monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "pod-identity-token")
        s3 = config.S3Settings("127.0.0.1:1", bucket="calls")
        code = ("from callscribe.config import s3_from_env; from callscribe.storage import credentials_provider; "
                "print(credentials_provider(s3_from_env()).retrieve().access_key)")
        out = subprocess.run([sys.executable, "-c", code], env=pipeline.worker_environment(s3), capture_output=True,
                             text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ASIACONTAINER" and len(seen) == 1
    assert pipeline.worker_command("s3://calls/job.json") == ["python", "-m", "callscribe.worker", "--job",
                                                              "s3://calls/job.json"]


def test_the_commands_use_a_renamed_postgres_connection_not_the_embedded_services(monkeypatch, tmp_path):
    """CALLSCRIBE_PG_CONN_ID renames the connection; given as AIRFLOW_CONN_<ID>, a development
    install's commands must use it, not quietly fall back to the embedded services."""
    from callscribe import cli

    applied = []
    monkeypatch.delenv("AIRFLOW_CONN_CALLSCRIBE_POSTGRES", raising=False)
    monkeypatch.delenv("CALLSCRIBE_PG_HOST", raising=False)
    monkeypatch.setenv("CALLSCRIBE_PG_CONN_ID", "reporting_pg")
    monkeypatch.setenv("AIRFLOW_CONN_REPORTING_PG", "postgres://u:p@db.example:5432/callscribe")

    class Services:
        @staticmethod
        def profile(name):
            applied.append(("profile", name))
            raise AssertionError("the embedded services were chosen over the configured connection")

    monkeypatch.setattr(cli, "_embedded", lambda: Services)
    cli._use_services(type("Args", (), {"profile": "dev"})())
    assert applied == []


def test_pg_host_without_a_user_says_what_is_missing(monkeypatch):
    """CALLSCRIBE_PG_HOST alone gave a bare KeyError('CALLSCRIBE_PG_USER')."""
    from callscribe.config import pg_settings

    monkeypatch.setenv("CALLSCRIBE_PG_HOST", "db.example")
    monkeypatch.delenv("CALLSCRIBE_PG_USER", raising=False)
    with pytest.raises(RuntimeError, match="CALLSCRIBE_PG_USER is not"):
        pg_settings()
