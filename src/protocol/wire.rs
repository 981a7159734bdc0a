//! Wire primitives shared by every message: big-endian `u32`, NUL-terminated
//! strings, string lists and environment lists, as nom parsers and as writers.
//!
//! The parsers are *complete* parsers: they run on a whole message body, so
//! running out of bytes is an invalid message, never "need more data".

use bytes::BufMut;
use nom::error::{ErrorKind, ParseError};
use nom::IResult;

/// The error every body parser returns: where it stopped and what it wanted.
///
/// It holds a slice and a static string, so failing allocates nothing either.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireError<'a> {
    /// The input left when the parser failed.
    pub at: &'a [u8],
    /// What the parser expected to find there.
    pub expected: &'static str,
}

impl<'a> ParseError<&'a [u8]> for WireError<'a> {
    fn from_error_kind(input: &'a [u8], kind: ErrorKind) -> Self {
        let expected = match kind {
            ErrorKind::Eof => "end of message",
            _ => "more bytes",
        };
        WireError {
            at: input,
            expected,
        }
    }

    fn append(_: &'a [u8], _: ErrorKind, other: Self) -> Self {
        other
    }
}

/// Result of a body parser.
pub type WResult<'a, T> = IResult<&'a [u8], T, WireError<'a>>;

pub(crate) fn fail<'a, T>(at: &'a [u8], expected: &'static str) -> WResult<'a, T> {
    Err(nom::Err::Error(WireError { at, expected }))
}

/// A big-endian `u32`.
#[inline]
pub fn be_u32(i: &[u8]) -> WResult<'_, u32> {
    match i {
        [a, b, c, d, rest @ ..] => Ok((rest, u32::from_be_bytes([*a, *b, *c, *d]))),
        _ => fail(i, "a 4-byte integer"),
    }
}

/// `N` big-endian `u32`s in a row, with one length check for all of them.
///
/// Fails exactly where reading them one by one with [`be_u32`] would: at
/// the first word that is not all there.
#[inline]
pub fn be_u32s<const N: usize>(i: &[u8]) -> WResult<'_, [u32; N]> {
    if i.len() < 4 * N {
        let whole_words = i.len() / 4 * 4;
        return fail(i.get(whole_words..).unwrap_or_default(), "a 4-byte integer");
    }
    let (words, rest) = i.split_at(4 * N);
    let mut out = [0u32; N];
    for (n, word) in out.iter_mut().zip(words.chunks_exact(4)) {
        if let [a, b, c, d] = *word {
            *n = u32::from_be_bytes([a, b, c, d]);
        }
    }
    Ok((rest, out))
}

/// An icecream string: `u32` length including a trailing NUL, the bytes,
/// the NUL. Length 0 reads as the empty string. Returns the bytes without
/// the NUL; they are not necessarily UTF-8.
#[inline]
pub fn string(i: &[u8]) -> WResult<'_, &[u8]> {
    let (rest, len) = be_u32(i)?;
    if len == 0 {
        return Ok((rest, &[]));
    }
    let len = len as usize;
    if rest.len() < len {
        return fail(i, "string bytes as long as the string's length word");
    }
    let (s, rest) = rest.split_at(len);
    match s.split_last() {
        Some((0, text)) => Ok((rest, text)),
        _ => fail(i, "a NUL-terminated string"),
    }
}

/// Writes a `u32` big-endian.
#[inline]
pub fn put_u32(out: &mut impl BufMut, v: u32) {
    out.put_u32(v);
}

/// Writes an icecream string (length with NUL, bytes, NUL).
#[inline]
pub fn put_string(out: &mut impl BufMut, s: &[u8]) {
    out.put_u32(wire_len(s.len() + 1));
    out.put_slice(s);
    out.put_u8(0);
}

/// Length of a wire item as a `u32`; saturates, since nothing that long
/// could ever be framed anyway (frames are limited to a few MiB).
#[inline]
pub(crate) fn wire_len(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// One element of a [`List`]: how it is parsed from and written to the wire.
pub trait ListItem<'a>: Copy + Sized {
    /// Parses one element.
    fn parse(i: &'a [u8]) -> WResult<'a, Self>;
    /// Writes one element.
    fn write(&self, out: &mut dyn BufMut);
}

impl<'a> ListItem<'a> for &'a [u8] {
    fn parse(i: &'a [u8]) -> WResult<'a, Self> {
        string(i)
    }
    fn write(&self, mut out: &mut dyn BufMut) {
        put_string(&mut out, self)
    }
}

/// One entry of an environment list: the host platform it runs on and the
/// environment's name (usually a tarball path or hash).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Environment<'a> {
    /// Host platform, e.g. `x86_64`.
    pub platform: &'a [u8],
    /// Environment version (the tarball's name).
    pub version: &'a [u8],
}

