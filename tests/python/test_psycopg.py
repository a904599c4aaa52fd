"""psycopg 3 against fortress: typed round trips of every column type with
text and binary parameters and results, COPY, and errors with SQLSTATEs.

Run by .ci/run: python3 tests/python/test_psycopg.py path/to/fortress
"""

import datetime as dt
import decimal
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import psycopg


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary, data_dir, port):
    proc = subprocess.Popen(
        [binary, "serve", "--data-dir", data_dir, "--listen", f"127.0.0.1:{port}", "--admin-listen", "off"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("fortress exited during start-up")
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("fortress did not start")


ROW = {
    "id": 1,
    "s": -7,
    "i": 123456,
    "b": 9000000000,
    "r": 1.5,
    "f": -2.25,
    "n": decimal.Decimal("12.345"),
    "ok": True,
    "t": "héllo",
    "v": "short",
    "c": "ab  ",
    "raw": b"\x00\x01\xfe\xff",
    "d": dt.date(2024, 2, 29),
    "ts": dt.datetime(2024, 2, 29, 13, 45, 1, 250000),
    "tz": dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.timezone.utc),
    "u": uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
}

SCHEMA = (
    "CREATE TABLE typed (id int PRIMARY KEY, s smallint, i int, b bigint, r real, "
    "f float8, n numeric(10,3), ok boolean, t text, v varchar(8), c char(4), raw bytea, "
    "d date, ts timestamp, tz timestamptz, u uuid)"
)


def check_round_trip(conn, binary, row_id):
    cols = list(ROW)
    values = dict(ROW, id=row_id)
    with conn.cursor(binary=binary) as cur:
        placeholders = ", ".join("%s" for _ in cols)
        cur.execute(
            f"INSERT INTO typed ({', '.join(cols)}) VALUES ({placeholders})",
            [values[c] for c in cols],
        )
        cur.execute(f"SELECT {', '.join(cols)} FROM typed WHERE id = %s", [row_id])
        got = dict(zip(cols, cur.fetchone()))
    for c in cols:
        want = values[c]
        if c == "tz":
            assert got[c] == want, (binary, c, got[c], want)
        else:
            assert got[c] == want and type(got[c]) is type(want), (binary, c, got[c], want)


def main():
    binary = sys.argv[1]
    passed = failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        proc = start(binary, os.path.join(tmp, "data"), port)
        try:
            conn = psycopg.connect(
                f"host=127.0.0.1 port={port} user=fortress dbname=app", autocommit=True
            )
            conn.execute(SCHEMA)
            checks = [
                ("text round trip", lambda: check_round_trip(conn, False, 1)),
                ("binary round trip", lambda: check_round_trip(conn, True, 2)),
                ("copy", lambda: check_copy(conn)),
                ("errors", lambda: check_errors(conn)),
                ("transaction", lambda: check_transaction(conn)),
            ]
            for name, fn in checks:
                try:
                    fn()
                    passed += 1
                    print(f"ok   {name}")
                except Exception as e:  # noqa: BLE001 - report every failure
                    failed += 1
                    print(f"FAIL {name}: {e!r}")
            conn.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"psycopg: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


def check_copy(conn):
    conn.execute("CREATE TABLE pc (id int PRIMARY KEY, name text)")
    with conn.cursor() as cur:
        with cur.copy("COPY pc (id, name) FROM STDIN") as copy:
            for i in range(200):
                copy.write_row((i, f"n{i}"))
        cur.execute("SELECT count(*), min(name), max(id) FROM pc")
        assert cur.fetchone() == (200, "n0", 199)
        lines = []
        with cur.copy("COPY (SELECT id FROM pc WHERE id < 3 ORDER BY id) TO STDOUT") as copy:
            for data in copy:
                lines.append(bytes(data).decode())
        assert "".join(lines) == "0\n1\n2\n", lines


def check_errors(conn):
    for sql, state in [
        ("SELECT * FROM missing", "42P01"),
        ("SELECT 1/0", "22012"),
        ("INSERT INTO typed (id) VALUES (1)", "23505"),
        ("SELEC 1", "42601"),
    ]:
        try:
            conn.execute(sql)
        except psycopg.Error as e:
            assert e.sqlstate == state, (sql, e.sqlstate)
        else:
            raise AssertionError(f"{sql} should fail")
    assert conn.execute("SELECT 1").fetchone() == (1,)


def check_transaction(conn):
    conn.autocommit = False
    try:
        with conn.transaction():
            conn.execute("UPDATE typed SET i = i + 1 WHERE id = 1")
            assert conn.execute("SELECT i FROM typed WHERE id = 1").fetchone() == (123457,)
        try:
            with conn.transaction():
                conn.execute("UPDATE typed SET i = 0 WHERE id = 1")
                conn.execute("SELECT 1/0")
        except psycopg.errors.DivisionByZero:
            pass
        assert conn.execute("SELECT i FROM typed WHERE id = 1").fetchone() == (123457,)
    finally:
        conn.rollback()
        conn.autocommit = True


if __name__ == "__main__":
    main()
