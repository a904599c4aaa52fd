//! Structure checks of frontend messages, as PostgreSQL's protocol defines
//! them. pgwire 0.42's decoders read past the end of a Parse, Bind,
//! Describe, Close or Execute body that is cut short, or of any message
//! whose length field is under 4, and panic; they also read a body's
//! trailing bytes as the next message. A message that passes [`check`]
//! decodes without either. [`Frames`] follows the message boundaries of a
//! connection as its bytes arrive and stops at a length field no message
//! can have.

/// Why a message body is malformed.
pub type Malformed = &'static str;

struct Body<'a> {
    rest: &'a [u8],
}

impl<'a> Body<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.rest.len() < n {
            return Err("message ends early");
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn cstring(&mut self) -> Result<(), Malformed> {
        let end = self
            .rest
            .iter()
            .position(|&b| b == 0)
            .ok_or("string without its terminating zero byte")?;
        self.rest = &self.rest[end + 1..];
        Ok(())
    }

    fn u16(&mut self) -> Result<u16, Malformed> {
        Ok(u16::from_be_bytes(
            self.take(2)?.try_into().map_err(|_| "short")?,
        ))
    }

    fn i32(&mut self) -> Result<i32, Malformed> {
        Ok(i32::from_be_bytes(
            self.take(4)?.try_into().map_err(|_| "short")?,
        ))
    }
}

/// Checks a regular (post-startup) message: its type byte `tag`, its length
/// field `len` (which counts itself) and its body.
pub fn check(tag: u8, len: u32, body: &[u8]) -> Result<(), Malformed> {
    if len < 4 {
        return Err("message length shorter than its own field");
    }
    if body.len() != len as usize - 4 {
        return Err("message body does not match its length");
    }
    let mut b = Body { rest: body };
    match tag {
        // Parse: name, query, parameter type count, type OIDs.
        b'P' => {
            b.cstring()?;
            b.cstring()?;
            let n = b.u16()?;
            b.take(4 * usize::from(n))?;
        }
        // Bind: portal, statement, format codes, parameters, result formats.
        b'B' => {
            b.cstring()?;
            b.cstring()?;
            let formats = b.u16()?;
            b.take(2 * usize::from(formats))?;
            for _ in 0..b.u16()? {
                match b.i32()? {
                    -1 => {}
                    n if n < 0 => return Err("negative parameter length"),
                    n => {
                        b.take(n as usize)?;
                    }
                }
            }
            let results = b.u16()?;
            b.take(2 * usize::from(results))?;
        }
        // Describe and Close: 'S' or 'P', then a name.
        b'D' | b'C' => {
            b.take(1)?;
            b.cstring()?;
        }
        // Execute: portal, row limit.
        b'E' => {
            b.cstring()?;
            b.i32()?;
        }
        // Query and CopyFail: one string.
        b'Q' | b'f' => b.cstring()?,
        _ => return Ok(()),
    }
    if !b.rest.is_empty() {
        // pgwire would read the rest as the next message.
        return Err("bytes after the end of the message");
    }
    Ok(())
}

/// Startup packets (SSLRequest, GSSENCRequest, StartupMessage,
/// CancelRequest) longer than this are refused, as PostgreSQL refuses them.
const MAX_STARTUP_PACKET: u32 = 10_000;

/// The request codes of the startup packets after which another startup
/// packet follows (the answer to an encryption request is one byte).
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;

/// Follows the message boundaries of a client's byte stream as it is read,
/// so that a length field no message can have is caught before pgwire's
/// decoder takes it (a Query claiming length 2 was decoded from the bytes
/// of the next message): startup packets first, 4-byte length then body,
/// then typed messages, type byte then 4-byte length then body.
#[derive(Debug, Default)]
pub struct Frames {
    /// Past the StartupMessage: messages carry a type byte.
    typed: bool,
    /// The header read so far: a typed message's 5 bytes, or a startup
    /// packet's length and request code (8 bytes).
    header: [u8; 8],
    have: usize,
    /// Body bytes of the current message still to come.
    skip: u64,
}

