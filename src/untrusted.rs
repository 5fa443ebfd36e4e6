//! Text that did not come from the admin's config — request fields and
//! headers, Conductor task input, anything an upstream server sent — on its
//! way to a log line, a task log or a message.
//!
//! [`Untrusted`] escapes control and invisible formatting characters (`\n`,
//! `\u{1b}`, bidirectional overrides) and keeps at most [`LIMIT`] characters,
//! with a marker saying how much was cut: a forged log line or a terminal
//! escape sequence needs one of those characters, and a 64 KiB user id needs
//! the bound. [`Field`] and [`Quoted`] are for log fields: the same text,
//! wrapped in quotes in human-readable logs when it could otherwise pass for
//! more than one field (`caller=x decision=allowed`).
//!
//! The common case — short, printable ASCII — is checked a byte at a time and
//! written in one piece; only text that needs escaping takes the slow path.

use std::fmt::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Characters kept of one value; the rest is replaced by a marker.
pub const LIMIT: usize = 256;
/// Characters kept of a task's prompt or output in an audit event
/// (`[audit] include_text = true`).
pub const TEXT_LIMIT: usize = 8192;

/// Escaped and bounded for output (no quotes added).
#[derive(Debug, Clone, Copy)]
pub struct Untrusted<'a>(pub &'a str);

/// A log field's value: [`Untrusted`], and in human-readable logs quoted
/// (with `"` and `\` escaped) when it is empty or holds a space, `=` or `"`.
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    prefix: &'static str,
    text: &'a str,
    limit: usize,
}

/// A log field made by another `Display` (whose untrusted parts escape
/// themselves): always quoted in human-readable logs, as such text holds spaces.
#[derive(Debug, Clone, Copy)]
pub struct Quoted<D>(pub D);

static JSON_LOGS: AtomicBool = AtomicBool::new(false);

/// Log fields are written for JSON logs (the JSON encoder quotes them) rather
/// than for human-readable ones (where [`Field`] and [`Quoted`] quote them).
pub fn set_json_logs(on: bool) {
    JSON_LOGS.store(on, Ordering::Relaxed);
}

fn json_logs() -> bool {
    JSON_LOGS.load(Ordering::Relaxed)
}

impl<'a> Field<'a> {
    /// A field holding `text`.
    pub fn new(text: &'a str) -> Field<'a> {
        Field {
            prefix: "",
            text,
            limit: LIMIT,
        }
    }

    /// A field holding `prefix` (trusted, such as `user:`) then `text`.
    pub fn with_prefix(prefix: &'static str, text: &'a str) -> Field<'a> {
        Field {
            prefix,
            text,
            limit: LIMIT,
        }
    }

    /// A field holding a task's text, cut at [`TEXT_LIMIT`] characters.
    pub fn text(text: &'a str) -> Field<'a> {
        Field {
            prefix: "",
            text,
            limit: TEXT_LIMIT,
        }
    }
}

/// Printable ASCII: written as it is.
fn plain(s: &str) -> bool {
    s.len() <= LIMIT && s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// Printable ASCII that cannot be mistaken for more than one log field.
fn plain_field(s: &str, limit: usize) -> bool {
    s.len() <= limit
        && s.bytes()
            .all(|b| b > 0x20 && b < 0x7f && !matches!(b, b'"' | b'=' | b'\\'))
}

/// Characters never written as they are: controls (C0, DEL, C1), line and
/// paragraph separators, zero-width and bidirectional formatting characters.
fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}')
}

/// `s` cut to `limit` characters, and how many bytes were left out.
fn head(s: &str, limit: usize) -> (&str, usize) {
    if s.len() <= limit {
        return (s, 0);
    }
    match s.char_indices().nth(limit) {
        Some((i, _)) => (s.get(..i).unwrap_or(s), s.len() - i),
        None => (s, 0),
    }
}

/// Write `s` with hidden characters escaped (and `"`, `\` too when `quoting`).
fn escaped<W: Write + ?Sized>(f: &mut W, s: &str, quoting: bool) -> fmt::Result {
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let simple = match c {
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            '"' if quoting => "\\\"",
            '\\' if quoting => "\\\\",
            c if is_hidden(c) => "",
            _ => continue,
        };
        f.write_str(s.get(start..i).unwrap_or_default())?;
        if simple.is_empty() {
            write!(f, "\\u{{{:x}}}", u32::from(c))?;
        } else {
            f.write_str(simple)?;
        }
        start = i + c.len_utf8();
    }
    f.write_str(s.get(start..).unwrap_or_default())
}

fn marker<W: Write + ?Sized>(f: &mut W, cut: usize) -> fmt::Result {
    if cut > 0 {
        write!(f, "…[{cut} more bytes]")?;
    }
    Ok(())
}

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if plain(self.0) {
            return f.write_str(self.0);
        }
        let (text, cut) = head(self.0, LIMIT);
        escaped(f, text, false)?;
        marker(f, cut)
    }
}

