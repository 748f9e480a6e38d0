//! The IDX format of MNIST and Fashion-MNIST: a 4-byte magic (two zero bytes, an element type,
//! a dimension count), the dimensions as big-endian u32, then the elements. Only unsigned bytes
//! (type 0x08) are used by these datasets, so only those are accepted.

use std::fmt;

/// A parsed IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdxError {
    TooShort { len: usize },
    BadMagic { found: [u8; 4] },
    UnsupportedType { code: u8 },
    BadRank { rank: u8 },
    TooLarge,
    Truncated { expected: usize, found: usize },
    TrailingBytes { extra: usize },
}

impl fmt::Display for IdxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { len } => write!(f, "file is {len} bytes, too short for an IDX header"),
            Self::BadMagic { found } => write!(
                f,
                "wrong magic number {:02x} {:02x} {:02x} {:02x} (an IDX file starts 00 00 08 <rank>)",
                found[0], found[1], found[2], found[3]
            ),
            Self::UnsupportedType { code } => {
                write!(f, "element type 0x{code:02x} is not supported (only 0x08, unsigned bytes)")
            }
            Self::BadRank { rank } => write!(f, "{rank} dimensions, expected 1 (labels) or 3 (images)"),
            Self::TooLarge => write!(f, "dimensions multiply to more than fits in memory"),
            Self::Truncated { expected, found } => {
                write!(f, "truncated: header promises {expected} data bytes, found {found}")
            }
            Self::TrailingBytes { extra } => write!(f, "{extra} unexpected bytes after the data"),
        }
    }
}

impl std::error::Error for IdxError {}

/// Largest array accepted: far above any image dataset this tool trains on, far below what
/// would make a hostile header allocate the machine away.
const MAX_ELEMENTS: usize = 1 << 33;

pub fn parse(bytes: &[u8]) -> Result<IdxArray, IdxError> {
    if bytes.len() < 4 {
        return Err(IdxError::TooShort { len: bytes.len() });
    }
    let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
    if magic[0] != 0 || magic[1] != 0 {
        return Err(IdxError::BadMagic { found: magic });
    }
    if magic[2] != 0x08 {
        // 0x09..0x0E are valid IDX types we do not read; anything else is not IDX at all.
        return Err(if (0x09..=0x0E).contains(&magic[2]) {
            IdxError::UnsupportedType { code: magic[2] }
        } else {
            IdxError::BadMagic { found: magic }
        });
    }
    let rank = magic[3];
    if rank != 1 && rank != 3 {
        return Err(IdxError::BadRank { rank });
    }
    let header = 4 + 4 * rank as usize;
    if bytes.len() < header {
        return Err(IdxError::TooShort { len: bytes.len() });
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or(IdxError::TooLarge)?;
    let found = bytes.len() - header;
    if found < expected {
        return Err(IdxError::Truncated { expected, found });
    }
    if found > expected {
        return Err(IdxError::TrailingBytes {
            extra: found - expected,
        });
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Serialises an array as IDX (used by tests and tools that make datasets).
pub fn encode(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn images() -> Vec<u8> {
        encode(&[3, 2, 2], &(0..12).collect::<Vec<u8>>())
    }

    #[test]
    fn parses_hand_made_files() {
        let a = parse(&images()).unwrap();
        assert_eq!(a.dims, vec![3, 2, 2]);
        assert_eq!(a.data, (0..12).collect::<Vec<u8>>());
        let bytes = [0, 0, 8, 1, 0, 0, 0, 4, 9, 8, 7, 6];
        let l = parse(&bytes).unwrap();
        assert_eq!(l.dims, vec![4]);
        assert_eq!(l.data, vec![9, 8, 7, 6]);
    }

    #[test]
    fn rejects_bad_headers() {
        assert_eq!(parse(&[0, 0]), Err(IdxError::TooShort { len: 2 }));
        assert!(matches!(
            parse(&[1, 0, 8, 1, 0, 0, 0, 0]),
            Err(IdxError::BadMagic { .. })
        ));
        assert!(matches!(
            parse(&[0x1f, 0x8b, 8, 0]),
            Err(IdxError::BadMagic { .. })
        ));
        assert_eq!(
            parse(&[0, 0, 0x0D, 1, 0, 0, 0, 0]),
            Err(IdxError::UnsupportedType { code: 0x0D })
        );
        assert_eq!(
            parse(&[0, 0, 8, 2, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(IdxError::BadRank { rank: 2 })
        );
        assert_eq!(
            parse(&[0, 0, 8, 3, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255]),
            Err(IdxError::TooLarge)
        );
        let mut long = images();
        long.push(0);
        assert_eq!(parse(&long), Err(IdxError::TrailingBytes { extra: 1 }));
    }

    #[test]
    fn every_truncated_prefix_is_an_error() {
        let full = images();
        for n in 0..full.len() {
            assert!(parse(&full[..n]).is_err(), "prefix of {n} bytes parsed");
        }
    }

    proptest! {
        #[test]
        fn any_bytes_give_ok_or_err(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn mutating_the_header_is_an_error_and_the_data_never_panics(pos in 0usize..28, val in any::<u8>()) {
            let mut bytes = images();
            let original = bytes[pos];
            prop_assume!(val != original);
            bytes[pos] = val;
            match parse(&bytes) {
                // The 16 header bytes decide the size: changing one breaks the file.
                Ok(a) => prop_assert!(pos >= 16 && a.dims == vec![3, 2, 2]),
                Err(_) => prop_assert!(pos < 16),
            }
        }
    }
}
