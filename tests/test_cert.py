"""The cert prober against real TLS servers on loopback and real PEM files.

Expected dates come from the certificates themselves and serials from `openssl x509 -serial`,
so the exported values are checked against independent readings, to the second.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtensionOID

from stackprobe.configsource import ConfigError
from stackprobe.exporter import config
from stackprobe.exporter.probers.cert import hostname_matches

from fixtures.net import free_port
from fixtures.tls import Issued, Pki, make_cert


def target(name: str, interval: str = "1s", **fields: str) -> str:
    """One cert target as a YAML flow mapping (values quoted)."""
    extra = "".join(f", {k}: {v if v.startswith('[') else repr(v)}" for k, v in fields.items())
    return f"  - {{name: {name}, service: web, interval: {interval}{extra}}}\n"


def run(start_exporter, *targets: str):
    return start_exporter("cert:\n" + "".join(targets)).wait_for_all()


def openssl_serial(issued: Issued) -> str:
    out = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=issued.pem, capture_output=True, check=True)
    return out.stdout.decode().strip().removeprefix("serial=")


def cert_labels(issued: Issued, source: str, subject: str, issuer: str) -> dict[str, str]:
    return dict(source=source, subject_cn=subject, issuer_cn=issuer, serial=openssl_serial(issued))


def not_after(issued: Issued) -> float:
    return issued.cert.not_valid_after_utc.timestamp()


def not_before(issued: Issued) -> float:
    return issued.cert.not_valid_before_utc.timestamp()


def series(exporter, name: str, target_name: str) -> dict[frozenset, float]:
    return {labels: v for (n, labels), v in exporter.scrape().items() if n == name and ("target", target_name) in labels}


@pytest.fixture
def ca_file(pki: Pki, tmp_path: Path) -> str:
    path = tmp_path / "root.pem"
    path.write_bytes(pki.root.pem)
    return str(path)


@pytest.fixture(autouse=True)
def _need_openssl() -> None:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command (for independent serial numbers) is not installed")


def test_served_chain_reports_every_certificate_and_verifies(start_exporter, tls_server, pki, ca_file):
    server = tls_server(pki.chain(pki.valid))
    exporter = run(start_exporter, target("site", address=server.address, ca_file=ca_file))
    src = server.address
    leaf = cert_labels(pki.valid, src, "valid.test", "stackprobe test intermediate")
    inter = cert_labels(pki.intermediate, src, "stackprobe test intermediate", "stackprobe test root")
    assert exporter.value("stackprobe_probe_success", target="site") == 1
    assert exporter.value("stackprobe_cert_not_after_timestamp_seconds", target="site", **leaf) == not_after(pki.valid)
    assert exporter.value("stackprobe_cert_not_before_timestamp_seconds", target="site", **leaf) == not_before(pki.valid)
    assert exporter.value("stackprobe_cert_not_after_timestamp_seconds", target="site", **inter) == not_after(pki.intermediate)
    assert exporter.value("stackprobe_cert_not_before_timestamp_seconds", target="site", **inter) == not_before(pki.intermediate)
    assert len(series(exporter, "stackprobe_cert_not_after_timestamp_seconds", "site")) == 2  # the root is not served
    assert exporter.value("stackprobe_cert_earliest_not_after_timestamp_seconds", target="site") == not_after(pki.valid)
    assert exporter.value("stackprobe_cert_chain_verified", target="site", source=src) == 1
    assert exporter.value("stackprobe_cert_hostname_match", target="site", source=src) == 1


def test_expired_certificate_still_reports_its_dates(start_exporter, tls_server, pki, ca_file):
    server = tls_server(pki.chain(pki.expired))
    exporter = run(start_exporter, target("old", address=server.address, ca_file=ca_file))
    labels = cert_labels(pki.expired, server.address, "expired.test", "stackprobe test intermediate")
    assert exporter.value("stackprobe_probe_success", target="old") == 1  # expiry is for alerts
    assert exporter.value("stackprobe_cert_not_after_timestamp_seconds", target="old", **labels) == not_after(pki.expired)
    assert exporter.value("stackprobe_cert_not_before_timestamp_seconds", target="old", **labels) == not_before(pki.expired)
    assert exporter.value("stackprobe_cert_earliest_not_after_timestamp_seconds", target="old") == not_after(pki.expired)
    assert exporter.value("stackprobe_cert_chain_verified", target="old") == 0
    assert exporter.value("stackprobe_cert_hostname_match", target="old") == 1


def test_self_signed_is_not_verified_by_the_ca_file_nor_the_system(start_exporter, tls_server, pki, ca_file):
    server = tls_server(pki.chain(pki.self_signed))
    exporter = run(start_exporter,
                   target("own-ca", address=server.address, ca_file=ca_file),
                   target("system-ca", address=server.address))
    labels = cert_labels(pki.self_signed, server.address, "self-signed.test", "self-signed.test")
    for name in ("own-ca", "system-ca"):
        assert exporter.value("stackprobe_probe_success", target=name) == 1
        assert exporter.value("stackprobe_cert_not_after_timestamp_seconds", target=name, **labels) == not_after(pki.self_signed)
        assert exporter.value("stackprobe_cert_chain_verified", target=name) == 0
        assert exporter.value("stackprobe_cert_hostname_match", target=name) == 1


def test_host_name_is_checked_against_server_name(start_exporter, tls_server, pki, ca_file):
    wrong = tls_server(pki.chain(pki.wrong_host))
    valid = tls_server(pki.chain(pki.valid))
    exporter = run(start_exporter,
                   target("wrong", address=wrong.address, ca_file=ca_file),
                   target("named", address=wrong.address, server_name="other.example", ca_file=ca_file),
                   target("localhost", address=valid.address, server_name="localhost", ca_file=ca_file))
    assert exporter.value("stackprobe_cert_hostname_match", target="wrong") == 0
    assert exporter.value("stackprobe_cert_chain_verified", target="wrong") == 1  # trust and name are separate
    assert exporter.value("stackprobe_probe_success", target="wrong") == 1
    assert exporter.value("stackprobe_cert_hostname_match", target="named") == 1
    assert exporter.value("stackprobe_cert_hostname_match", target="localhost") == 1


def test_hostname_matching_rules():
    wildcard = make_cert("wild", names=("*.example.test", "exact.test", "10.0.0.1")).cert
    assert hostname_matches(wildcard, "a.example.test")
    assert hostname_matches(wildcard, "A.Example.Test.")
    assert hostname_matches(wildcard, "exact.test")
    assert hostname_matches(wildcard, "10.0.0.1")
    assert not hostname_matches(wildcard, "example.test")  # * covers exactly one label
    assert not hostname_matches(wildcard, "a.b.example.test")
    assert not hostname_matches(wildcard, "10.0.0.2")
    assert not hostname_matches(wildcard, "wild")  # the CN is not a name, as for browsers


def test_a_subject_alt_name_that_is_not_valid_der_covers_no_name():
    """A hostile certificate's broken extension is a mismatch, not a prober crash (internal)."""
    issued = make_cert("bad.test")
    broken = (x509.CertificateBuilder().subject_name(issued.cert.subject).issuer_name(issued.cert.subject)
              .public_key(issued.key.public_key()).serial_number(1)
              .not_valid_before(issued.cert.not_valid_before_utc).not_valid_after(issued.cert.not_valid_after_utc)
              .add_extension(x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x04\x03abc"), critical=False)
              .sign(issued.key, hashes.SHA256()))
    assert not hostname_matches(broken, "bad.test")


def test_pem_bundle_gives_one_series_per_certificate(start_exporter, pki, tmp_path):
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pki.expiring.key_pem + pki.expiring.pem + pki.intermediate.pem + pki.root.pem)
    exporter = run(start_exporter, target("bundle", files=f"['{bundle}']"))
    src = str(bundle)
    expected = {
        (pki.expiring, "expiring.test", "stackprobe test intermediate"),
        (pki.intermediate, "stackprobe test intermediate", "stackprobe test root"),
        (pki.root, "stackprobe test root", "stackprobe test root"),
    }
    assert len(series(exporter, "stackprobe_cert_not_after_timestamp_seconds", "bundle")) == 3
    for issued, subject, issuer in expected:
        labels = cert_labels(issued, src, subject, issuer)
        assert exporter.value("stackprobe_cert_not_after_timestamp_seconds", target="bundle", **labels) == not_after(issued)
        assert exporter.value("stackprobe_cert_not_before_timestamp_seconds", target="bundle", **labels) == not_before(issued)
    assert exporter.value("stackprobe_cert_earliest_not_after_timestamp_seconds", target="bundle") == not_after(pki.expiring)
    assert exporter.value("stackprobe_probe_success", target="bundle") == 1
    assert exporter.value("stackprobe_cert_chain_verified", target="bundle") is None  # server targets only


