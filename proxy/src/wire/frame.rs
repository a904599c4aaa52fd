//! Structure checks of frontend messages, as PostgreSQL's protocol defines
//! them. pgwire 0.42's decoders read past the end of a Parse, Bind,
//! Describe, Close or Execute body that is cut short, or of any message
//! whose length field is under 4, and panic; they also read a body's
//! trailing bytes as the next message. A message that passes [`check`]
//! decodes without either.

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

#[cfg(test)]
mod tests {
    use super::*;

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
