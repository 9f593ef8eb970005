"""Property-based fuzzing of the three loaders (exporter config, web config, KPI catalogue).

Valid files are mutated (hostile YAML tokens, control characters, invalid UTF-8, cut and
duplicated lines, structure swapped for junk) and generated from scratch. The property is the
same everywhere: the file loads, or every problem is `file:line: ...`, the command exits 2 with
no traceback, and `gen-rules build` writes nothing. Examples are derandomized and bounded so CI
stays within ~30 s; STACKPROBE_FUZZ_EXAMPLES=N runs N per loader (and random ones) for a deeper
hunt.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import bcrypt
import pytest
import trustme
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stackprobe.configsource import ConfigError
from stackprobe.exporter import cli as exporter_cli
from stackprobe.exporter import config
from stackprobe.exporter.webconfig import load_web_config
from stackprobe.rules import cli as rules_cli
from stackprobe.rules.spec import DEFAULT_DIRECTORY, load_catalogue

REPO = Path(__file__).parent.parent
DEEP = int(os.environ.get("STACKPROBE_FUZZ_EXAMPLES", "0"))


def fuzz_settings(examples: int):
    return settings(max_examples=DEEP or examples, derandomize=not DEEP, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


#: Pieces of hostile YAML: aliases and merges, deep or unclosed nesting, huge or odd numbers,
#: tags, document markers, control characters and encodings YAML or Python choke on.
HOSTILE_TOKENS = [
    "&a ", "*a", "*b", "<<: *a\n", "[" * 70, "{" * 70, "]", "}", "- ", ": ", "? ", ", ", "|\n", ">-\n",
    "'", '"', "\\", "\\x00", "\\u2028", "\x00", "\x1b", "\x7f", "\x85", "\t", "\r\n", "\ufeff", "\u2028",
    "9" * 80, "1e400", "-.inf", ".nan", "0x" + "f" * 70, "1_000", "-1", "0", "~", "null", "true",
    "!!binary aGVsbG8=", "!!python/object/apply:os.system ['true']", "!!set {a, b}", "!!omap [a: 1]",
    "---\n", "...\n", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "1ms", "0s", "20000w", "1h30", "-5m",
    "name: x\n", "module: nope\n", "modules:\n", "http:\n", "interval: 1ms\n", "password_env: UNSET_XYZ\n",
    "\n  " * 3, "#", "@", "`", "%",
]
HOSTILE_BYTES = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xe2\x82", b"\x00", b"\xfe\xff"]


@st.composite
def mutated(draw, seed: str) -> bytes:
    """seed with 1..4 edits: insert a hostile token or byte, delete, duplicate or swap a line."""
    data = seed.encode()
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["token", "byte", "delete", "duplicate", "truncate"]))
        if op == "token":
            data = data[:at] + draw(st.sampled_from(HOSTILE_TOKENS)).encode() + data[at:]
        elif op == "byte":
            data = data[:at] + draw(st.sampled_from(HOSTILE_BYTES)) + data[at:]
        elif op == "delete":
            data = data[:at] + data[at + draw(st.integers(1, 40)):]
        elif op == "duplicate":
            lines = data.split(b"\n")
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(draw(st.integers(0, len(lines))), lines[i])
            data = b"\n".join(lines)
        else:
            data = data[:at]
    return data


#: Arbitrary YAML documents: nested mappings and lists of scalars YAML can write.
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=30))
DOCUMENTS = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=25)


@st.composite
def generated(draw, keys: list[str]) -> bytes:
    """A document whose top-level keys are the loader's own, with arbitrary values under them."""
    doc = draw(st.dictionaries(st.sampled_from(keys) | st.text(max_size=8), DOCUMENTS, max_size=4))
    return yaml.safe_dump(doc, allow_unicode=True).encode()


def assert_clean_refusal(err: ConfigError, path: Path) -> None:
    lines = err.format_lines()
    assert lines, "a ConfigError without a problem"
    for problem_line, _, _ in err.problems:
        assert problem_line is not None and problem_line >= 1, lines
    assert all(x.startswith(f"{path}:") for x in lines), lines


