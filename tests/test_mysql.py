"""The MySQL/MariaDB prober against private MariaDB servers (tests/fixtures/mariadb.py).

Every number is compared with what the server itself reports. The probes run as the monitoring
user created from the GRANT lines of the prober's docstring, so those lines are proven sufficient.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pymysql
import pytest
import yaml

from stackprobe.exporter.config import parse
from stackprobe.exporter.probers import mysql
from stackprobe.exporter.probers.base import ProbeContext, ProbeError

from fixtures.mariadb import MariaDB
from fixtures.net import wait_until
from fixtures.probing import probe_result

MONITOR_USER = "stackprobe"
MONITOR_PASSWORD = "Mon1tor-pw-7c9e2b"
GALLERY, CAP, LOCKS = "sp_gallery", "sp_cap", "sp_locks"


def create_monitoring_user(server: MariaDB, host: str, schemas: list[str]) -> None:
    """Run the docstring's CREATE USER / GRANT lines, with its example names replaced."""
    lines = re.findall(r"^\s+((?:CREATE USER|GRANT) .*;)$", mysql.__doc__, re.MULTILINE)
    assert len(lines) == 3, lines
    for line in lines:
        line = line.replace("'localhost'", f"'{host}'").replace("'change-me'", f"'{MONITOR_PASSWORD}'")
        for statement in [line.replace("gallery.*", f"{s}.*") for s in schemas] if "gallery.*" in line else [line]:
            server.sql(statement)


@pytest.fixture(scope="module")
def db(mariadb: MariaDB) -> MariaDB:
    """The session server with three schemas of known tables, analysed, and the monitoring user."""
    for schema in (GALLERY, CAP, LOCKS):
        mariadb.sql(f"CREATE DATABASE {schema}")
    mariadb.sql(f"CREATE TABLE {GALLERY}.albums (id INT PRIMARY KEY, title VARCHAR(100), UNIQUE KEY title (title))")
    mariadb.sql(f"CREATE TABLE {GALLERY}.images (id INT PRIMARY KEY, album_id INT, name VARCHAR(100),"
                " KEY album (album_id), KEY album_name (album_id, name))")
    mariadb.sql(f"CREATE TABLE {GALLERY}.empty_table (id INT PRIMARY KEY, tag VARCHAR(10), KEY tag (tag))")
    mariadb.sql(f"INSERT INTO {GALLERY}.albums SELECT seq, CONCAT('album ', seq) FROM {GALLERY}.seq_1_to_20")
    mariadb.sql(f"INSERT INTO {GALLERY}.images SELECT seq, seq % 20, CONCAT('img', seq) FROM {GALLERY}.seq_1_to_500")
    for i, rows in enumerate((10, 300, 1200, 2500, 5000), start=1):  # distinct sizes, t5 largest
        mariadb.sql(f"CREATE TABLE {CAP}.t{i} (id INT PRIMARY KEY, pad CHAR(200), KEY pad (pad))")
        mariadb.sql(f"INSERT INTO {CAP}.t{i} SELECT seq, REPEAT('x', 200) FROM {GALLERY}.seq_1_to_{rows}")
    mariadb.sql(f"CREATE TABLE {LOCKS}.t (id INT PRIMARY KEY, v INT)")
    mariadb.sql(f"INSERT INTO {LOCKS}.t VALUES (1, 0), (2, 0)")
    tables = mariadb.sql("SELECT CONCAT(TABLE_SCHEMA, '.', TABLE_NAME) FROM information_schema.TABLES"
                         " WHERE TABLE_SCHEMA IN (%s, %s, %s)", (GALLERY, CAP, LOCKS))
    mariadb.sql("ANALYZE TABLE " + ", ".join(t for (t,) in tables))
    create_monitoring_user(mariadb, "127.0.0.1", [GALLERY, CAP, LOCKS])
    return mariadb


@pytest.fixture(scope="module")
def password_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("secrets") / "mysql-password"
    path.write_text(MONITOR_PASSWORD + "\n")
    return path


def target(name: str, server: MariaDB, password_file: Path | None = None, **fields) -> dict:
    """A TCP target as the monitoring user, probed every 2 s."""
    auth = {"password_file": str(password_file)} if password_file else {}
    return {"name": name, "service": "gallery", "host": "127.0.0.1", "port": server.port, "user": MONITOR_USER,
            "interval": "2s", "timeout": "2s", **auth, **fields}


def config(*targets: dict) -> str:
    return yaml.safe_dump({"mysql": list(targets)})


def series(scrape: dict, name: str, target_name: str) -> dict[tuple, float]:
    """{labels after service/target, as sorted pairs: value} of one family for one target."""
    out = {}
    for (n, labels), value in scrape.items():
        ls = dict(labels)
        if n == name and ls.pop("target", None) == target_name:
            ls.pop("service")
            out[tuple(sorted(ls.items()))] = value
    return out


