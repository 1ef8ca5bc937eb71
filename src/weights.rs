//! Named f32 tensors in safetensors files: the format every model ships in.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};

/// A set of named f32 tensors with their shapes, plus string metadata.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Weights {
    /// Tensors by name: (shape, values).
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    /// `__metadata__` entries.
    pub metadata: BTreeMap<String, String>,
}

/// Largest weights file read (gpuimg's models are kilobytes to a few megabytes).
pub const MAX_FILE_BYTES: u64 = 256 << 20;

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::Weights { path: path.to_path_buf(), reason: reason.into() }
}

impl Weights {
    /// Adds a tensor.
    pub fn insert(&mut self, name: &str, shape: &[usize], values: Vec<f32>) {
        debug_assert_eq!(shape.iter().product::<usize>(), values.len());
        self.tensors.insert(name.to_string(), (shape.to_vec(), values));
    }

    /// The tensor `name` with exactly `shape`, or an error naming it.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<&[f32]> {
        match self.tensors.get(name) {
            None => Err(Error::invalid("weights", format!("missing tensor '{name}' (expected shape {shape:?})"))),
            Some((s, _)) if s != shape => {
                Err(Error::invalid("weights", format!("tensor '{name}' has shape {s:?}, expected {shape:?}")))
            }
            Some((_, v)) => Ok(v),
        }
    }

    /// Parses safetensors bytes; F32 tensors only (F16/BF16/F64 are converted).
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Weights> {
        use safetensors::{Dtype, SafeTensors};
        let st = SafeTensors::deserialize(bytes).map_err(|e| bad(path, format!("not a safetensors file: {e}")))?;
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| bad(path, e.to_string()))?;
        let mut w = Weights::default();
        if let Some(m) = meta.metadata() {
            for (k, v) in m.iter() {
                w.metadata.insert(k.clone(), v.clone());
            }
        }
        for (name, view) in st.tensors() {
            let d = view.data();
            let values: Vec<f32> = match view.dtype() {
                Dtype::F32 => d.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
                Dtype::F64 => d.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32).collect(),
                Dtype::F16 => d.chunks_exact(2).map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]]))).collect(),
                Dtype::BF16 => {
                    d.chunks_exact(2).map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16)).collect()
                }
                other => {
                    return Err(bad(
                        path,
                        format!("tensor '{name}' has dtype {other:?}; only float tensors are supported"),
                    ))
                }
            };
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                return Err(bad(
                    path,
                    format!("tensor '{name}' holds a non-finite value ({} at index {i}): refused", values[i]),
                ));
            }
            w.tensors.insert(name, (view.shape().to_vec(), values));
        }
        Ok(w)
    }

    /// Reads a safetensors file. Its header is checked before the file is
    /// read whole: a file that is not safetensors, declares a header larger
    /// than itself, or is larger than [`MAX_FILE_BYTES`] is refused unread.
    pub fn load(path: &Path) -> Result<Weights> {
        use std::io::Read;
        let io = |e| Error::io(path, e);
        let mut f = std::fs::File::open(path).map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        let mut head = [0u8; 9];
        let got = f.read(&mut head).map_err(io)?;
        let n = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        if got < 9 || len < 10 || head[8] != b'{' || n > len - 8 || n > 100 << 20 {
            return Err(bad(path, "not a safetensors file (no valid header at its start)"));
        }
        if len > MAX_FILE_BYTES {
            return Err(bad(path, format!("{len} bytes: larger than any gpuimg model (at most {MAX_FILE_BYTES})")));
        }
        let bytes = std::fs::read(path).map_err(io)?;
        Self::from_bytes(&bytes, path)
    }

    /// Serialises to safetensors bytes (F32, little-endian).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        use safetensors::tensor::TensorView;
        let raw: Vec<(String, Vec<usize>, Vec<u8>)> = self
            .tensors
            .iter()
            .map(|(n, (s, v))| (n.clone(), s.clone(), v.iter().flat_map(|x| x.to_le_bytes()).collect()))
            .collect();
        let views = raw
            .iter()
            .map(|(n, s, b)| Ok((n.as_str(), TensorView::new(safetensors::Dtype::F32, s.clone(), b)?)))
            .collect::<std::result::Result<Vec<_>, safetensors::SafeTensorError>>()
            .map_err(|e| Error::invalid("weights", e.to_string()))?;
        let meta =
            (!self.metadata.is_empty()).then(|| self.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
        safetensors::serialize(views, meta).map_err(|e| Error::invalid("weights", e.to_string()))
    }

    /// Writes a safetensors file atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::fsutil::write_atomic(path, &self.to_bytes()?)
    }

    /// Total number of values.
    pub fn parameter_count(&self) -> usize {
        self.tensors.values().map(|(_, v)| v.len()).sum()
    }
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match exp {
        0 if frac == 0 => sign,
        0 => {
            // Subnormal: normalise.
            let mut e = 127 - 15 + 1;
            let mut f = frac;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((f & 0x3ff) << 13)
        }
        0x1f => sign | 0x7f80_0000 | (frac << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}
