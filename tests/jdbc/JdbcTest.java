// pgjdbc against fortress: typed round trips through PreparedStatement
// (server-side prepared after a few uses), metadata look-ups, SQLSTATEs and
// a transaction. Run by .ci/run:
//   java -cp /usr/share/java/postgresql.jar tests/jdbc/JdbcTest.java path/to/fortress
import java.math.BigDecimal;
import java.sql.*;
import java.util.UUID;

public class JdbcTest {
    static int passed = 0, failed = 0;

    interface Check { void run() throws Exception; }

    static void check(String name, Check c) {
        try {
            c.run();
            passed++;
            System.out.println("ok   " + name);
        } catch (Throwable e) {
            failed++;
            System.out.println("FAIL " + name + ": " + e);
        }
    }

    static void eq(Object got, Object want) {
        if (!java.util.Objects.equals(got, want)) {
            throw new AssertionError("got " + got + ", want " + want);
        }
    }

    public static void main(String[] args) throws Exception {
        int port;
        try (java.net.ServerSocket s = new java.net.ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
            port = s.getLocalPort();
        }
        java.nio.file.Path dir = java.nio.file.Files.createTempDirectory("fortress-jdbc-");
        Process server = new ProcessBuilder(args[0], "serve", "--data-dir", dir.resolve("data").toString(),
                "--listen", "127.0.0.1:" + port, "--admin-listen", "off")
                .redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.DISCARD)
                .start();
        try {
            long deadline = System.currentTimeMillis() + 60_000;
            while (true) {
                try (java.net.Socket probe = new java.net.Socket("127.0.0.1", port)) {
                    break;
                } catch (java.io.IOException e) {
                    if (!server.isAlive() || System.currentTimeMillis() > deadline) {
                        throw new IllegalStateException("fortress did not start");
                    }
                    Thread.sleep(50);
                }
            }
            run("jdbc:postgresql://127.0.0.1:" + port + "/app?user=fortress&prepareThreshold=1");
        } finally {
            server.destroy();
            server.waitFor();
        }
        System.out.println("pgjdbc: " + passed + " passed, " + failed + " failed");
        System.exit(failed == 0 ? 0 : 1);
    }

    static void run(String url) throws Exception {
        try (Connection c = DriverManager.getConnection(url)) {
            try (Statement s = c.createStatement()) {
                s.execute("CREATE TABLE typed (id int PRIMARY KEY, b bigint, f float8, n numeric(10,3), ok boolean, t text, d date, ts timestamp, u uuid, raw bytea)");
            }
            check("round trip", () -> {
                UUID u = UUID.fromString("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
                for (int i = 1; i <= 3; i++) {
                    try (PreparedStatement p = c.prepareStatement("INSERT INTO typed VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")) {
                        p.setInt(1, i);
                        p.setLong(2, 9_000_000_000L + i);
                        p.setDouble(3, -2.25);
                        p.setBigDecimal(4, new BigDecimal("12.345"));
                        p.setBoolean(5, true);
                        p.setString(6, "héllo");
                        p.setDate(7, Date.valueOf("2024-02-29"));
                        p.setTimestamp(8, Timestamp.valueOf("2024-02-29 13:45:01.25"));
                        p.setObject(9, u);
                        p.setBytes(10, new byte[] {0, 1, (byte) 254});
                        p.executeUpdate();
                    }
                }
                try (PreparedStatement p = c.prepareStatement("SELECT * FROM typed WHERE id = ?")) {
                    p.setInt(1, 2);
                    try (ResultSet r = p.executeQuery()) {
                        if (!r.next()) throw new AssertionError("no row");
                        eq(r.getLong("b"), 9_000_000_002L);
                        eq(r.getDouble("f"), -2.25);
                        eq(r.getBigDecimal("n"), new BigDecimal("12.345"));
                        eq(r.getBoolean("ok"), true);
                        eq(r.getString("t"), "héllo");
                        eq(r.getDate("d").toString(), "2024-02-29");
                        eq(r.getTimestamp("ts").toString(), "2024-02-29 13:45:01.25");
                        eq(r.getObject("u"), u);
                        eq(r.getBytes("raw").length, 3);
                        eq(r.getMetaData().getColumnTypeName(9), "uuid");
                    }
                }
            });
            check("errors", () -> {
                String[][] cases = {{"SELECT * FROM missing", "42P01"}, {"SELECT 1/0", "22012"}, {"INSERT INTO typed (id) VALUES (1)", "23505"}};
                for (String[] cs : cases) {
                    try (Statement s = c.createStatement()) {
                        s.execute(cs[0]);
                        throw new AssertionError(cs[0] + " should fail");
                    } catch (SQLException e) {
                        eq(e.getSQLState(), cs[1]);
                    }
                }
            });
            check("transaction", () -> {
                c.setAutoCommit(false);
                try (Statement s = c.createStatement()) {
                    s.executeUpdate("UPDATE typed SET b = 0 WHERE id = 1");
                }
                c.rollback();
                c.setAutoCommit(true);
                try (Statement s = c.createStatement(); ResultSet r = s.executeQuery("SELECT b FROM typed WHERE id = 1")) {
                    r.next();
                    eq(r.getLong(1), 9_000_000_001L);
                }
            });
        }
    }
}