def information_schema(server: MariaDB, schemas: list[str]) -> tuple[list[tuple], dict[tuple, list[int | None]]]:
    """(TABLES rows, {(schema, table, index): cardinality per column in key order}) as root sees them."""
    marks = ", ".join(["%s"] * len(schemas))
    tables = server.sql("SELECT TABLE_SCHEMA, TABLE_NAME, DATA_LENGTH, INDEX_LENGTH, DATA_FREE, TABLE_ROWS"
                        f" FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA IN ({marks})", tuple(schemas))
    indexes: dict[tuple, list[int | None]] = {}
    for schema, table, index, card in server.sql(
            "SELECT TABLE_SCHEMA, TABLE_NAME, INDEX_NAME, CARDINALITY FROM information_schema.STATISTICS"
            f" WHERE TABLE_SCHEMA IN ({marks}) ORDER BY SEQ_IN_INDEX", tuple(schemas)):
        indexes.setdefault((schema, table, index), []).append(card)
    return tables, indexes


def global_status(server: MariaDB, *names: str) -> dict[str, float]:
    rows = server.sql(f"SHOW GLOBAL STATUS WHERE Variable_name IN ({', '.join(['%s'] * len(names))})", names)
    return {k: float(v) for k, v in rows}


def test_table_and_index_series_equal_information_schema(start_exporter, db, password_file):
    exporter = start_exporter(config(target("gallery", db, password_file, schemas=[GALLERY])))
    exporter.wait_for_probe("gallery")
    scrape = exporter.scrape()
    assert series(scrape, "stackprobe_probe_success", "gallery") == {(("prober", "mysql"),): 1}
    tables, indexes = information_schema(db, [GALLERY])
    assert len(tables) == 3
    expected_sizes, expected_rows = {}, {}
    for schema, table, data, index, free, rows in tables:
        for component, value in (("data", data), ("index", index), ("free", free)):
            expected_sizes[(("component", component), ("schema", schema), ("table", table))] = value
        expected_rows[(("schema", schema), ("table", table))] = rows
    assert series(scrape, "stackprobe_mysql_table_size_bytes", "gallery") == expected_sizes
    assert series(scrape, "stackprobe_mysql_table_rows", "gallery") == expected_rows
    assert series(scrape, "stackprobe_mysql_tables", "gallery") == {(): 3}
    assert series(scrape, "stackprobe_mysql_tables_omitted", "gallery") == {(): 0}

    # A composite index is described by its whole key: the cardinality of its last column.
    assert len(indexes[(GALLERY, "images", "album_name")]) == 2
    expected_cardinality = {(("index", i), ("schema", s), ("table", t)): cards[-1] for (s, t, i), cards in indexes.items()}
    assert series(scrape, "stackprobe_mysql_index_cardinality", "gallery") == expected_cardinality
    rows_of = {t: rows for _, t, *_, rows in tables}
    assert rows_of["empty_table"] == 0
    expected_selectivity = {k: card / rows_of[dict(k)["table"]] for k, card in expected_cardinality.items() if dict(k)["table"] != "empty_table"}
    assert series(scrape, "stackprobe_mysql_index_selectivity", "gallery") == pytest.approx(expected_selectivity)
    # The data really distinguishes whole key from first column.
    assert indexes[(GALLERY, "images", "album_name")][0] < indexes[(GALLERY, "images", "album_name")][1]


def test_max_tables_exports_the_largest_and_counts_the_rest(start_exporter, db, password_file):
    exporter = start_exporter(config(target("capped", db, password_file, schemas=[CAP], max_tables=2)))
    exporter.wait_for_probe("capped")
    scrape = exporter.scrape()
    tables, indexes = information_schema(db, [CAP])
    largest = sorted(tables, key=lambda t: -(t[2] + t[3]))
    assert largest[1][2] + largest[1][3] > largest[2][2] + largest[2][3]  # no tie at the cut
    kept = {t[1] for t in largest[:2]}
    assert kept == {"t4", "t5"}
    assert {dict(k)["table"] for k in series(scrape, "stackprobe_mysql_table_rows", "capped")} == kept
    assert {dict(k)["table"] for k in series(scrape, "stackprobe_mysql_index_cardinality", "capped")} == kept
    assert series(scrape, "stackprobe_mysql_tables", "capped") == {(): 5}
    assert series(scrape, "stackprobe_mysql_tables_omitted", "capped") == {(): 3}


def test_default_schemas_are_all_but_the_system_ones(start_exporter, db):
    # root over the unix socket sees the system schemas too, so leaving them out is the prober's doing.
    exporter = start_exporter(config({"name": "all", "service": "gallery", "unix_socket": db.socket, "user": "root",
                                      "interval": "2s", "timeout": "2s"}))
    exporter.wait_for_probe("all")
    scrape = exporter.scrape()
    assert db.sql("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'mysql'")[0][0] > 0
    (expected,) = db.sql("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE'"
                         " AND TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')")[0]
    assert series(scrape, "stackprobe_mysql_tables", "all") == {(): expected}
    schemas = {dict(k)["schema"] for k in series(scrape, "stackprobe_mysql_table_rows", "all")}
    assert {GALLERY, CAP, LOCKS} <= schemas
    assert not schemas & set(mysql.SYSTEM_SCHEMAS)