def test_glob_reports_each_file_as_its_own_source(start_exporter, pki, tmp_path):
    (tmp_path / "a.pem").write_bytes(pki.valid.pem)
    (tmp_path / "b.pem").write_bytes(pki.expired.pem + pki.intermediate.pem)
    (tmp_path / "key.pem").write_bytes(pki.valid.key_pem)  # no certificate: skipped, not a failure
    exporter = run(start_exporter, target("dir", files=f"['{tmp_path}/*.pem']"))
    sources = {dict(labels)["source"] for labels in series(exporter, "stackprobe_cert_not_after_timestamp_seconds", "dir")}
    assert sources == {str(tmp_path / "a.pem"), str(tmp_path / "b.pem")}
    assert len(series(exporter, "stackprobe_cert_not_after_timestamp_seconds", "dir")) == 3
    assert exporter.value("stackprobe_cert_earliest_not_after_timestamp_seconds", target="dir") == not_after(pki.expired)
    assert exporter.value("stackprobe_probe_success", target="dir") == 1


def test_nothing_to_read_is_empty(start_exporter, pki, tmp_path):
    key_only = tmp_path / "key.pem"
    key_only.write_bytes(pki.valid.key_pem)
    exporter = run(start_exporter,
                   target("no-match", files=f"['{tmp_path}/*.crt']"),
                   target("no-cert", files=f"['{key_only}']"))
    for name in ("no-match", "no-cert"):
        assert exporter.value("stackprobe_probe_success", target=name) == 0
        assert exporter.failure_reasons(name) == {"empty"}
        assert exporter.value("stackprobe_cert_earliest_not_after_timestamp_seconds", target=name) is None


