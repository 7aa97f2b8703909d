//! The `.npy` format's header and a zero-copy view of the data after it
//! (<https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html>).
//!
//! Only what fastcarto reads: little-endian `f4`/`f8` arrays of any shape, in C or Fortran order.
//! Written here rather than taken from `ndarray-npy`, whose header parser pulls a Python-literal
//! grammar and its parser generator into the build for these few lines.

use ndarray::{ArrayView, Dimension, IxDyn, ShapeBuilder};
use std::fmt;

const MAGIC: &[u8] = b"\x93NUMPY";

/// Why a buffer cannot be viewed as an array of the requested element type and dimension.
#[derive(Debug)]
pub(crate) enum ViewNpyError {
    /// The header is not a `.npy` header: its reason.
    Header(String),
    /// The data type is not the requested one: its descriptor as written in the header.
    WrongDescriptor(String),
    /// The requested dimension (if fixed) and the header's.
    WrongNdim(Option<usize>, usize),
    /// Bytes missing after the header for the shape's elements.
    MissingBytes(usize),
    /// Bytes left after the array's elements.
    ExtraBytes(usize),
    NonNativeEndian,
    MisalignedData,
}

impl fmt::Display for ViewNpyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ViewNpyError::Header(reason) => write!(f, "bad header: {reason}"),
            ViewNpyError::WrongDescriptor(d) => write!(f, "unexpected dtype {d}"),
            ViewNpyError::WrongNdim(Some(want), got) => write!(f, "expected {want} dimensions, found {got}"),
            ViewNpyError::WrongNdim(None, got) => write!(f, "unexpected {got} dimensions"),
            ViewNpyError::MissingBytes(n) => write!(f, "{n} bytes of data are missing"),
            ViewNpyError::ExtraBytes(n) => write!(f, "{n} bytes after the array data"),
            ViewNpyError::NonNativeEndian => f.write_str("the array is not in native byte order"),
            ViewNpyError::MisalignedData => f.write_str("the array data is not aligned for its dtype"),
        }
    }
}

/// Element types a `.npy` file can be viewed as.
pub(crate) trait NpyElement: Copy {
    /// Kind and size in the descriptor, as `"f4"` in `'<f4'`.
    const KIND_SIZE: &'static str;
}

impl NpyElement for f32 {
    const KIND_SIZE: &'static str = "f4";
}

impl NpyElement for f64 {
    const KIND_SIZE: &'static str = "f8";
}

/// A zero-copy view of a `.npy` file's bytes, as `ndarray_npy::ViewNpyExt` offers.
pub(crate) trait ViewNpyExt<'a>: Sized {
    fn view_npy(buf: &'a [u8]) -> Result<Self, ViewNpyError>;
}

impl<'a, A: NpyElement, D: Dimension> ViewNpyExt<'a> for ArrayView<'a, A, D> {
    fn view_npy(buf: &'a [u8]) -> Result<Self, ViewNpyError> {
        let (header, data) = Header::parse(buf)?;
        let native = if cfg!(target_endian = "little") { '<' } else { '>' };
        let Literal::Str(descr) = &header.descr else {
            // A structured dtype: a list of fields.
            return Err(ViewNpyError::WrongDescriptor(header.descr.to_string()));
        };
        let mut chars = descr.chars();
        let order = chars.next();
        if chars.as_str() != A::KIND_SIZE {
            return Err(ViewNpyError::WrongDescriptor(header.descr.to_string()));
        }
        if order != Some('=') && order != Some(native) {
            return Err(ViewNpyError::NonNativeEndian);
        }
        if let Some(want) = D::NDIM
            && want != header.shape.len()
        {
            return Err(ViewNpyError::WrongNdim(Some(want), header.shape.len()));
        }
        let len = header.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        let bytes = len.and_then(|n| n.checked_mul(size_of::<A>()));
        let (Some(len), Some(bytes)) = (len, bytes) else {
            return Err(ViewNpyError::Header(format!("shape {:?} is too large", header.shape)));
        };
        if data.len() < bytes {
            return Err(ViewNpyError::MissingBytes(bytes - data.len()));
        }
        if data.len() > bytes {
            return Err(ViewNpyError::ExtraBytes(data.len() - bytes));
        }
        if !(data.as_ptr() as usize).is_multiple_of(align_of::<A>()) {
            return Err(ViewNpyError::MisalignedData);
        }
        // SAFETY: `data` holds exactly `len` elements of `A` (checked above), its start is aligned
        // for `A` (checked above), and `f32`/`f64` accept any bit pattern. The slice borrows `buf`
        // for `'a`, as the returned view does.
        let elements = unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<A>(), len) };
        let shape = IxDyn(&header.shape).set_f(header.fortran_order);
        let view = ArrayView::from_shape(shape, elements).map_err(|e| ViewNpyError::Header(e.to_string()))?;
        view.into_dimensionality::<D>().map_err(|_| ViewNpyError::WrongNdim(D::NDIM, header.shape.len()))
    }
}