def test_schema_names_are_parameters_not_sql(start_exporter, db, password_file):
    hostile = [f"{GALLERY}' OR '1'='1", f"{GALLERY}`", f'{GALLERY}") OR 1=1 -- ', "x' UNION SELECT 1,2,3,4,5,6 -- "]
    exporter = start_exporter(config(target("hostile", db, password_file, schemas=hostile)))
    exporter.wait_for_probe("hostile")
    scrape = exporter.scrape()
    assert series(scrape, "stackprobe_probe_success", "hostile") == {(("prober", "mysql"),): 1}
    assert series(scrape, "stackprobe_mysql_tables", "hostile") == {(): 0}
    assert series(scrape, "stackprobe_mysql_table_size_bytes", "hostile") == {}


def test_index_stats_are_reread_every_index_stats_interval(db, tmp_path, password_file):
    """Between reads of information_schema.STATISTICS a probe exports the values last read."""
    db.sql(f"CREATE TABLE {CAP}.cadence (id INT PRIMARY KEY, k INT, KEY k (k))")
    db.sql(f"INSERT INTO {CAP}.cadence SELECT seq, seq % 10 FROM {GALLERY}.seq_1_to_1000")
    db.sql(f"ANALYZE TABLE {CAP}.cadence")
    path = tmp_path / "c.yaml"
    path.write_text(config(target("hourly", db, password_file, schemas=[CAP]),
                           target("always", db, password_file, schemas=[CAP], index_stats_interval="1ms")))
    hourly, always = parse(path).targets
    assert hourly.index_stats_interval == 3600  # the default

    indexed_tables: dict[str, set[str]] = {}

    def probe(t) -> tuple[float, float]:
        result = asyncio.run(probe_result(t, "mysql"))
        assert result.success, result.message
        value = {(n, dict(ls).get("index"), dict(ls).get("table")): v for (n, ls), v in result.samples.items()}
        indexed_tables[t.name] = {table for n, _, table in value if n == "stackprobe_mysql_index_cardinality"}
        return value[("stackprobe_mysql_index_cardinality", "k", "cadence")], value[("stackprobe_mysql_index_stats_timestamp_seconds", None, None)]

    before = {t.name: probe(t) for t in (hourly, always)}
    db.sql(f"UPDATE {CAP}.cadence SET k = id")  # 1,000 distinct keys instead of 10
    db.sql(f"ANALYZE TABLE {CAP}.cadence")
    db.sql(f"DROP TABLE {CAP}.t1")  # gone since the last read: its index series go too
    after = {t.name: probe(t) for t in (hourly, always)}
    assert indexed_tables["hourly"] == indexed_tables["always"] == {"cadence", "t2", "t3", "t4", "t5"}
    (expected,) = db.sql("SELECT CARDINALITY FROM information_schema.STATISTICS"
                         " WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'cadence' AND INDEX_NAME = 'k'", (CAP,))[0]
    assert before["hourly"][0] == before["always"][0] < expected
    assert after["always"][0] == expected and after["always"][1] > before["always"][1]
    assert after["hourly"] == before["hourly"]  # the same values, read at the same time
    db.sql(f"DROP TABLE {CAP}.cadence")
    db.sql(f"CREATE TABLE {CAP}.t1 (id INT PRIMARY KEY, pad CHAR(200), KEY pad (pad))")
    db.sql(f"INSERT INTO {CAP}.t1 SELECT seq, REPEAT('x', 200) FROM {GALLERY}.seq_1_to_10")
    db.sql(f"ANALYZE TABLE {CAP}.t1")


def test_index_series_of_gone_tables_are_left_out_by_their_exact_labels():
    """Between reads of the index statistics, a table dropped since is left out of the lines
    read then, however its name is spelled (quotes and what looks like labels included)."""
    t = mysql.MysqlTarget(name="t", service="s", user="u")
    tricky = ("s", 'x",index="y')
    read = ProbeContext(t)
    read.set_many("mysql_index_cardinality", ("schema", "table"), ("index",),
                  [(table, ("k",), 1) for table in (tricky, ("s", "x"), ("s", "x2"))])
    kept = mysql._without_tables(read.rendered, {tricky, ("s", "x2")})
    assert kept == {"stackprobe_mysql_index_cardinality":
                    b'stackprobe_mysql_index_cardinality{service="s",target="t",schema="s",table="x",index="k"} 1.0\n'}
    assert mysql._without_tables(read.rendered, {("s", "x")})["stackprobe_mysql_index_cardinality"].count(b"\n") == 2
    carriage = ProbeContext(t)  # MySQL allows a carriage return in a quoted name; escaping leaves it
    carriage.set_many("mysql_index_cardinality", ("schema", "table"), ("index",),
                      [(table, ("k\r",), 1) for table in (("s", "a\rb"), ("s", "c"))])
    [line] = mysql._without_tables(carriage.rendered, {("s", "c")})["stackprobe_mysql_index_cardinality"].split(b"\n")[:-1]
    assert b'table="a\rb",index="k\r"' in line