impl<'a> ListItem<'a> for Environment<'a> {
    fn parse(i: &'a [u8]) -> WResult<'a, Self> {
        let (i, platform) = string(i)?;
        let (i, version) = string(i)?;
        Ok((i, Environment { platform, version }))
    }
    fn write(&self, mut out: &mut dyn BufMut) {
        put_string(&mut out, self.platform);
        put_string(&mut out, self.version);
    }
}

/// A counted list on the wire (`u32` count, then the elements), kept
/// zero-copy: a decoded list is a view of the frame that is walked lazily
/// (it was validated when parsed), a list to encode borrows a slice.
#[derive(Clone, Copy)]
pub struct List<'a, T> {
    repr: Repr<'a, T>,
}

#[derive(Clone, Copy)]
enum Repr<'a, T> {
    Wire { count: u32, raw: &'a [u8] },
    Items(&'a [T]),
}

/// A list of strings (compiler arguments, extra files).
pub type StrList<'a> = List<'a, &'a [u8]>;
/// A list of environments (platform, version).
pub type EnvList<'a> = List<'a, Environment<'a>>;

impl<'a, T: ListItem<'a>> List<'a, T> {
    /// A list to encode, borrowing its elements.
    pub const fn from_slice(items: &'a [T]) -> Self {
        List {
            repr: Repr::Items(items),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self.repr {
            Repr::Wire { count, .. } => count as usize,
            Repr::Items(items) => items.len(),
        }
    }

    /// Whether the list has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements in wire order.
    pub fn iter(&self) -> ListIter<'a, T> {
        ListIter { repr: self.repr }
    }

    /// Parses a counted list, checking every element now so that iterating
    /// later cannot fail.
    pub fn parse(i: &'a [u8]) -> WResult<'a, Self> {
        let (mut rest, count) = be_u32(i)?;
        let start = rest;
        for _ in 0..count {
            // Every element takes at least 4 bytes, so this loop is bounded by
            // the body length whatever the count says.
            let (r, _) = T::parse(rest)?;
            rest = r;
        }
        let raw = &start[..start.len() - rest.len()];
        Ok((
            rest,
            List {
                repr: Repr::Wire { count, raw },
            },
        ))
    }

    /// Writes the list (count, then elements).
    pub fn write(&self, out: &mut impl BufMut) {
        match self.repr {
            Repr::Wire { count, raw } => {
                out.put_u32(count);
                out.put_slice(raw);
            }
            Repr::Items(items) => {
                out.put_u32(wire_len(items.len()));
                for item in items {
                    item.write(out);
                }
            }
        }
    }
}

impl<'a, T> Default for List<'a, T> {
    fn default() -> Self {
        List {
            repr: Repr::Items(&[]),
        }
    }
}

/// Iterator over a [`List`].
pub struct ListIter<'a, T> {
    repr: Repr<'a, T>,
}

impl<'a, T: ListItem<'a>> Iterator for ListIter<'a, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        match &mut self.repr {
            Repr::Wire { count, raw } => {
                if *count == 0 {
                    return None;
                }
                let (rest, item) = T::parse(raw).ok()?;
                *count -= 1;
                *raw = rest;
                Some(item)
            }
            Repr::Items(items) => {
                let (first, rest) = items.split_first()?;
                *items = rest;
                Some(*first)
            }
        }
    }
}

impl<'a, T: ListItem<'a> + PartialEq> PartialEq for List<'a, T> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<'a, T: ListItem<'a> + Eq> Eq for List<'a, T> {}

impl<'a, T: ListItem<'a> + std::fmt::Debug> std::fmt::Debug for List<'a, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn string_round_trips_and_keeps_non_utf8_bytes() {
        let mut buf = BytesMut::new();
        put_string(&mut buf, b"caf\xe9.c");
        assert_eq!(&buf[..4], &[0, 0, 0, 7]);
        let (rest, s) = string(&buf).unwrap();
        assert!(rest.is_empty());
        assert_eq!(s, b"caf\xe9.c");
    }

    #[test]
    fn zero_length_string_is_empty() {
        assert_eq!(string(&[0, 0, 0, 0, 9]).unwrap(), (&[9u8][..], &b""[..]));
    }

    #[test]
    fn string_without_nul_or_too_long_is_an_error() {
        assert!(string(&[0, 0, 0, 2, b'a', b'b']).is_err());
        assert!(string(&[0, 0, 0, 9, b'a', 0]).is_err());
        assert!(string(&[0, 0, 0]).is_err());
    }

    #[test]
    fn huge_list_count_fails_without_looping_forever() {
        let body = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        assert!(StrList::parse(&body).is_err());
    }

    #[test]
    fn decoded_list_equals_the_slice_it_was_encoded_from() {
        let items: [&[u8]; 2] = [b"-O2", b"-c"];
        let list = StrList::from_slice(&items);
        let mut buf = BytesMut::new();
        list.write(&mut buf);
        let (rest, back) = StrList::parse(&buf).unwrap();
        assert!(rest.is_empty());
        assert_eq!(back, list);
        assert_eq!(back.iter().collect::<Vec<_>>(), items);
    }
}