impl Field<'_> {
    /// Write the field's value to `f` (what `Display` writes).
    pub fn write_to<W: Write>(&self, f: &mut W) -> fmt::Result {
        let (text, cut) = head(self.text, self.limit);
        if json_logs() {
            f.write_str(self.prefix)?;
            escaped(f, text, false)?;
            return marker(f, cut);
        }
        if !self.text.is_empty() && plain_field(self.text, self.limit) {
            f.write_str(self.prefix)?;
            return f.write_str(self.text);
        }
        f.write_char('"')?;
        escaped(f, self.prefix, true)?;
        escaped(f, text, true)?;
        marker(f, cut)?;
        f.write_char('"')
    }
}

impl fmt::Display for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

/// Escapes `"` and `\` of what passes through (the `Display` it wraps has
/// escaped its own untrusted parts already).
struct QuoteEscaper<'a, W: Write + ?Sized>(&'a mut W);

impl<W: Write + ?Sized> Write for QuoteEscaper<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut start = 0;
        for (i, b) in s.bytes().enumerate() {
            let esc = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                _ => continue,
            };
            self.0.write_str(s.get(start..i).unwrap_or_default())?;
            self.0.write_str(esc)?;
            start = i + 1;
        }
        self.0.write_str(s.get(start..).unwrap_or_default())
    }
}

impl<D: fmt::Display> Quoted<D> {
    /// Write the field's value to `f` (what `Display` writes).
    pub fn write_to<W: Write>(&self, f: &mut W) -> fmt::Result {
        if json_logs() {
            return write!(f, "{}", self.0);
        }
        f.write_char('"')?;
        write!(QuoteEscaper(f), "{}", self.0)?;
        f.write_char('"')
    }
}

impl<D: fmt::Display> fmt::Display for Quoted<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

/// A writer that escapes hidden characters in whatever passes through it
/// (already-escaped text passes unchanged): the last line of defence of a
/// log line, whatever a field holds.
pub struct HiddenEscaper<'a, W: Write + ?Sized>(pub &'a mut W);

impl<W: Write + ?Sized> Write for HiddenEscaper<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return self.0.write_str(s);
        }
        let mut start = 0;
        for (i, c) in s.char_indices() {
            if !is_hidden(c) {
                continue;
            }
            self.0.write_str(s.get(start..i).unwrap_or_default())?;
            match c {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                c => write!(self.0, "\\u{{{:x}}}", u32::from(c))?,
            }
            start = i + c.len_utf8();
        }
        self.0.write_str(s.get(start..).unwrap_or_default())
    }
}

/// [`Untrusted`] as an owned string (for values kept in errors and outputs).
pub fn bounded(s: &str) -> String {
    if plain(s) {
        return s.to_string();
    }
    Untrusted(s).to_string()
}

/// `s` with hidden characters escaped, whatever its length (the caller bounds it).
pub fn escape_all(s: &str) -> String {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    let _ = escaped(&mut out, s, false);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn control_characters_are_escaped_and_plain_text_is_kept() {
        assert_eq!(Untrusted("alice@acme.com").to_string(), "alice@acme.com");
        assert_eq!(
            Untrusted("a\nb\u{1b}[31mc\u{9b}d\u{202e}e\\f").to_string(),
            "a\\nb\\u{1b}[31mc\\u{9b}d\\u{202e}e\\f"
        );
        assert_eq!(
            Untrusted("mallory@acmé.com").to_string(),
            "mallory@acmé.com"
        );
    }

    #[test]
    fn the_escaper_passes_escaped_text_and_escapes_the_rest() {
        let mut out = String::new();
        write!(
            HiddenEscaper(&mut out),
            "a\\nb {} c\n\u{1b}d",
            Untrusted("x\ny")
        )
        .unwrap();
        assert_eq!(out, "a\\nb x\\ny c\\n\\u{1b}d");
    }

    #[test]
    fn long_values_are_cut_with_a_marker() {
        let long = "x".repeat(70_000);
        let shown = Untrusted(&long).to_string();
        assert_eq!(
            shown,
            format!("{}…[{} more bytes]", "x".repeat(LIMIT), 70_000 - LIMIT)
        );
        let wide = "é".repeat(300);
        let shown = Untrusted(&wide).to_string();
        assert!(shown.starts_with(&"é".repeat(LIMIT)));
        assert!(shown.ends_with(&format!("…[{} more bytes]", 2 * (300 - LIMIT))));
    }

    #[test]
    fn fields_are_quoted_when_they_could_pass_for_more_fields() {
        assert_eq!(Field::new("alice").to_string(), "alice");
        assert_eq!(
            Field::with_prefix("user:", "a decision=allowed").to_string(),
            "\"user:a decision=allowed\""
        );
        assert_eq!(Field::new("").to_string(), "\"\"");
        assert_eq!(
            Field::new("say \"hi\"\\").to_string(),
            "\"say \\\"hi\\\"\\\\\""
        );
        assert_eq!(Quoted("a \"b\"").to_string(), "\"a \\\"b\\\"\"");
    }

    proptest! {
        #[test]
        fn no_hidden_character_and_no_more_than_the_limit_gets_through(s in ".{0,400}") {
            for shown in [Untrusted(&s).to_string(), Field::new(&s).to_string()] {
                prop_assert!(!shown.chars().any(is_hidden), "{shown:?}");
                // The kept characters, a marker and escapes: bounded.
                prop_assert!(shown.chars().count() <= LIMIT * 10 + 40);
            }
        }
    }
}
