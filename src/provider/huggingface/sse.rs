//! Server-sent events, as Hugging Face servers write them: `data:` with or
//! without a space (TGI writes none), `:` keep-alive comments, blank lines
//! between events, `\r\n` or `\n`. Line and event sizes are bounded so a broken
//! or hostile server cannot make the client buffer without end.

/// Why a stream could not be read as server-sent events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseError {
    /// A line longer than the bound (bytes).
    LineTooLong(usize),
    /// An event larger than the bound (bytes).
    EventTooLarge(usize),
    /// Bytes that are not UTF-8.
    NotUtf8,
}

impl std::fmt::Display for SseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SseError::LineTooLong(n) => {
                write!(f, "a server-sent event line is longer than {n} bytes")
            }
            SseError::EventTooLarge(n) => write!(f, "a server-sent event is larger than {n} bytes"),
            SseError::NotUtf8 => f.write_str("a server-sent event is not UTF-8"),
        }
    }
}

/// Incremental parser: feed bytes, get the `data` of each complete event.
#[derive(Debug)]
pub struct SseParser {
    buf: Vec<u8>,
    data: String,
    has_data: bool,
    max_line: usize,
    max_event: usize,
}

/// The longest line accepted.
pub const MAX_LINE: usize = 1 << 20;
/// The largest event accepted.
pub const MAX_EVENT: usize = 4 << 20;

impl Default for SseParser {
    fn default() -> Self {
        Self::new(MAX_LINE, MAX_EVENT)
    }
}

impl SseParser {
    /// A parser refusing lines and events over these sizes.
    pub fn new(max_line: usize, max_event: usize) -> Self {
        Self {
            buf: Vec::new(),
            data: String::new(),
            has_data: false,
            max_line,
            max_event,
        }
    }

    /// Add bytes; returns the data of every event they complete.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<String>, SseError> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut start = 0;
        while let Some(pos) = self
            .buf
            .get(start..)
            .and_then(|b| b.iter().position(|&c| c == b'\n'))
        {
            let end = start + pos;
            let mut line = self.buf.get(start..end).unwrap_or_default();
            if line.last() == Some(&b'\r') {
                line = line.get(..line.len() - 1).unwrap_or_default();
            }
            if line.len() > self.max_line {
                return Err(SseError::LineTooLong(self.max_line));
            }
            let line = std::str::from_utf8(line)
                .map_err(|_| SseError::NotUtf8)?
                .to_string();
            if let Some(ev) = self.line(&line)? {
                events.push(ev);
            }
            start = end + 1;
        }
        self.buf.drain(..start);
        if self.buf.len() > self.max_line {
            return Err(SseError::LineTooLong(self.max_line));
        }
        Ok(events)
    }

    /// The stream ended: the last event, if it was not followed by a blank line.
    pub fn finish(&mut self) -> Result<Option<String>, SseError> {
        let rest = std::mem::take(&mut self.buf);
        let mut out = None;
        if !rest.is_empty() {
            let line = std::str::from_utf8(&rest).map_err(|_| SseError::NotUtf8)?;
            out = self.line(line.trim_end_matches('\r'))?;
        }
        if out.is_none() && self.has_data {
            out = self.line("")?;
        }
        Ok(out)
    }

    fn line(&mut self, line: &str) -> Result<Option<String>, SseError> {
        if line.is_empty() {
            if !self.has_data {
                return Ok(None);
            }
            self.has_data = false;
            return Ok(Some(std::mem::take(&mut self.data)));
        }
        if line.starts_with(':') {
            return Ok(None);
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        if field == "data" {
            if self.has_data {
                self.data.push('\n');
            }
            self.data.push_str(value);
            self.has_data = true;
            if self.data.len() > self.max_event {
                return Err(SseError::EventTooLarge(self.max_event));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[&[u8]]) -> Vec<String> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for c in input {
            out.extend(p.push(c).unwrap());
        }
        out.extend(p.finish().unwrap());
        out
    }

    #[test]
    fn with_and_without_space_comments_and_crlf() {
        let s =
            b"data:{\"a\":1}\n\n: keep-alive\n\ndata: {\"b\":2}\r\n\r\nevent: x\ndata:[DONE]\n\n";
        assert_eq!(all(&[s]), ["{\"a\":1}", "{\"b\":2}", "[DONE]"]);
    }

    #[test]
    fn split_anywhere_and_multiline_data() {
        let s: &[u8] = b"data:line1\ndata:line2\n\ndata:last";
        let pieces: Vec<&[u8]> = s.chunks(3).collect();
        assert_eq!(all(&pieces), ["line1\nline2", "last"]);
    }

    #[test]
    fn bounds() {
        let mut p = SseParser::new(8, 12);
        assert_eq!(p.push(b"data:0123456789"), Err(SseError::LineTooLong(8)));
        let mut p = SseParser::new(100, 12);
        assert_eq!(
            p.push(b"data:0123456\ndata:0123456\n"),
            Err(SseError::EventTooLarge(12))
        );
    }
}
