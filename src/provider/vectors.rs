//! Embedding vectors as one flat run of `f32`s in rows of one size: what
//! providers parse answers straight into (no JSON tree on the way) and what
//! doors format once, as JSON numbers or OpenAI's base64.

use std::fmt;

use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserializer, Serialize, Serializer};

/// Rows of `f32`, all of one size, stored end to end.
#[derive(Clone, Default, PartialEq)]
pub struct Vectors {
    dim: usize,
    data: Vec<f32>,
}

impl fmt::Debug for Vectors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Vectors({} × {})", self.len(), self.dim)
    }
}

/// Why rows could not be put together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct VectorsError(String);

impl Vectors {
    /// No rows.
    pub(crate) fn new() -> Vectors {
        Vectors::default()
    }

    /// Rows given one by one; they must all be of one size, and not empty.
    pub(crate) fn from_rows<R: AsRef<[f32]>>(
        rows: impl IntoIterator<Item = R>,
    ) -> Result<Vectors, VectorsError> {
        let mut v = Vectors::new();
        for r in rows {
            v.push(r.as_ref())?;
        }
        Ok(v)
    }

    /// Add a row of the size of the others.
    pub(crate) fn push(&mut self, row: &[f32]) -> Result<(), VectorsError> {
        if row.is_empty() {
            return Err(VectorsError("an embedding is empty".into()));
        }
        if self.data.is_empty() {
            self.dim = row.len();
        } else if row.len() != self.dim {
            return Err(VectorsError("the embeddings differ in size".into()));
        }
        self.data.extend_from_slice(row);
        Ok(())
    }

    /// Add the rows of `other` after these.
    pub(crate) fn append(&mut self, other: Vectors) -> Result<(), VectorsError> {
        if self.data.is_empty() {
            *self = other;
            return Ok(());
        }
        if !other.data.is_empty() && other.dim != self.dim {
            return Err(VectorsError("the embeddings differ in size".into()));
        }
        self.data.extend(other.data);
        Ok(())
    }

    /// How many rows.
    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The size of every row (0 when there are none).
    pub fn dimensions(&self) -> usize {
        if self.data.is_empty() {
            0
        } else {
            self.dim
        }
    }

    /// Row `i`.
    pub fn get(&self, i: usize) -> Option<&[f32]> {
        let at = i.checked_mul(self.dim)?;
        self.data.get(at..at.checked_add(self.dim)?)
    }

    /// The rows, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[f32]> + '_ {
        self.data.chunks_exact(self.dim.max(1))
    }

    /// Every number, row after row.
    pub fn as_flat(&self) -> &[f32] {
        &self.data
    }

    /// The rows, mutably.
    pub(crate) fn rows_mut(&mut self) -> impl Iterator<Item = &mut [f32]> + '_ {
        self.data.chunks_exact_mut(self.dim.max(1))
    }

    /// Every row cut to its first `dim` numbers (`dim` below the size).
    pub(crate) fn truncate_rows(&mut self, dim: usize) {
        if dim == 0 || dim >= self.dim {
            return;
        }
        let old = self.dim;
        let rows = self.len();
        for r in 0..rows {
            self.data.copy_within(r * old..r * old + dim, r * dim);
        }
        self.data.truncate(rows * dim);
        self.dim = dim;
    }

    /// The only row, when there is one.
    pub(crate) fn into_single(self) -> Option<Vec<f32>> {
        (self.len() == 1).then_some(self.data)
    }

    /// Whether every number is finite.
    pub(crate) fn all_finite(&self) -> bool {
        self.data.iter().all(|x| x.is_finite())
    }

    /// A JSON list of lists of numbers read straight into rows, refusing
    /// rows wider than `max_dim`.
    pub(crate) fn from_json_slice(raw: &[u8], max_dim: usize) -> Result<Vectors, String> {
        let mut de = serde_json::Deserializer::from_slice(raw);
        let mut v = Vectors::new();
        RowsSeed {
            out: &mut v,
            max_dim,
        }
        .deserialize(&mut de)
        .map_err(|e| e.to_string())?;
        de.end().map_err(|e| e.to_string())?;
        Ok(v)
    }

    /// `f32`s, little-endian, base64-encoded: OpenAI's `encoding_format: base64`.
    pub(crate) fn row_base64(row: &[f32]) -> String {
        use base64::Engine;
        let mut bytes = Vec::with_capacity(row.len() * 4);
        for x in row {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }
}

impl Serialize for Vectors {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.len()))?;
        for row in self.iter() {
            seq.serialize_element(row)?;
        }
        seq.end()
    }
}

/// The outer list: each element a row appended to `out`.
struct RowsSeed<'a> {
    out: &'a mut Vectors,
    max_dim: usize,
}

impl<'de> DeserializeSeed<'de> for RowsSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowsSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of embeddings")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let max_dim = self.max_dim;
        while let Some(n) = seq.next_element_seed(RowSeed {
            out: &mut self.out.data,
            max_dim,
        })? {
            if n == 0 {
                return Err(serde::de::Error::custom("an embedding is empty"));
            }
            if self.out.data.len() == n {
                self.out.dim = n;
            } else if n != self.out.dim {
                return Err(serde::de::Error::custom("the embeddings differ in size"));
            }
        }
        Ok(())
    }
}

/// One row: numbers appended to `out`; its length is the value.
pub(crate) struct RowSeed<'a> {
    pub out: &'a mut Vec<f32>,
    pub max_dim: usize,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an embedding: a list of numbers")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut n = 0usize;
        while let Some(x) = seq.next_element::<f32>()? {
            n += 1;
            if n > self.max_dim {
                return Err(serde::de::Error::custom(format!(
                    "an embedding has more than {} dimensions",
                    self.max_dim
                )));
            }
            self.out.push(x);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_read_straight_and_checked() {
        let v = Vectors::from_json_slice(b"[[0.5, 1], [2, -3.25]]", 8).unwrap();
        assert_eq!((v.len(), v.dimensions()), (2, 2));
        assert_eq!(v.get(1), Some(&[2.0f32, -3.25][..]));
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            "[[0.5,1.0],[2.0,-3.25]]"
        );
        for bad in [
            &b"[[1, 2], [3]]"[..],
            b"[[]]",
            b"[[1, \"x\"]]",
            b"{}",
            b"[[1,2,3]]",
        ] {
            assert!(Vectors::from_json_slice(bad, 2).is_err(), "{bad:?}");
        }
        let mut w = Vectors::from_rows([[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]]).unwrap();
        w.truncate_rows(2);
        assert_eq!(w.as_flat(), &[1.0, 2.0, 4.0, 5.0]);
        assert_eq!(Vectors::new().iter().count(), 0);
    }
}
