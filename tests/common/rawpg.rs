//! A minimal simple-query client over a raw socket. Unlike a driver it keeps
//! everything the differential tests compare: full command tags, column names
//! and type OIDs, text values, SQLSTATEs and COPY data.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One result of a simple query (a query string may produce several).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Rows with their columns as (name, type OID), then the command tag.
    Rows {
        columns: Vec<(String, u32)>,
        rows: Vec<Vec<Option<String>>>,
        tag: String,
    },
    /// A command without rows: its tag.
    Command(String),
    /// COPY ... TO STDOUT: the data sent, then the tag.
    CopyOut {
        data: String,
        tag: String,
    },
    /// An ErrorResponse: its SQLSTATE and message.
    Error {
        code: String,
        message: String,
    },
    Empty,
}

pub struct RawClient {
    stream: TcpStream,
}

fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn cstr(body: &[u8], at: &mut usize) -> String {
    let end = body[*at..]
        .iter()
        .position(|&b| b == 0)
        .map(|p| *at + p)
        .unwrap_or(body.len());
    let s = String::from_utf8_lossy(&body[*at..end]).to_string();
    *at = end + 1;
    s
}

fn int(body: &[u8], at: &mut usize, n: usize) -> i64 {
    let mut v: i64 = 0;
    for b in &body[*at..*at + n] {
        v = (v << 8) | *b as i64;
    }
    *at += n;
    // Sign-extend 2- and 4-byte fields.
    let shift = 64 - 8 * n as u32;
    (v << shift) >> shift
}

fn error_fields(body: &[u8]) -> (String, String) {
    let (mut code, mut message) = (String::new(), String::new());
    let mut at = 0;
    while at < body.len() && body[at] != 0 {
        let field = body[at];
        at += 1;
        let v = cstr(body, &mut at);
        match field {
            b'C' => code = v,
            b'M' => message = v,
            _ => {}
        }
    }
    (code, message)
}

impl RawClient {
    /// Connects and starts up as `user` on `database` (trust auth).
    pub fn connect(port: u16, user: &str, database: &str) -> RawClient {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let mut c = RawClient { stream };
        c.stream
            .write_all(&super::startup_message(&[
                ("user", user),
                ("database", database),
                ("client_encoding", "UTF8"),
            ]))
            .expect("send startup");
        loop {
            let (tag, body) = super::read_message(&mut c.stream);
            match tag {
                b'R' => assert_eq!(&body[..4], &[0, 0, 0, 0], "only trust auth is supported"),
                b'E' => panic!("startup failed: {:?}", error_fields(&body)),
                b'Z' => return c,
                _ => {}
            }
        }
    }

    /// Runs `sql` with the simple query protocol; `copy_in` is sent when the
    /// server asks for COPY FROM STDIN data.
    pub fn query(&mut self, sql: &str, copy_in: Option<&str>) -> Vec<Outcome> {
        let mut q = sql.as_bytes().to_vec();
        q.push(0);
        self.stream
            .write_all(&message(b'Q', &q))
            .expect("send query");
        let mut out = Vec::new();
        let mut columns: Option<Vec<(String, u32)>> = None;
        let mut rows = Vec::new();
        let mut copy = String::new();
        let mut copying_out = false;
        loop {
            let (tag, body) = super::read_message(&mut self.stream);
            match tag {
                b'T' => {
                    let mut at = 0;
                    let n = int(&body, &mut at, 2);
                    let mut cols = Vec::new();
                    for _ in 0..n {
                        let name = cstr(&body, &mut at);
                        at += 6;
                        let oid = int(&body, &mut at, 4) as u32;
                        at += 8;
                        cols.push((name, oid));
                    }
                    columns = Some(cols);
                }
                b'D' => {
                    let mut at = 0;
                    let n = int(&body, &mut at, 2);
                    let mut row = Vec::new();
                    for _ in 0..n {
                        let len = int(&body, &mut at, 4);
                        if len < 0 {
                            row.push(None);
                        } else {
                            let v = &body[at..at + len as usize];
                            row.push(Some(String::from_utf8_lossy(v).to_string()));
                            at += len as usize;
                        }
                    }
                    rows.push(row);
                }
                b'C' => {
                    let mut at = 0;
                    let t = cstr(&body, &mut at);
                    if copying_out {
                        out.push(Outcome::CopyOut {
                            data: std::mem::take(&mut copy),
                            tag: t,
                        });
                        copying_out = false;
                    } else if let Some(cols) = columns.take() {
                        out.push(Outcome::Rows {
                            columns: cols,
                            rows: std::mem::take(&mut rows),
                            tag: t,
                        });
                    } else {
                        out.push(Outcome::Command(t));
                    }
                }
                b'E' => {
                    let (code, message) = error_fields(&body);
                    columns = None;
                    rows.clear();
                    copying_out = false;
                    out.push(Outcome::Error { code, message });
                }
                b'I' => out.push(Outcome::Empty),
                b'G' => {
                    if let Some(data) = copy_in {
                        for chunk in data.as_bytes().chunks(4096) {
                            self.stream
                                .write_all(&message(b'd', chunk))
                                .expect("copy data");
                        }
                        self.stream
                            .write_all(&message(b'c', &[]))
                            .expect("copy done");
                    } else {
                        let mut m = b"no COPY data in the script".to_vec();
                        m.push(0);
                        self.stream
                            .write_all(&message(b'f', &m))
                            .expect("copy fail");
                    }
                }
                b'H' => copying_out = true,
                b'd' => copy.push_str(&String::from_utf8_lossy(&body)),
                b'Z' => return out,
                _ => {}
            }
        }
    }

    /// Sends raw bytes (for malformed-input tests).
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads whatever the server sends until it closes or times out.
    pub fn drain(&mut self) -> Vec<u8> {
        let mut buf = Vec::new();
        let _ = self.stream.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = self.stream.read_to_end(&mut buf);
        buf
    }
}