def check_loader(load: Callable[[Path], object], path: Path, content: bytes) -> bool:
    """True if the content loaded; else it must be a clean refusal. Any other exception fails."""
    path.write_bytes(content)
    try:
        load(path)
        return True
    except ConfigError as e:
        assert_clean_refusal(e, path)
        return False


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="stackprobe-fuzz-") as d:
        yield Path(d)


@pytest.fixture(scope="module", autouse=True)
def secrets_set() -> Iterator[None]:
    """The deploy example's password_env variables exist, so its valid mutations load."""
    names = ("STACKPROBE_MYSQL_PASSWORD", "STACKPROBE_REDIS_PASSWORD")
    old = {n: os.environ.get(n) for n in names}
    os.environ.update({n: "fuzz" for n in names})
    yield
    for n, v in old.items():
        if v is None:
            os.environ.pop(n, None)
        else:
            os.environ[n] = v


EXPORTER_SEED = (REPO / "deploy" / "stackprobe.yml").read_text()


@fuzz_settings(200)
@given(st.one_of(mutated(EXPORTER_SEED), generated(["modules", "mysql", "redis", "http", "backup", "cert"])))
def test_exporter_config_loads_or_refuses_cleanly(workdir, content):
    check_loader(config.parse, workdir / "stackprobe.yml", content)


@fuzz_settings(40)
@given(mutated(EXPORTER_SEED))
def test_check_config_exits_0_or_2_without_a_traceback(workdir, content):
    path = workdir / "check.yml"
    path.write_bytes(content)
    result = CliRunner().invoke(exporter_cli.main, ["check-config", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        assert all(line.startswith(f"error: {path}:") for line in result.output.splitlines() if line), result.output


@pytest.fixture(scope="module")
def web_seed(workdir: Path) -> str:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(workdir / "key.pem")
    cert.cert_chain_pems[0].write_to_path(workdir / "cert.pem")
    ca.cert_pem.write_to_path(workdir / "ca.pem")
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    return (f"tls_server_config:\n  cert_file: {workdir / 'cert.pem'}\n  key_file: {workdir / 'key.pem'}\n"
            f"  client_ca_file: {workdir / 'ca.pem'}\n  client_auth_type: VerifyClientCertIfGiven\n"
            f"  min_version: TLS12\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n"
            f"    Content-Security-Policy: \"default-src 'self'\"\nbasic_auth_users:\n  prometheus: '{hashed}'\n"
            f"  grafana: '{hashed}'\n")


@fuzz_settings(200)
@given(data=st.data())
def test_web_config_loads_or_refuses_cleanly(workdir, web_seed, data):
    content = data.draw(st.one_of(mutated(web_seed),
                                  generated(["tls_server_config", "http_server_config", "basic_auth_users"])))
    check_loader(load_web_config, workdir / "web.yml", content)


@pytest.fixture(scope="module")
def catalogue(workdir: Path) -> Path:
    directory = workdir / "catalogue"
    shutil.copytree(DEFAULT_DIRECTORY, directory, ignore=shutil.ignore_patterns("ledger"))
    return directory


CATALOGUE_SEED = (DEFAULT_DIRECTORY / "portfolio.yaml").read_text()


@fuzz_settings(40)
@given(data=st.data())
def test_catalogue_loads_or_refuses_cleanly_and_gen_rules_writes_nothing(workdir, catalogue, data):
    name = data.draw(st.sampled_from(["portfolio.yaml", "routing.yaml"]))
    seed = (DEFAULT_DIRECTORY / name).read_text()
    content = data.draw(st.one_of(mutated(seed), generated(["id", "title", "kpis", "priorities", "receivers"])))
    path = catalogue / name
    try:
        if check_loader(lambda _: load_catalogue(catalogue), path, content):
            return  # a valid catalogue: building it is gen-rules' own tests' business
        out = workdir / "out"
        shutil.rmtree(out, ignore_errors=True)
        result = CliRunner().invoke(rules_cli.main, ["build", "--catalogue", str(catalogue), "--out", str(out)])
        assert result.exit_code == 2 and f"{path}:" in result.output, result.output
        assert not out.exists() or not any(out.rglob("*")), "gen-rules build wrote files for an invalid catalogue"
    finally:
        path.write_text(seed)