impl Frames {
    /// Follows `bytes`; on a malformed header, the number of bytes before
    /// it (what may still be decoded) and why.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), (usize, Malformed)> {
        let mut at = 0;
        while at < bytes.len() {
            if self.skip > 0 {
                let n = self.skip.min((bytes.len() - at) as u64);
                self.skip -= n;
                at += n as usize;
                continue;
            }
            let want = if self.typed { 5 } else { 8 };
            let start = at;
            let take = (want - self.have).min(bytes.len() - at);
            self.header[self.have..self.have + take].copy_from_slice(&bytes[at..at + take]);
            self.have += take;
            at += take;
            if self.have < want {
                break;
            }
            self.have = 0;
            if self.typed {
                let len = u32::from_be_bytes(self.header[1..5].try_into().expect("4 bytes"));
                if len < 4 {
                    return Err((start, "invalid message length"));
                }
                self.skip = u64::from(len) - 4;
            } else {
                let len = u32::from_be_bytes(self.header[0..4].try_into().expect("4 bytes"));
                let code = u32::from_be_bytes(self.header[4..8].try_into().expect("4 bytes"));
                if !(8..=MAX_STARTUP_PACKET).contains(&len) {
                    return Err((start, "invalid length of startup packet"));
                }
                self.skip = u64::from(len) - 8;
                self.typed = code != SSL_REQUEST && code != GSSENC_REQUEST;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_follow_messages_across_reads_and_catch_bad_lengths() {
        let mut stream = Vec::new();
        // SSLRequest, then a StartupMessage, then Query "SELECT 1".
        stream.extend_from_slice(&8u32.to_be_bytes());
        stream.extend_from_slice(&SSL_REQUEST.to_be_bytes());
        let startup = b"\0\x03\0\0user\0u\0\0";
        stream.extend_from_slice(&(startup.len() as u32 + 4).to_be_bytes());
        stream.extend_from_slice(startup);
        stream.push(b'Q');
        stream.extend_from_slice(&13u32.to_be_bytes());
        stream.extend_from_slice(b"SELECT 1\0");
        let good = stream.len();
        // A Query claiming length 2.
        stream.extend_from_slice(&[b'Q', 0, 0, 0, 2, b'x']);
        for chunk in [1, 3, 7, 64] {
            let mut f = Frames::default();
            let mut fed = 0;
            let mut caught = None;
            for piece in stream.chunks(chunk) {
                if let Err((before, why)) = f.feed(piece) {
                    caught = Some((fed + before, why));
                    break;
                }
                fed += piece.len();
            }
            let (at, why) = caught.expect("the bad length is caught");
            assert_eq!(why, "invalid message length");
            // Everything before the bad message may still be decoded (the
            // header may have begun in an earlier read).
            assert!((good..good + 5).contains(&at), "chunk {chunk}: {at}");
        }
        let mut f = Frames::default();
        let mut huge = 10_001u32.to_be_bytes().to_vec();
        huge.extend_from_slice(&196_608u32.to_be_bytes());
        assert_eq!(
            f.feed(&huge).unwrap_err().1,
            "invalid length of startup packet"
        );
    }

    #[test]
    fn well_formed_messages_pass_and_short_ones_do_not() {
        let mut parse = b"s1\0SELECT $1\0".to_vec();
        parse.extend_from_slice(&1u16.to_be_bytes());
        parse.extend_from_slice(&23u32.to_be_bytes());
        assert_eq!(check(b'P', parse.len() as u32 + 4, &parse), Ok(()));
        for cut in 0..parse.len() {
            assert!(
                check(b'P', cut as u32 + 4, &parse[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut bind = b"\0s1\0".to_vec();
        bind.extend_from_slice(&0u16.to_be_bytes());
        bind.extend_from_slice(&2u16.to_be_bytes());
        bind.extend_from_slice(&(-1i32).to_be_bytes());
        bind.extend_from_slice(&2i32.to_be_bytes());
        bind.extend_from_slice(b"42");
        bind.extend_from_slice(&0u16.to_be_bytes());
        assert_eq!(check(b'B', bind.len() as u32 + 4, &bind), Ok(()));
        for cut in 0..bind.len() {
            assert!(
                check(b'B', cut as u32 + 4, &bind[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        assert!(check(b'E', 7, b"\0\0\0").is_err());
        assert_eq!(check(b'S', 4, b""), Ok(()));
        assert!(check(b'd', 3, b"").is_err(), "length under 4");
        assert!(
            check(b'Q', 16, b"SELECT 1\0\0\0\0").is_err(),
            "trailing bytes"
        );
    }
}