def test_server_counters_equal_show_global_status(db, tmp_path, password_file):
    # One probe run directly (not on a schedule), so no other probe's connection is counted.
    path = tmp_path / "c.yaml"
    path.write_text(config(target("server", db, password_file, schemas=[LOCKS])))
    (t,) = parse(path).targets
    db.sql("SELECT SLEEP(0.3)")  # above the fixture's long_query_time of 0.2 s
    with pytest.raises(pymysql.err.OperationalError):  # one aborted connect
        pymysql.connect(host="127.0.0.1", port=db.port, user=MONITOR_USER, password="wrong")
    make_deadlock(db)
    moving = ("Questions", "Uptime", "Slow_queries", "Aborted_connects", "Innodb_deadlocks", "Innodb_row_lock_waits")
    with db.connect() as held, held.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS WHERE Variable_name IN ('Threads_connected', %s, %s, %s, %s, %s, %s)", moving)
        before = {k: float(v) for k, v in cur.fetchall()}
        result = asyncio.run(probe_result(t, "mysql"))
        cur.execute("SHOW GLOBAL STATUS WHERE Variable_name IN (%s, %s, %s, %s, %s, %s)", moving)
        after = {k: float(v) for k, v in cur.fetchall()}
    assert result.success, result.message
    value = {name.removeprefix("stackprobe_"): v for (name, labels), v in result.samples.items() if not labels}
    assert value["mysql_up"] == 1
    assert value["mysql_max_connections"] == 37 == db.sql("SELECT @@GLOBAL.max_connections")[0][0]
    assert value["mysql_threads_connected"] == before["Threads_connected"] + 1  # the held one plus the probe's own
    assert 1 <= value["mysql_threads_running"] <= value["mysql_threads_connected"]
    assert before["Questions"] < value["mysql_questions_total"] <= after["Questions"]
    for variable, family in (("Uptime", "mysql_uptime_seconds"), ("Slow_queries", "mysql_slow_queries_total"),
                             ("Aborted_connects", "mysql_aborted_connects_total"),
                             ("Innodb_deadlocks", "mysql_innodb_deadlocks_total"),
                             ("Innodb_row_lock_waits", "mysql_innodb_row_lock_waits_total")):
        assert before[variable] <= value[family] <= after[variable], variable
    for family in ("mysql_slow_queries_total", "mysql_aborted_connects_total", "mysql_innodb_deadlocks_total",
                   "mysql_innodb_row_lock_waits_total"):
        assert value[family] >= 1, family
    # A primary: not an error, no replication series.
    assert value["mysql_replica"] == 0
    assert not [n for n, _ in result.samples if "replication" in n]


def make_deadlock(server: MariaDB) -> None:
    """Two transactions that lock rows 1 and 2 of sp_locks.t in opposite orders: one row-lock wait, one deadlock."""
    a, b = server.connect(), server.connect()
    blocked: list[BaseException] = []

    def update(conn: pymysql.Connection, row: int) -> None:
        try:
            with conn.cursor() as cur:
                cur.execute(f"UPDATE {LOCKS}.t SET v = v + 1 WHERE id = %s", (row,))
        except pymysql.err.OperationalError as e:
            blocked.append(e)
    try:
        for conn, row in ((a, 1), (b, 2)):
            conn.begin()
            update(conn, row)
        waiting = threading.Thread(target=update, args=(a, 2))
        waiting.start()
        wait_until(lambda: global_status(server, "Innodb_row_lock_current_waits")["Innodb_row_lock_current_waits"] == 1,
                   timeout=10, what="a row-lock wait")
        update(b, 1)
        waiting.join(10)
        assert [e.args[0] for e in blocked] == [1213]  # ER_LOCK_DEADLOCK for exactly one of the two
    finally:
        for conn in (a, b):
            conn.rollback()
            conn.close()


def test_a_refused_tables_section_fails_index_stats_too(start_exporter, db, password_file, monkeypatch):
    """index_stats reads the indexes of the tables the tables section lists: when that section
    is refused, index_stats says 0 too (an alert on it must not stay silent while its series are
    gone), and the sections before it are unaffected."""
    def refused(*args, **kwargs):
        raise mysql.StatementRefused(1142, "SELECT command denied to user for table 'TABLES'")

    monkeypatch.setattr(mysql, "_tables", refused)
    exporter = start_exporter(config(target("notables", db, password_file, interval="5s", timeout="5s")))
    exporter.wait_for_probe("notables")
    scrape = exporter.scrape()
    assert series(scrape, "stackprobe_mysql_collector_success", "notables") == {
        (("collector", "global_status"),): 1, (("collector", "replica_status"),): 1,
        (("collector", "tables"),): 0, (("collector", "index_stats"),): 0}
    assert series(scrape, "stackprobe_mysql_index_cardinality", "notables") == {}
    assert exporter.value("stackprobe_probe_success", target="notables") == 1


def test_deadlock_fallback_reads_innodb_metrics(db):
    """MySQL 8 has no Innodb_deadlocks; the INNODB_METRICS fallback counts the same deadlocks."""
    t = mysql.MysqlTarget(name="x", service="gallery", user="root", unix_socket=db.socket)
    with mysql.Session(t, ProbeContext(t)) as session:
        assert mysql.innodb_metrics_deadlocks(session) == global_status(db, "Innodb_deadlocks")["Innodb_deadlocks"]


