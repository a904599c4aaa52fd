// node-postgres against fortress: typed round trips of every column type
// through parameters (extended protocol) and plain queries, errors with
// SQLSTATEs, and a transaction. Run by .ci/run:
//   node tests/node/test_pg.js path/to/fortress
const { spawn } = require("child_process");
const net = require("net");
const os = require("os");
const path = require("path");
const fs = require("fs");
const assert = require("assert");
const { Client } = require("pg");

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = s.address().port;
      s.close(() => resolve(port));
    });
  });
}

async function waitListening(port, child) {
  const deadline = Date.now() + 60000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error("fortress exited during start-up");
    const ok = await new Promise((resolve) => {
      const c = net.connect(port, "127.0.0.1", () => { c.end(); resolve(true); });
      c.on("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("fortress did not start");
}

async function main() {
  const binary = process.argv[2];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "fortress-node-"));
  const port = await freePort();
  const child = spawn(binary, ["serve", "--data-dir", path.join(dir, "data"), "--listen", `127.0.0.1:${port}`, "--admin-listen", "off"], { stdio: "ignore" });
  let passed = 0, failed = 0;
  try {
    await waitListening(port, child);
    const client = new Client({ host: "127.0.0.1", port, user: "fortress", database: "app" });
    await client.connect();
    const checks = {
      "round trip": async () => {
        await client.query("CREATE TABLE typed (id int PRIMARY KEY, s smallint, b bigint, r real, f float8, n numeric(10,3), ok boolean, t text, c char(4), raw bytea, d date, ts timestamp, tz timestamptz, u uuid)");
        const tz = new Date(Date.UTC(2024, 2, 1, 12, 0, 0));
        await client.query(
          "INSERT INTO typed VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
          [1, -7, "9000000000", 1.5, -2.25, "12.345", true, "héllo", "ab", Buffer.from([0, 1, 254, 255]), "2024-02-29", "2024-02-29 13:45:01.25", tz, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"],
        );
        const { rows, fields } = await client.query("SELECT * FROM typed WHERE id = $1", [1]);
        const r = rows[0];
        assert.strictEqual(r.s, -7);
        assert.strictEqual(r.b, "9000000000");
        assert.strictEqual(r.r, 1.5);
        assert.strictEqual(r.f, -2.25);
        assert.strictEqual(r.n, "12.345");
        assert.strictEqual(r.ok, true);
        assert.strictEqual(r.t, "héllo");
        assert.strictEqual(r.c, "ab  ");
        assert.deepStrictEqual([...r.raw], [0, 1, 254, 255]);
        assert.strictEqual(r.tz.getTime(), tz.getTime());
        assert.strictEqual(r.u, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
        const oids = Object.fromEntries(fields.map((f) => [f.name, f.dataTypeID]));
        assert.deepStrictEqual([oids.s, oids.b, oids.r, oids.n, oids.c, oids.raw, oids.tz, oids.u], [21, 20, 700, 1700, 1042, 17, 1184, 2950]);
      },
      errors: async () => {
        for (const [sql, code] of [["SELECT * FROM missing", "42P01"], ["SELECT 1/0", "22012"], ["INSERT INTO typed (id) VALUES (1)", "23505"]]) {
          await assert.rejects(client.query(sql), (e) => e.code === code);
        }
        assert.strictEqual((await client.query("SELECT 1 AS one")).rows[0].one, 1);
      },
      transaction: async () => {
        await client.query("BEGIN");
        await client.query("UPDATE typed SET s = 8 WHERE id = 1");
        await client.query("ROLLBACK");
        assert.strictEqual((await client.query("SELECT s FROM typed")).rows[0].s, -7);
      },
    };
    for (const [name, fn] of Object.entries(checks)) {
      try {
        await fn();
        passed++;
        console.log(`ok   ${name}`);
      } catch (e) {
        failed++;
        console.log(`FAIL ${name}: ${e.stack || e}`);
      }
    }
    await client.end();
  } finally {
    child.kill("SIGTERM");
    fs.rmSync(dir, { recursive: true, force: true });
  }
  console.log(`node-postgres: ${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => { console.error(e); process.exit(1); });