def test_unreadable_file_is_io(start_exporter, pki, tmp_path):
    # Tests run as root, for whom chmod 000 hides nothing; a directory or a missing file cannot
    # be read by anyone.
    (tmp_path / "dir.pem").mkdir()
    exporter = run(start_exporter,
                   target("a-dir", files=f"['{tmp_path}/dir.pem']"),
                   target("missing", files=f"['{tmp_path}/missing.pem']"))
    for name in ("a-dir", "missing"):
        assert exporter.value("stackprobe_probe_success", target=name) == 0
        assert exporter.failure_reasons(name) == {"io"}


def test_server_failures_by_reason(start_exporter, silent_listener, http_server):
    exporter = run(start_exporter,
                   target("hung", address=f"127.0.0.1:{silent_listener.port}"),
                   target("refused", address=f"127.0.0.1:{free_port()}"),
                   target("plain-http", address=f"127.0.0.1:{http_server.port}"))
    assert exporter.failure_reasons("hung") == {"timeout"}
    assert exporter.failure_reasons("refused") == {"connect"}
    assert exporter.failure_reasons("plain-http") == {"tls"}
    for name in ("hung", "refused", "plain-http"):
        assert exporter.value("stackprobe_probe_success", target=name) == 0
        assert exporter.value("stackprobe_cert_earliest_not_after_timestamp_seconds", target=name) is None


@pytest.mark.parametrize("fields, message", [
    ("{address: 'h:443', files: ['/x.pem']}", "set exactly one of address or files"),
    ("{}", "set exactly one of address or files"),
    ("{files: ['/x.pem'], server_name: h}", "apply to address targets only"),
    ("{address: 'h'}", "is not host:port"),
    ("{address: 'h:99999'}", "is not host:port"),
])
def test_config_mistakes_are_named(fields: str, message: str):
    body = fields.strip("{}")
    text = f"cert:\n  - {{name: t, service: web{', ' + body if body else ''}}}\n"
    with pytest.raises(ConfigError, match=message) as info:
        config.parse("c.yaml", text)
    assert "c.yaml:2" in str(info.value)


def test_ipv6_address_is_accepted():
    parsed = config.parse("c.yaml", "cert:\n  - {name: t, service: web, address: '[::1]:443'}\n")
    assert parsed.targets[0].address == "[::1]:443"
    assert parsed.targets[0].interval == 3600 and parsed.targets[0].timeout == 10


def test_files_and_ca_file_on_a_fifo_fail_at_once_and_starve_nothing(start_exporter, pki, tmp_path, tls_server, ca_file):
    """Issue 14: cert files on a FIFO hung reader threads of the shared pool until other targets'
    DNS lookups (which asyncio runs in that pool) timed out."""
    os.mkfifo(tmp_path / "fifo.pem")
    (tmp_path / "good.pem").write_bytes(pki.valid.pem)
    server = tls_server(pki.chain(pki.valid))
    port = server.address.rpartition(":")[2]
    exporter = run(start_exporter,
                   target("fifo", files=f"['{tmp_path}/fifo.pem']"),
                   target("fifo-glob", files=f"['{tmp_path}/*.pem']"),
                   target("fifo-ca", address=server.address, ca_file=str(tmp_path / "fifo.pem")),
                   target("by-name", address=f"localhost:{port}", ca_file=ca_file))
    for name in ("fifo", "fifo-glob"):
        assert exporter.failure_reasons(name) == {"io"}
        assert "fifo.pem is not a regular file" in exporter.get(f"/probe?target={name}&debug=true").text
    # The readable file of the glob is still reported.
    assert series(exporter, "stackprobe_cert_not_after_timestamp_seconds", "fifo-glob")
    assert exporter.failure_reasons("fifo-ca") == {"io"}
    assert exporter.value("stackprobe_probe_success", target="by-name") == 1  # resolved "localhost"