def test_documented_grants_work_verbatim_over_the_unix_socket(start_exporter, db, password_file):
    create_monitoring_user(db, "localhost", [GALLERY])  # the docstring's lines, host unchanged
    assert len(db.sql(f"SHOW GRANTS FOR '{MONITOR_USER}'@'localhost'")) == 2
    exporter = start_exporter(config({"name": "socket", "service": "gallery", "unix_socket": db.socket, "user": MONITOR_USER,
                                      "password_file": str(password_file), "interval": "2s", "timeout": "2s"}))
    exporter.wait_for_probe("socket")
    scrape = exporter.scrape()
    assert series(scrape, "stackprobe_probe_success", "socket") == {(("prober", "mysql"),): 1}
    assert series(scrape, "stackprobe_mysql_replica", "socket") == {(): 0}
    assert series(scrape, "stackprobe_mysql_tables", "socket") == {(): 3}  # only the granted schema is visible
    assert series(scrape, "stackprobe_mysql_innodb_deadlocks_total", "socket")


def test_without_slave_monitor_only_the_replica_section_fails(start_exporter, db, password_file):
    """A real user lacking the documented SLAVE MONITOR grant: SHOW ALL REPLICAS STATUS is refused,
    which loses the replica_status section only; the probe and the other sections succeed."""
    db.sql("CREATE USER 'nomonitor'@'127.0.0.1' IDENTIFIED BY %s", (MONITOR_PASSWORD,))
    db.sql(f"GRANT SELECT ON {GALLERY}.* TO 'nomonitor'@'127.0.0.1'")
    exporter = start_exporter(config(target("nomonitor", db, password_file, user="nomonitor", interval="5s", timeout="5s")))
    exporter.wait_for_probe("nomonitor")
    scrape = exporter.scrape()
    assert series(scrape, "stackprobe_mysql_collector_success", "nomonitor") == {
        (("collector", "global_status"),): 1, (("collector", "replica_status"),): 0,
        (("collector", "tables"),): 1, (("collector", "index_stats"),): 1}
    assert set(series(scrape, "stackprobe_mysql_collector_duration_seconds", "nomonitor")) == {
        (("collector", c),) for c in ("global_status", "replica_status", "tables", "index_stats")}
    assert exporter.value("stackprobe_probe_success", target="nomonitor") == 1
    assert exporter.value("stackprobe_probe_errors_total", target="nomonitor", reason="query") == 0
    assert exporter.value("stackprobe_mysql_up", target="nomonitor") == 1
    assert exporter.value("stackprobe_mysql_max_connections", target="nomonitor") == 37
    assert series(scrape, "stackprobe_mysql_replica", "nomonitor") == {}  # unknown, not "a primary"
    assert series(scrape, "stackprobe_mysql_tables", "nomonitor") == {(): 3}
    assert len(series(scrape, "stackprobe_mysql_index_cardinality", "nomonitor")) == 7  # albums 2, images 3, empty_table 2
    debug = exporter.get("/probe?target=nomonitor&debug=true").text
    assert "section replica_status failed" in debug and "SLAVE MONITOR" in debug


def test_wrong_password_is_auth_and_no_password_leaks(start_exporter, db, password_file, monkeypatch, caplog):
    wrong = "Wr0ng-pw-d41f8a"
    monkeypatch.setenv("SP_MYSQL_WRONG", wrong)
    caplog.set_level(logging.DEBUG)
    exporter = start_exporter(config(target("wrong", db, password_env="SP_MYSQL_WRONG", interval="5s"),
                                     target("right", db, password_file, schemas=[GALLERY], interval="5s")))
    exporter.wait_for_probe("wrong")
    exporter.wait_for_probe("right")
    metrics_text = exporter.get("/metrics").text
    assert exporter.value("stackprobe_probe_errors_total", target="wrong", reason="auth") == 1
    assert exporter.value("stackprobe_probe_success", target="wrong") == 0
    assert exporter.value("stackprobe_mysql_up", target="wrong") == 0
    assert exporter.value("stackprobe_probe_success", target="right") == 1
    debug = {name: exporter.get(f"/probe?target={name}&debug=true").text for name in ("wrong", "right")}
    assert "Access denied" in debug["wrong"] and "reason=auth" in debug["wrong"]
    assert "reason=auth" in caplog.text
    for text in (metrics_text, *debug.values(), caplog.text):
        assert wrong not in text and MONITOR_PASSWORD not in text