/// The three keys of a `.npy` header.
#[derive(Debug, PartialEq)]
struct Header {
    descr: Literal,
    fortran_order: bool,
    shape: Vec<usize>,
}

impl Header {
    /// The header of `buf` and the bytes after it.
    fn parse(buf: &[u8]) -> Result<(Header, &[u8]), ViewNpyError> {
        let bad = |reason: &str| ViewNpyError::Header(reason.to_string());
        if !buf.starts_with(MAGIC) || buf.len() < MAGIC.len() + 2 {
            return Err(bad("the file does not start with the .npy magic string"));
        }
        let at = MAGIC.len() + 2;
        let (len, start) = match buf[MAGIC.len()] {
            1 if buf.len() >= at + 2 => (u16::from_le_bytes([buf[at], buf[at + 1]]) as usize, at + 2),
            2 | 3 if buf.len() >= at + 4 => {
                (u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize, at + 4)
            }
            1..=3 => return Err(bad("the file ends inside the header")),
            v => return Err(ViewNpyError::Header(format!("format version {v} is not supported"))),
        };
        let text = buf.get(start..start + len).ok_or_else(|| bad("the file ends inside the header"))?;
        let text = std::str::from_utf8(text).map_err(|_| bad("the header is not text"))?;
        let Literal::Dict(items) = Parser { rest: text.trim_end() }.whole()? else {
            return Err(bad("the header is not a dictionary"));
        };
        let (mut descr, mut fortran_order, mut shape) = (None, None, None);
        for (key, value) in items {
            match (key.as_str(), value) {
                ("descr", value) => descr = Some(value),
                ("fortran_order", Literal::Bool(b)) => fortran_order = Some(b),
                ("shape", Literal::Tuple(dims)) => {
                    let dims: Option<Vec<usize>> =
                        dims.into_iter().map(|d| if let Literal::Int(n) = d { Some(n) } else { None }).collect();
                    shape = Some(dims.ok_or_else(|| bad("'shape' is not a tuple of integers"))?);
                }
                (key @ ("fortran_order" | "shape"), _) => {
                    return Err(ViewNpyError::Header(format!("{key:?} has the wrong type")));
                }
                _ => {}
            }
        }
        match (descr, fortran_order, shape) {
            (Some(descr), Some(fortran_order), Some(shape)) => {
                Ok((Header { descr, fortran_order, shape }, &buf[start + len..]))
            }
            _ => Err(bad("the header lacks 'descr', 'fortran_order' or 'shape'")),
        }
    }
}

/// The Python literals a `.npy` header is written with.
#[derive(Debug, PartialEq)]
enum Literal {
    Str(String),
    Bool(bool),
    Int(usize),
    Tuple(Vec<Literal>),
    List(Vec<Literal>),
    Dict(Vec<(String, Literal)>),
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seq = |f: &mut fmt::Formatter<'_>, items: &[Literal], open: &str, close: &str| {
            f.write_str(open)?;
            for (i, item) in items.iter().enumerate() {
                write!(f, "{}{item}", if i == 0 { "" } else { ", " })?;
            }
            f.write_str(close)
        };
        match self {
            Literal::Str(s) => write!(f, "'{s}'"),
            Literal::Bool(b) => f.write_str(if *b { "True" } else { "False" }),
            Literal::Int(n) => write!(f, "{n}"),
            Literal::Tuple(items) if items.len() == 1 => seq(f, items, "(", ",)"),
            Literal::Tuple(items) => seq(f, items, "(", ")"),
            Literal::List(items) => seq(f, items, "[", "]"),
            Literal::Dict(items) => {
                f.write_str("{")?;
                for (i, (k, v)) in items.iter().enumerate() {
                    write!(f, "{}'{k}': {v}", if i == 0 { "" } else { ", " })?;
                }
                f.write_str("}")
            }
        }
    }
}

