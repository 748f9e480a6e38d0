//! The binary versions of CIFAR-10 and CIFAR-100: fixed-length records of label bytes followed
//! by the red, green and blue planes of a 32x32 image. CIFAR-10 records have one label byte
//! (3,073 bytes); CIFAR-100 records a coarse then a fine label byte (3,074 bytes).

use std::fmt;

/// Bytes of one 32x32 RGB image.
pub const IMAGE_BYTES: usize = 3 * 32 * 32;

/// Which CIFAR file layout, and which label of a record to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Cifar10,
    /// CIFAR-100's 100 fine classes.
    Cifar100Fine,
    /// CIFAR-100's 20 superclasses.
    Cifar100Coarse,
}

impl Layout {
    pub fn label_bytes(self) -> usize {
        match self {
            Self::Cifar10 => 1,
            _ => 2,
        }
    }

    pub fn record(self) -> usize {
        self.label_bytes() + IMAGE_BYTES
    }

    pub fn classes(self) -> usize {
        match self {
            Self::Cifar10 => 10,
            Self::Cifar100Fine => 100,
            Self::Cifar100Coarse => 20,
        }
    }

    /// The offset of the label used within a record.
    fn label_at(self) -> usize {
        match self {
            Self::Cifar10 | Self::Cifar100Coarse => 0,
            Self::Cifar100Fine => 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CifarError {
    Empty,
    WrongLength {
        len: usize,
        record: usize,
    },
    LabelOutOfRange {
        index: usize,
        label: u8,
        classes: usize,
    },
}

impl fmt::Display for CifarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "the file is empty"),
            Self::WrongLength { len, record } => write!(
                f,
                "{len} bytes is not a whole number of {record}-byte records ({} records and {} bytes over); is this the binary version of the right CIFAR?",
                len / record,
                len % record
            ),
            Self::LabelOutOfRange {
                index,
                label,
                classes,
            } => write!(
                f,
                "record {index} has label {label}, out of range for {classes} classes"
            ),
        }
    }
}

impl std::error::Error for CifarError {}

/// The images (CHW planes, as stored) and labels of one file.
pub fn parse(bytes: &[u8], layout: Layout) -> Result<(Vec<u8>, Vec<u8>), CifarError> {
    let record = layout.record();
    if bytes.is_empty() {
        return Err(CifarError::Empty);
    }
    if bytes.len() % record != 0 {
        return Err(CifarError::WrongLength {
            len: bytes.len(),
            record,
        });
    }
    let n = bytes.len() / record;
    let mut images = Vec::with_capacity(n * IMAGE_BYTES);
    let mut labels = Vec::with_capacity(n);
    for (index, r) in bytes.chunks_exact(record).enumerate() {
        let label = r[layout.label_at()];
        if label as usize >= layout.classes() {
            return Err(CifarError::LabelOutOfRange {
                index,
                label,
                classes: layout.classes(),
            });
        }
        labels.push(label);
        images.extend_from_slice(&r[layout.label_bytes()..]);
    }
    Ok((images, labels))
}

/// Records in `layout` (for tests and tools that make datasets): `images` are CHW planes.
pub fn encode(images: &[u8], labels: &[(u8, u8)], layout: Layout) -> Vec<u8> {
    let mut out = Vec::with_capacity(labels.len() * layout.record());
    for (img, &(coarse, fine)) in images.chunks_exact(IMAGE_BYTES).zip(labels) {
        match layout {
            Layout::Cifar10 => out.push(coarse),
            _ => out.extend_from_slice(&[coarse, fine]),
        }
        out.extend_from_slice(img);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn two_records(layout: Layout) -> Vec<u8> {
        let images: Vec<u8> = (0..2 * IMAGE_BYTES).map(|i| (i % 251) as u8).collect();
        encode(&images, &[(3, 41), (7, 99)], layout)
    }

    #[test]
    fn parses_both_layouts_and_picks_the_label() {
        let (img, lbl) = parse(&two_records(Layout::Cifar10), Layout::Cifar10).unwrap();
        assert_eq!(lbl, vec![3, 7]);
        assert_eq!(img.len(), 2 * IMAGE_BYTES);
        assert_eq!(img[IMAGE_BYTES], (IMAGE_BYTES % 251) as u8);
        let bytes = two_records(Layout::Cifar100Fine);
        assert_eq!(bytes.len(), 2 * 3074);
        assert_eq!(parse(&bytes, Layout::Cifar100Fine).unwrap().1, vec![41, 99]);
        assert_eq!(parse(&bytes, Layout::Cifar100Coarse).unwrap().1, vec![3, 7]);
    }

    #[test]
    fn wrong_lengths_and_labels_are_errors() {
        let ten = two_records(Layout::Cifar10);
        let e = parse(&ten[..ten.len() - 1], Layout::Cifar10).unwrap_err();
        assert_eq!(
            e,
            CifarError::WrongLength {
                len: 6145,
                record: 3073
            }
        );
        assert!(
            e.to_string().contains("1 records and 3072 bytes over"),
            "{e}"
        );
        // A CIFAR-10 file read as CIFAR-100 is the wrong length.
        assert!(parse(&ten, Layout::Cifar100Fine).is_err());
        let mut bad = ten.clone();
        bad[3073] = 10;
        assert_eq!(
            parse(&bad, Layout::Cifar10).unwrap_err().to_string(),
            "record 1 has label 10, out of range for 10 classes"
        );
        assert_eq!(parse(&[], Layout::Cifar10), Err(CifarError::Empty));
    }

    proptest! {
        #[test]
        fn truncations_never_parse_and_never_panic(cut in 1usize..6146) {
            let ten = two_records(Layout::Cifar10);
            let r = parse(&ten[..ten.len() - cut], Layout::Cifar10);
            prop_assert_eq!(r.is_ok(), cut == 3073);
        }

        #[test]
        fn mutations_give_ok_or_err(pos in 0usize..6148, val in any::<u8>(), fine in any::<bool>()) {
            let layout = if fine { Layout::Cifar100Fine } else { Layout::Cifar100Coarse };
            let mut bytes = two_records(layout);
            let p = pos % bytes.len();
            bytes[p] = val;
            if let Ok((img, lbl)) = parse(&bytes, layout) {
                prop_assert_eq!(img.len(), 2 * IMAGE_BYTES);
                prop_assert!(lbl.iter().all(|&l| (l as usize) < layout.classes()));
            }
        }

        #[test]
        fn any_bytes_give_ok_or_err(bytes in proptest::collection::vec(any::<u8>(), 0..7000)) {
            let _ = parse(&bytes, Layout::Cifar10);
        }
    }
}