def test_pymysql_is_loaded_only_when_a_mysql_target_is_probed():
    code = ("import sys; from stackprobe.exporter import cli, runtime; from stackprobe.exporter.probers import PROBERS; "
            "print('pymysql' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_cryptography_is_loaded_only_for_an_rsa_password_exchange():
    """load_pymysql leaves cryptography (7.5 MiB) unloaded; pymysql's RSA step loads it and works."""
    code = textwrap.dedent("""
        import sys
        from stackprobe.exporter.probers import mysql
        pymysql = mysql.load_pymysql()
        assert "cryptography" not in sys.modules, "loaded with pymysql"
        from pymysql import _auth
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        salt = b"0123456789abcdefghij"
        sent = _auth.sha2_rsa_encrypt(b"secret", salt, pem)
        oaep = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
        assert key.decrypt(sent, oaep) == _auth._xor_password(b"secret\\0", salt)
        assert _auth._have_cryptography and _auth.sha2_rsa_encrypt(b"x", salt, pem)  # pymysql's own from now on
        print("ok")
    """)
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "ok"


def test_a_stopped_server_fails_with_connect_then_recovers(start_exporter, db, mariadb_factory, password_file):
    flaky = mariadb_factory()
    create_monitoring_user(flaky, "127.0.0.1", [])
    exporter = start_exporter(config(target("flaky", flaky, password_file), target("steady", db, password_file, schemas=[GALLERY])))
    exporter.wait_for_probe("flaky")
    assert exporter.value("stackprobe_probe_success", target="flaky") == 1
    flaky.stop()
    exporter.wait_for_probe("flaky", count=2)
    assert exporter.value("stackprobe_probe_success", target="flaky") == 0
    assert exporter.value("stackprobe_mysql_up", target="flaky") == 0
    assert exporter.value("stackprobe_probe_errors_total", target="flaky", reason="connect") >= 1
    steady_runs = exporter.value("stackprobe_probe_last_run_timestamp_seconds", target="steady")
    exporter.wait_for_probe("steady")
    assert exporter.value("stackprobe_probe_last_run_timestamp_seconds", target="steady") > steady_runs
    assert exporter.value("stackprobe_probe_success", target="steady") == 1
    flaky.start()
    wait_until(lambda: exporter.value("stackprobe_probe_success", target="flaky") == 1, timeout=30, what="recovery")
    assert exporter.value("stackprobe_mysql_up", target="flaky") == 1


def test_a_server_that_never_answers_times_out(start_exporter, silent_listener):
    exporter = start_exporter(config({"name": "hung", "service": "gallery", "host": "127.0.0.1", "port": silent_listener.port,
                                      "user": MONITOR_USER, "interval": "2s", "timeout": "1s"}))
    exporter.wait_for_probe("hung", timeout=30)
    assert exporter.value("stackprobe_probe_success", target="hung") == 0
    assert exporter.value("stackprobe_probe_errors_total", target="hung", reason="timeout") == 1


def test_the_blocked_worker_thread_itself_gives_up(silent_listener):
    """The scheduler abandons a hung probe at the timeout; the pymysql call in the worker thread
    must end too (its socket timeouts come from ctx.remaining()), or hung threads pile up."""
    t = mysql.MysqlTarget(name="hung", service="gallery", user=MONITOR_USER, port=silent_listener.port, interval=2, timeout=1)
    pool = ThreadPoolExecutor(1)
    error = pool.submit(mysql.PROBER.probe_blocking, t, ProbeContext(t)).exception(timeout=30)
    pool.shutdown(wait=False)
    assert isinstance(error, ProbeError) and error.reason == "timeout", error


def test_a_busy_server_times_out_and_the_query_ends_on_the_server(db, tmp_path, password_file):
    """information_schema.TABLES waits for the metadata lock of a table being created: the probe
    ends at its timeout with reason timeout, and its query does not keep waiting on the server."""
    path = tmp_path / "c.yaml"
    path.write_text(config(target("busy", db, password_file, schemas=[LOCKS], interval="5s", timeout="1s")))
    (t,) = parse(path).targets
    with db.busy_table(LOCKS):
        result = asyncio.run(probe_result(t, "mysql"))
        assert (result.success, result.reason) == (False, "timeout"), result.message
        wait_until(lambda: not db.queries_of(MONITOR_USER), timeout=15, what="no connection of the probe left on the server")
    assert "Waiting for table metadata lock" not in str(db.queries_of(MONITOR_USER))


def test_at_the_timeout_the_watchdog_kills_the_query_on_the_server(db, password_file):
    """A query that ignores its client going away (SLEEP keeps running after a disconnect) and that
    no server-side limit bounds: the watchdog KILLs its connection from a second one."""
    t = mysql.MysqlTarget(name="sleepy", service="gallery", port=db.port, user=MONITOR_USER,
                          password_file=password_file, interval=5, timeout=1)
    with mysql.Session(t, ProbeContext(t)) as session:
        connection_id = session.conn.thread_id()
        with pytest.raises(ProbeError) as error:
            session.rows("SELECT SLEEP(60)")
    assert error.value.reason == "timeout", error.value
    wait_until(lambda: not [q for q in db.queries_of(MONITOR_USER) if q[0] == connection_id], timeout=15,
               what="the probe's connection killed on the server")


def test_sigterm_ends_the_exporter_while_a_mysql_probe_waits(db, tmp_path, password_file):
    """SIGTERM while a probe with a 60 s timeout waits for a metadata lock: the exporter exits
    at once (it used to wait for the probe's thread) and leaves no query behind on the server."""
    from test_exporter import ExporterProcess

    path = tmp_path / "c.yaml"
    path.write_text(config(target("waiting", db, password_file, schemas=[LOCKS], interval="2m", timeout="1m")))
    with db.busy_table(LOCKS):
        p = ExporterProcess(path, tmp_path / "stderr.log")
        try:
            wait_until(lambda: [q for q in db.queries_of(MONITOR_USER) if q[2] == "Waiting for table metadata lock"],
                       timeout=30, what="the probe waiting for the lock")
            p.proc.send_signal(signal.SIGTERM)
            assert p.proc.wait(timeout=15) == 0  # well before the probe's own 60 s timeout
        finally:
            p.proc.kill()
        wait_until(lambda: not db.queries_of(MONITOR_USER), timeout=15, what="no query of the exporter left")


def _packet(sequence: int, payload: bytes) -> bytes:
    """One MySQL packet: 3-byte little-endian length, sequence number, payload."""
    return len(payload).to_bytes(3, "little") + bytes([sequence]) + payload


@pytest.mark.parametrize("name, greeting, reason", [
    ("random bytes", bytes(range(7, 250, 3)) * 4, "connect"),
    ("an HTTP server", b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", "connect"),
    ("a truncated greeting", _packet(0, b"\x0a5.5.5-10.11.0-MariaDB\x00\x01"), "connect"),
    ("a greeting of the wrong protocol", _packet(0, b"\x09" + b"\xff" * 60), "connect"),
    ("an error packet of nonsense", _packet(0, b"\xff\x15"), "connect"),
    ("a packet longer than what follows", b"\xff\xff\xff\x00" + b"x" * 100, "timeout"),
    ("half a packet header", b"\x4a\x00", "timeout"),
])
def test_a_peer_that_is_not_mysql_gives_a_named_reason(hostile_mysql, name, greeting, reason):
    peer = hostile_mysql(greeting=greeting)
    t = mysql.MysqlTarget(name="hostile", service="gallery", port=peer.port, user=MONITOR_USER, interval=5, timeout=1)
    result = asyncio.run(probe_result(t, "mysql"))
    assert result.reason == reason, (name, result.reason, result.message)


@pytest.mark.parametrize("tamper, reason", [
    pytest.param(lambda data: None, "connect", id="closed in the middle of the TABLES result"),
    pytest.param(lambda data: _packet(1, b"\x01") + _packet(2, b"\x03de"), "query", id="a column definition cut short"),
    pytest.param(lambda data: _packet(7, b"\x01"), "query", id="a packet out of sequence"),
    # MariaDB says it is shutting down with a packet numbered 0, so pymysql reads zeros as that.
    pytest.param(lambda data: data[:8] + bytes(len(data) - 8), "connect", id="zeroed packets"),
])
def test_a_server_that_breaks_off_or_garbles_a_result_gives_a_named_reason(db, hostile_mysql, password_file, tamper, reason):
    peer = hostile_mysql(upstream=db.port, trigger=b"information_schema.TABLES", tamper=tamper)
    # A generous timeout: each case fails at once, and a loaded machine must not turn it into a timeout.
    t = mysql.MysqlTarget(name="garbled", service="gallery", port=peer.port, user=MONITOR_USER,
                          password_file=password_file, schemas=(GALLERY,), interval=20, timeout=15)
    result = asyncio.run(probe_result(t, "mysql"))
    assert (result.success, result.reason) == (False, reason), result.log
    assert result.samples[("stackprobe_mysql_up", ())] == 1  # connected; what was read before is kept


def test_tls(start_exporter, db, mariadb_factory, mariadb_tls, password_file):
    ca_file = mariadb_tls[0]
    plain = mariadb_factory()
    create_monitoring_user(plain, "127.0.0.1", [])
    slow_machine = {"interval": "10s", "timeout": "10s"}  # TLS setup on a loaded 2-core machine
    exporter = start_exporter(config(
        target("verified", db, password_file, tls={"ca_file": str(ca_file)}, **slow_machine),
        target("unknown-ca", db, password_file, tls={}, **slow_machine),
        target("unverified", db, password_file, tls={"verify": False}, **slow_machine),
        target("no-tls-offered", plain, password_file, tls={"verify": False}, **slow_machine),
    ))
    for name in ("verified", "unknown-ca", "unverified", "no-tls-offered"):
        exporter.wait_for_probe(name)
    assert exporter.value("stackprobe_probe_success", target="verified") == 1
    assert exporter.value("stackprobe_probe_success", target="unverified") == 1
    assert exporter.value("stackprobe_probe_errors_total", target="unknown-ca", reason="tls") >= 1
    # A configured tls never falls back to plaintext (pymysql >= 1.2 refuses when given an SSLContext).
    assert exporter.value("stackprobe_probe_errors_total", target="no-tls-offered", reason="tls") >= 1


def start_replication(mariadb_factory, schemas: list[str], before_user: tuple[str, ...] = ()) -> tuple[MariaDB, MariaDB]:
    """A primary and its replica on channel `gallery_src`, replicating; `before_user` run on the
    primary, then the monitoring user (SELECT on `schemas`) created there and seen on the replica."""
    primary = mariadb_factory("--log-bin=primary-bin", "--server-id=1")
    replica = mariadb_factory("--server-id=2")
    primary.sql("CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY 'repl-pw'")
    primary.sql("GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1'")
    replica.sql(f"CHANGE MASTER 'gallery_src' TO MASTER_HOST='127.0.0.1', MASTER_PORT={primary.port},"
                " MASTER_USER='repl', MASTER_PASSWORD='repl-pw', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1")
    replica.sql("START SLAVE 'gallery_src'")
    with replica.connect(cursorclass=pymysql.cursors.DictCursor) as conn, conn.cursor() as cur:
        def replicating():
            cur.execute("SHOW SLAVE 'gallery_src' STATUS")
            row = cur.fetchone()
            return row["Seconds_Behind_Master"] is not None and row["Slave_IO_Running"] == "Yes" and row
        wait_until(replicating, timeout=30, what="replication running")
    for statement in before_user:
        primary.sql(statement)
    # Created on the primary, the monitoring user reaches the replica through replication.
    create_monitoring_user(primary, "127.0.0.1", schemas)
    wait_until(lambda: replica.sql("SELECT 1 FROM mysql.user WHERE User = %s", (MONITOR_USER,)), timeout=30,
               what="the monitoring user replicated")
    return primary, replica


class _Noting:
    """A probe's ProbeContext that also notes the family of every sample set through it."""

    def __init__(self, ctx: ProbeContext, families: set[str]):
        self._ctx, self._families = ctx, families

    def __getattr__(self, name: str):
        return getattr(self._ctx, name)

    def set(self, name: str, value: float, **labels) -> None:
        self._families.add(name)
        self._ctx.set(name, value, **labels)

    def set_many(self, name: str, *args, **kwargs):
        self._families.add(name)
        return self._ctx.set_many(name, *args, **kwargs)

    def include(self, pieces) -> None:
        self._families.update(family.removeprefix("stackprobe_") for family in pieces)
        self._ctx.include(pieces)


def test_each_section_sets_exactly_the_families_it_declares(mariadb_factory, password_file, monkeypatch):
    """mysql.COLLECTORS, from which the rules generator learns which section a KPI's series come
    from (and so which failing section blinds it), against the families each section really
    sets: one probe of a replica with an analysed, indexed table, where every section has
    something to set (replication lag and channel, table sizes, index statistics)."""
    schema = "sp_sections"
    _, replica = start_replication(mariadb_factory, [schema], before_user=(
        f"CREATE DATABASE {schema}",
        f"CREATE TABLE {schema}.t (id INT PRIMARY KEY, k INT, KEY k (k))",
        f"INSERT INTO {schema}.t SELECT seq, seq % 10 FROM {schema}.seq_1_to_100",
        f"ANALYZE TABLE {schema}.t",
    ))
    set_by: dict[str, set[str]] = {}
    run_section = mysql.MysqlProber._section

    def noted(collector, read, session, ctx, *args):
        families = set_by.setdefault(collector, set())
        return run_section(collector, lambda s, c, *a: read(s, _Noting(c, families), *a), session, ctx, *args)

    monkeypatch.setattr(mysql.MysqlProber, "_section", staticmethod(noted))
    t = mysql.MysqlTarget(name="replica", service="gallery", port=replica.port, user=MONITOR_USER,
                          password_file=password_file, schemas=(schema,), interval=20, timeout=15)
    result = asyncio.run(probe_result(t, "mysql"))
    assert result.success, result.message
    assert set_by == {collector: set(families) for collector, families in mysql.COLLECTORS.items()}
    assert mysql.PROBER.collectors is mysql.COLLECTORS
    # Each family belongs to one section, except those that describe the probe and its sections.
    declared = [f for families in mysql.COLLECTORS.values() for f in families]
    about_the_probe = {"mysql_up", "mysql_collector_success", "mysql_collector_duration_seconds"}
    assert sorted([*declared, *about_the_probe]) == sorted(f.name.removeprefix("stackprobe_") for f in mysql.FAMILIES)


def test_replica_lag_and_channel(start_exporter, mariadb_factory, password_file):
    primary, replica = start_replication(mariadb_factory, [])
    exporter = start_exporter(config(target("replica", replica, password_file), target("primary", primary, password_file)))
    exporter.wait_for_probe("replica")
    exporter.wait_for_probe("primary")
    scrape = exporter.scrape()
    assert series(scrape, "stackprobe_mysql_replica", "replica") == {(): 1}
    assert series(scrape, "stackprobe_mysql_replication_running", "replica") == {(("channel", "gallery_src"),): 1}
    lag = series(scrape, "stackprobe_mysql_replication_lag_seconds", "replica")
    assert list(lag) == [(("channel", "gallery_src"),)] and lag[(("channel", "gallery_src"),)] >= 0
    assert series(scrape, "stackprobe_mysql_replica", "primary") == {(): 0}
    assert series(scrape, "stackprobe_mysql_replication_lag_seconds", "primary") == {}

    # With the SQL thread stopped the lag is unknown: no series rather than a wrong number.
    replica.sql("STOP SLAVE 'gallery_src' SQL_THREAD")
    exporter.wait_for_probe("replica")
    scrape = exporter.scrape()
    assert series(scrape, "stackprobe_mysql_replication_running", "replica") == {(("channel", "gallery_src"),): 0}
    assert series(scrape, "stackprobe_mysql_replication_lag_seconds", "replica") == {}
    assert series(scrape, "stackprobe_probe_success", "replica") == {(("prober", "mysql"),): 1}