/// A recursive-descent parser of the literals above.
struct Parser<'a> {
    rest: &'a str,
}

impl Parser<'_> {
    fn whole(mut self) -> Result<Literal, ViewNpyError> {
        let value = self.value(0)?;
        self.skip_space();
        if self.rest.is_empty() { Ok(value) } else { Err(self.error("text after the dictionary")) }
    }

    fn error(&self, what: &str) -> ViewNpyError {
        let near: String = self.rest.chars().take(20).collect();
        ViewNpyError::Header(format!("{what} near {near:?}"))
    }

    fn skip_space(&mut self) {
        self.rest = self.rest.trim_start();
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_space();
        match self.rest.strip_prefix(token) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn value(&mut self, depth: usize) -> Result<Literal, ViewNpyError> {
        if depth > 32 {
            return Err(self.error("literals nested too deep"));
        }
        self.skip_space();
        if self.eat("{") {
            let mut items = Vec::new();
            while !self.eat("}") {
                let Literal::Str(key) = self.value(depth + 1)? else {
                    return Err(self.error("a dictionary key that is not a string"));
                };
                if !self.eat(":") {
                    return Err(self.error("expected ':'"));
                }
                items.push((key, self.value(depth + 1)?));
                if !self.eat(",") && !self.rest.starts_with('}') {
                    return Err(self.error("expected ',' or '}'"));
                }
            }
            return Ok(Literal::Dict(items));
        }
        for (open, close) in [("(", ")"), ("[", "]")] {
            if self.eat(open) {
                let mut items = Vec::new();
                while !self.eat(close) {
                    items.push(self.value(depth + 1)?);
                    if !self.eat(",") && !self.rest.starts_with(close) {
                        return Err(self.error(&format!("expected ',' or '{close}'")));
                    }
                }
                return Ok(if open == "(" { Literal::Tuple(items) } else { Literal::List(items) });
            }
        }
        for quote in ['\'', '"'] {
            if let Some(rest) = self.rest.strip_prefix(quote) {
                let end = rest.find(quote).ok_or_else(|| self.error("an unterminated string"))?;
                self.rest = &rest[end + 1..];
                return Ok(Literal::Str(rest[..end].to_string()));
            }
        }
        for (word, value) in [("True", true), ("False", false)] {
            if self.eat(word) {
                return Ok(Literal::Bool(value));
            }
        }
        let digits = self.rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(self.rest.len());
        let (number, rest) = self.rest.split_at(digits);
        // numpy writes Python ints; a trailing `L` is Python 2's long.
        let rest = rest.strip_prefix('L').unwrap_or(rest);
        match number.parse() {
            Ok(n) => {
                self.rest = rest;
                Ok(Literal::Int(n))
            }
            Err(_) => Err(self.error("expected a string, True, False, an integer, a tuple or a list")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayView2, ArrayView3, ArrayViewD};

    /// A `.npy` file as numpy 1.x writes it: version 1.0, the header padded to 64 bytes.
    fn npy(header: &str, data: &[u8]) -> Vec<u8> {
        let unpadded = MAGIC.len() + 4 + header.len() + 1;
        let pad = unpadded.next_multiple_of(64) - unpadded;
        let text = format!("{header}{}\n", " ".repeat(pad));
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(text.len() as u16).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
        out.extend_from_slice(data);
        out
    }

    /// `buf`'s bytes in a buffer aligned for `f64`, as a memory map is.
    fn aligned(buf: &[u8]) -> Vec<f64> {
        let mut words = vec![0f64; buf.len().div_ceil(8)];
        // SAFETY: `words` has at least `buf.len()` bytes; any bytes are a valid f64 bit pattern.
        unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), words.as_mut_ptr().cast::<u8>(), buf.len()) };
        words
    }

    fn bytes(words: &[f64], len: usize) -> &[u8] {
        // SAFETY: a slice of f64 is readable as bytes; `len` is at most its byte length.
        unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), len) }
    }

    fn f32_data(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn views_c_and_fortran_order() {
        let data = f32_data(&[0., 1., 2., 3., 4., 5.]);
        let file = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", &data);
        let words = aligned(&file);
        let view = ArrayView2::<f32>::view_npy(bytes(&words, file.len())).unwrap();
        assert_eq!(view.shape(), &[2, 3]);
        assert_eq!(view[[1, 0]], 3.0);
        assert!(view.is_standard_layout());

        let file = npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", &data);
        let words = aligned(&file);
        let view = ArrayView2::<f32>::view_npy(bytes(&words, file.len())).unwrap();
        assert_eq!(view[[1, 0]], 1.0);
        assert!(!view.is_standard_layout());
    }

    #[test]
    fn dynamic_dimension_and_scalars() {
        let data: Vec<u8> = [1.5f64].iter().flat_map(|v| v.to_le_bytes()).collect();
        let file = npy("{'descr': '<f8', 'fortran_order': False, 'shape': (), }", &data);
        let words = aligned(&file);
        let view = ArrayViewD::<f64>::view_npy(bytes(&words, file.len())).unwrap();
        assert_eq!((view.ndim(), view.iter().copied().collect::<Vec<_>>()), (0, vec![1.5]));
        let file = npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }", &data);
        let words = aligned(&file);
        assert_eq!(ArrayViewD::<f64>::view_npy(bytes(&words, file.len())).unwrap().shape(), &[1]);
    }

    #[test]
    fn rejects_what_it_cannot_view() {
        let data = f32_data(&[0.; 6]);
        let check = |header: &str, data: &[u8], want: &str| {
            let file = npy(header, data);
            let words = aligned(&file);
            let err = ArrayView3::<f32>::view_npy(bytes(&words, file.len())).unwrap_err();
            assert!(format!("{err:?}").contains(want), "{header}: {err:?} lacks {want}");
        };
        check("{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2, 3), }", &data, "WrongDescriptor(\"'<f8'\")");
        check("{'descr': '>f4', 'fortran_order': False, 'shape': (1, 2, 3), }", &data, "NonNativeEndian");
        check("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", &data, "WrongNdim(Some(3), 2)");
        check("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 4), }", &data, "MissingBytes(8)");
        check("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 3), }", &data, "ExtraBytes(12)");
        check("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1, 2, 3), }", &data, "WrongDescriptor");
        check("{'descr': '<f4', 'shape': (1, 2, 3), }", &data, "lacks");
        check("{'descr': '<f4', 'fortran_order': 0, 'shape': (1, 2, 3), }", &data, "wrong type");
        check("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 'x'), }", &data, "tuple of integers");
        check("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3), ", &data, "expected");
        check("{'descr': '<f4' 'fortran_order': False}", &data, "expected ','");
        check(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999, 9999), }",
            &data,
            "too large",
        );
    }

    #[test]
    fn rejects_bad_magic_versions_and_truncated_headers() {
        for buf in [&b"\x93NUMPZ\x01\x00"[..], b"\x93NUMPY", b"\x93NUMPY\x01\x00\x10", b"\x93NUMPY\x09\x00\x00\x00"] {
            assert!(matches!(ArrayViewD::<f32>::view_npy(buf), Err(ViewNpyError::Header(_))), "{buf:?}");
        }
        let file = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", &[0; 4]);
        let words = aligned(&file);
        assert!(matches!(
            ArrayViewD::<f32>::view_npy(bytes(&words, 20)),
            Err(ViewNpyError::Header(reason)) if reason.contains("ends inside the header")
        ));
    }

    #[test]
    fn reads_every_header_numpy_writes() {
        // numpy's own header for a structured dtype, a 2.0 header, and Python 2 longs.
        let parsed = Parser { rest: "{'descr': [('x', '<f4', (2,))], 'fortran_order': False, 'shape': (3L,), }" }
            .whole()
            .unwrap();
        assert_eq!(parsed.to_string(), "{'descr': [('x', '<f4', (2,))], 'fortran_order': False, 'shape': (3,)}");
        let text = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n";
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&[2, 0]);
        file.extend_from_slice(&(text.len() as u32).to_le_bytes());
        file.extend_from_slice(text.as_bytes());
        let (header, data) = Header::parse(&file).unwrap();
        assert_eq!(header, Header { descr: Literal::Str("<f4".into()), fortran_order: false, shape: vec![2] });
        assert!(data.is_empty());
    }
}
