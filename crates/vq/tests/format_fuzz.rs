//! Robustness of `.vqst` loading: round trips, then truncated and corrupted files must give an error
//! (or, for benign data flips, a valid model) and never panic.

mod format_support;

use format_support::{random_model, temp_path};
use rand::Rng;
use std::panic::catch_unwind;
use vqllm_vq::{CodeStorage, DenseDtype, QuantizedModel, SaveOptions, VqError};

const ALL_OPTIONS: [SaveOptions; 4] = [
    SaveOptions {
        codes: CodeStorage::Auto,
        dense: DenseDtype::F32,
    },
    SaveOptions {
        codes: CodeStorage::Aqlm,
        dense: DenseDtype::F32,
    },
    SaveOptions {
        codes: CodeStorage::Packed,
        dense: DenseDtype::F16,
    },
    SaveOptions {
        codes: CodeStorage::Auto,
        dense: DenseDtype::F16,
    },
];

/// Loads `bytes`, asserting that loading does not panic; a successful load must be a valid,
/// self-consistent model (it re-serializes and loads back equal).
fn load_no_panic(bytes: &[u8], what: &str) -> Result<QuantizedModel, VqError> {
    let result = catch_unwind(|| QuantizedModel::from_bytes(bytes));
    let loaded = result.unwrap_or_else(|_| panic!("load panicked on {what}"));
    if let Ok(m) = &loaded {
        for (name, w) in &m.tensors {
            w.validate()
                .unwrap_or_else(|e| panic!("{what}: loaded tensor {name} is invalid: {e}"));
        }
        let again = m
            .to_bytes(&SaveOptions::default())
            .expect("a loaded model re-serializes");
        assert_eq!(
            &QuantizedModel::from_bytes(&again).unwrap(),
            m,
            "{what}: reload differs"
        );
    } else if let Err(e) = &loaded {
        assert!(
            matches!(e, VqError::Format(_)),
            "{what}: error is not a Format error: {e:?}"
        );
    }
    loaded
}

fn header_len(bytes: &[u8]) -> usize {
    8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize
}

#[test]
fn round_trip_all_storage_options() {
    let model = random_model(1);
    for opts in ALL_OPTIONS {
        let bytes = model.to_bytes(&opts).unwrap();
        let back = QuantizedModel::from_bytes(&bytes).unwrap();
        assert_eq!(back, model, "{opts:?}");
    }
    let path = temp_path("fuzz-roundtrip");
    model.save(&path).unwrap();
    assert_eq!(QuantizedModel::load(&path).unwrap(), model);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn truncated_files_are_errors() {
    let model = random_model(2);
    let mut rng = format_support::rng(2);
    for opts in [ALL_OPTIONS[1], ALL_OPTIONS[2]] {
        let bytes = model.to_bytes(&opts).unwrap();
        let head = header_len(&bytes);
        let mut lengths: Vec<usize> = (0..head + 64).step_by(7).collect();
        lengths.extend((0..200).map(|_| rng.random_range(0..bytes.len())));
        lengths.push(bytes.len() - 1);
        for len in lengths {
            let r = load_no_panic(&bytes[..len], &format!("truncation to {len}"));
            assert!(r.is_err(), "truncation to {len} of {} loaded", bytes.len());
        }
        // Extra trailing bytes are also an error (safetensors requires an exact size).
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(load_no_panic(&longer, "one extra byte").is_err());
    }
    // Truncated file on disk: I/O succeeds, parsing fails with a Format error naming the file.
    let path = temp_path("fuzz-trunc");
    let bytes = model.to_bytes(&SaveOptions::default()).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = QuantizedModel::load(&path).unwrap_err();
    assert!(
        matches!(&err, VqError::Format(m) if m.contains("vqllm-fuzz-trunc")),
        "{err}"
    );
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(QuantizedModel::load(&path), Err(VqError::Io(_))));
}

#[test]
fn corrupted_bytes_never_panic() {
    let model = random_model(3);
    let mut rng = format_support::rng(3);
    for opts in ALL_OPTIONS {
        let bytes = model.to_bytes(&opts).unwrap();
        let head = header_len(&bytes);
        let (mut header_errors, mut header_trials, mut data_errors) = (0, 0, 0);
        for trial in 0..1000 {
            let mut b = bytes.clone();
            // Half the trials hit the header (length prefix and JSON), half the tensor data.
            let pos = if trial % 2 == 0 {
                rng.random_range(0..head)
            } else {
                rng.random_range(head..b.len())
            };
            match rng.random_range(0..3) {
                0 => b[pos] ^= 1 << rng.random_range(0..8),
                1 => b[pos] = rng.random(),
                _ => {
                    let end = (pos + rng.random_range(1..16)).min(b.len());
                    b[pos..end].fill(rng.random());
                }
            }
            let r = load_no_panic(&b, &format!("corruption at {pos} (trial {trial})"));
            if pos < head {
                header_trials += 1;
                header_errors += usize::from(r.is_err());
            } else {
                data_errors += usize::from(r.is_err());
            }
        }
        eprintln!(
            "{opts:?}: header {header_errors}/{header_trials} errors, data {data_errors} errors"
        );
        // Most header corruptions break the JSON or names; some data corruptions give bad codes or NaNs.
        assert!(
            header_errors * 2 > header_trials,
            "{opts:?}: only {header_errors}/{header_trials} header errors"
        );
        assert!(data_errors > 0, "{opts:?}: no data corruption was detected");
    }
}

#[test]
fn corrupted_length_prefix_never_panics() {
    let model = random_model(4);
    let bytes = model.to_bytes(&SaveOptions::default()).unwrap();
    for n in [
        0u64,
        1,
        7,
        u64::MAX,
        u64::MAX - 7,
        1 << 40,
        (bytes.len() as u64) - 8,
        bytes.len() as u64,
    ] {
        let mut b = bytes.clone();
        b[..8].copy_from_slice(&n.to_le_bytes());
        assert!(load_no_panic(&b, &format!("length prefix {n}")).is_err());
    }
    for junk in [
        &b""[..],
        &b"\0\0\0\0\0\0\0\0"[..],
        &b"\x02\0\0\0\0\0\0\0{}"[..],
        &b"\x02\0\0\0\0\0\0\0[]"[..],
    ] {
        assert!(load_no_panic(junk, "junk").is_err());
    }
}

/// Offsets whose sum overflows `usize` in safetensors' own size check: rejected before it runs.
#[test]
fn crafted_huge_offsets_are_errors() {
    let size = usize::MAX / 9;
    let mut entries = Vec::new();
    for i in 0..9 {
        entries.push(format!(
            "\"t{i}\":{{\"dtype\":\"U8\",\"shape\":[{size}],\"data_offsets\":[{},{}]}}",
            i * size,
            (i + 1) * size
        ));
    }
    let header = format!("{{{}}}", entries.join(","));
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    let err = load_no_panic(&bytes, "huge offsets").unwrap_err();
    assert!(err.to_string().contains("beyond"), "{err}");
}
