//! Data sources beyond IDX: CIFAR-10/100 binary files and image folders, made by hand from the
//! embedded Fashion-MNIST (repacked as 32x32 RGB, written as PNG), read back pixel for pixel;
//! their bad inputs; `data-info`; and short training runs from each that learn.

mod common;

use std::path::Path;

use candletop::data::{DataOptions, DataSpec, DataSplits, FolderOptions, FASHION_MNIST_CLASSES};
use common::{
    candletop, last_val_accuracy, rejects, rgb32, succeeds, write_cifar, write_folder, Layout,
};

fn embedded() -> DataSplits {
    DataSplits::load(&DataSpec::Embedded, &DataOptions::new(0.1, 1)).unwrap()
}

fn load(spec: &str, opts: DataOptions) -> DataSplits {
    DataSplits::load(&spec.parse().unwrap(), &opts).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn cifar_files_read_back_with_their_classes_and_pixels() {
    let tmp = tempfile::tempdir().unwrap();
    let ten = tmp.path().join("c10");
    write_cifar(&ten, Layout::Cifar10, 40, 30);
    let d = load(&format!("cifar10:{}", s(&ten)), DataOptions::new(0.2, 1));
    assert_eq!(d.classes, FASHION_MNIST_CLASSES.to_vec());
    assert_eq!((d.train.len() + d.val.len(), d.test.len()), (200, 30));
    assert!((d.val.len() as i64 - 40).abs() <= 5, "{}", d.val.len());
    assert_eq!(
        (d.train.channels, d.train.height, d.train.width),
        (3, 32, 32)
    );
    let e = embedded();
    for i in 0..30 {
        assert_eq!(d.test.image(i), &rgb32(&e.test, i)[..], "test image {i}");
        assert_eq!(d.test.labels[i], e.test.labels[i]);
    }
    // Three channels, each normalised by its own statistics (computed here directly).
    assert_eq!(d.norm.mean.len(), 3);
    for c in 0..3 {
        let px: Vec<f64> = (0..d.train.len())
            .flat_map(|i| d.train.image(i)[c * 1024..(c + 1) * 1024].to_vec())
            .map(|p| p as f64 / 255.0)
            .collect();
        let mean = px.iter().sum::<f64>() / px.len() as f64;
        let var = px.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / px.len() as f64;
        assert!(
            (d.norm.mean[c] as f64 - mean).abs() < 1e-5,
            "{c}: {:?}",
            d.norm
        );
        assert!(
            (d.norm.std[c] as f64 - var.sqrt()).abs() < 1e-5,
            "{c}: {:?}",
            d.norm
        );
    }
    assert_ne!(d.norm.mean[0], d.norm.mean[1]);
    // The archive's own folder inside DIR is found too.
    let nested = tmp.path().join("outer");
    write_cifar(&nested.join("cifar-10-batches-bin"), Layout::Cifar10, 4, 3);
    assert_eq!(
        load(&format!("cifar10:{}", s(&nested)), DataOptions::new(0.5, 1))
            .test
            .len(),
        3
    );

    let hundred = tmp.path().join("c100");
    write_cifar(&hundred, Layout::Cifar100Fine, 200, 20);
    let fine = load(
        &format!("cifar100:{}", s(&hundred)),
        DataOptions::new(0.1, 1),
    );
    assert_eq!(fine.classes.len(), 100);
    assert_eq!(fine.classes[30], "fine30");
    assert_eq!(
        fine.test.labels[..5],
        e.test.labels[..5]
            .iter()
            .map(|l| l * 10)
            .collect::<Vec<_>>()[..]
    );
    let coarse = load(
        &format!("cifar100-coarse:{}", s(&hundred)),
        DataOptions::new(0.1, 1),
    );
    assert_eq!(coarse.classes.len(), 20);
    assert_eq!(coarse.test.labels[..5], e.test.labels[..5]);
}

#[test]
fn bad_cifar_files_are_one_line_errors_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    write_cifar(&dir, Layout::Cifar10, 10, 10);
    let spec = format!("cifar10:{}", s(&dir));
    let third = dir.join("data_batch_3.bin");
    let good = std::fs::read(&third).unwrap();
    std::fs::write(&third, &good[..good.len() - 100]).unwrap();
    rejects(
        &["--headless", "--data", &spec],
        "data_batch_3.bin: 30630 bytes is not a whole number of 3073-byte records",
    );
    let mut bad = good.clone();
    bad[3 * 3073] = 12;
    std::fs::write(&third, &bad).unwrap();
    rejects(
        &["data-info", "--data", &spec],
        "data_batch_3.bin: record 3 has label 12, out of range for 10 classes",
    );
    std::fs::remove_file(&third).unwrap();
    rejects(
        &["--headless", "--data", &spec],
        "c: no data_batch_3.bin here (the binary version of CIFAR-10 has",
    );
    // A CIFAR-10 directory is not CIFAR-100.
    rejects(
        &["data-info", "--data", &format!("cifar100:{}", s(&dir))],
        "no train.bin here",
    );
    rejects(
        &["data-info", "--data", "cifar10:/nonexistent"],
        "/nonexistent: no such directory",
    );
}

#[test]
fn image_folders_read_back_in_every_layout_and_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("f");
    let names = write_folder(&dir, true, [12, 4, 3]);
    let spec = format!("folder:{}", s(&dir));
    let d = load(&spec, DataOptions::new(0.1, 1));
    assert_eq!(d.classes, names, "classes are the sorted folder names");
    // val/ is used as it is: no split.
    assert_eq!((d.train.len(), d.val.len(), d.test.len()), (120, 40, 30));
    assert_eq!(
        (d.train.channels, d.train.height, d.train.width),
        (3, 32, 32)
    );
    // PNG is lossless: the first test image of class 0 is the one written.
    let e = embedded();
    let first = (0..e.test.len()).find(|&i| e.test.labels[i] == 0).unwrap();
    assert_eq!(d.test.labels[0], 0);
    assert_eq!(d.test.image(0), &rgb32(&e.test, first)[..]);

    // Grayscale and another size on request.
    let gray = DataOptions {
        folder: FolderOptions {
            channels: Some(1),
            size: Some((16, 20)),
            skip_bad: false,
            stream: false,
        },
        ..DataOptions::new(0.1, 1)
    };
    let g = load(&spec, gray);
    assert_eq!(
        (g.train.channels, g.train.height, g.train.width),
        (1, 16, 20)
    );

    // Read from disk as needed: the same images, labels and statistics.
    let streamed = DataOptions {
        folder: FolderOptions {
            stream: true,
            ..FolderOptions::default()
        },
        ..DataOptions::new(0.1, 1)
    };
    let st = load(&spec, streamed);
    assert!(st.train.streamed() && st.val.streamed() && !d.train.streamed());
    assert!(st.train.images.is_empty(), "nothing decoded kept in memory");
    assert_eq!(
        (st.train.labels.clone(), st.norm.clone()),
        (d.train.labels.clone(), d.norm.clone())
    );
    for i in [0, 57, 119] {
        assert_eq!(st.train.image(i), d.train.image(i), "image {i}");
    }
    let some = st.train.select(&[3, 1]);
    assert_eq!(some.image(1), d.train.image(1));

    // Grayscale PNGs are read as one channel; DIR/<class>/ is split by --val-split.
    let flat = tmp.path().join("flat");
    write_folder(&flat, false, [20, 0, 0]);
    let f = load(
        &format!("folder:{}", s(&flat.join("train"))),
        DataOptions::new(0.25, 1),
    );
    assert_eq!((f.train.channels, f.train.height), (1, 28));
    assert_eq!((f.train.len(), f.val.len(), f.test.len()), (150, 50, 0));
    assert_eq!(f.counts().val, vec![5; 10], "the split is stratified");
}

#[test]
fn bad_image_folders_are_one_line_errors_and_bad_images_can_be_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("f");
    let names = write_folder(&dir, true, [6, 2, 0]);
    let spec = format!("folder:{}", s(&dir));
    let train = dir.join("train");

    let junk = train.join(&names[3]).join("zz-broken.png");
    std::fs::write(&junk, b"not a png at all").unwrap();
    rejects(
        &["--headless", "--data", &spec],
        "zz-broken.png: cannot decode: ",
    );
    rejects(
        &["data-info", "--data", &spec],
        "(--skip-bad-images skips such files)",
    );
    let out = succeeds(
        tmp.path(),
        &["data-info", "--data", &spec, "--skip-bad-images"],
    );
    assert!(
        out.contains("skipped    1 images that do not decode"),
        "{out}"
    );
    let err = candletop(
        &["data-info", "--data", &spec, "--skip-bad-images"],
        tmp.path(),
    );
    let err = String::from_utf8_lossy(&err.stderr).to_string();
    assert!(
        err.contains("zz-broken.png"),
        "the skipped file is listed: {err}"
    );
    std::fs::remove_file(&junk).unwrap();

    // A link to nothing is a bad image too, not a file that silently is not there.
    let dangling = train.join(&names[3]).join("zz-gone.png");
    std::os::unix::fs::symlink(tmp.path().join("nowhere.png"), &dangling).unwrap();
    rejects(
        &["data-info", "--data", &spec],
        "zz-gone.png: cannot decode: ",
    );
    let out = succeeds(
        tmp.path(),
        &["data-info", "--data", &spec, "--skip-bad-images"],
    );
    assert!(
        out.contains("skipped    1 images that do not decode"),
        "{out}"
    );
    std::fs::remove_file(&dangling).unwrap();

    // Another size without --image-size.
    let small = train.join(&names[2]).join("zz-small.png");
    image::RgbImage::new(30, 32).save(&small).unwrap();
    rejects(
        &["data-info", "--data", &spec],
        "zz-small.png: is 30x32 (width x height) but the first image is 32x32; pass --image-size",
    );
    succeeds(
        tmp.path(),
        &["data-info", "--data", &spec, "--image-size", "32"],
    );
    std::fs::remove_file(&small).unwrap();

    let empty = train.join("99-empty");
    std::fs::create_dir(&empty).unwrap();
    rejects(
        &["data-info", "--data", &spec],
        "99-empty: no images (looked for .png",
    );
    std::fs::remove_dir(&empty).unwrap();

    std::fs::create_dir(dir.join("val/zebra")).unwrap();
    rejects(
        &["data-info", "--data", &spec],
        "zebra: not a class of the training set",
    );
    std::fs::remove_dir(dir.join("val/zebra")).unwrap();

    let nothing = tmp.path().join("nothing");
    std::fs::create_dir(&nothing).unwrap();
    rejects(
        &["data-info", "--data", &format!("folder:{}", s(&nothing))],
        "nothing: no class folders",
    );
    rejects(
        &["data-info", "--data", &spec, "--subset", "100"],
        "--subset 100: the training set has only 60 images",
    );
    rejects(
        &["data-info", "--data", &spec, "--channels", "2"],
        "--channels 2: must be 1 or 3",
    );
    rejects(
        &["data-info", "--image-size", "0x3"],
        "--image-size 0x3: '0x3' is not an image size (N or WxH, each 1 to 4096 pixels)",
    );
    rejects(
        &["data-info", "--imbalance", "0.5"],
        "--imbalance 0.5: must be at least 1",
    );
    rejects(
        &["data-info", "--normalize", "0.5"],
        "--normalize '0.5': expected 'auto' or MEAN/STD",
    );
    rejects(
        &[
            "data-info",
            "--data",
            &spec,
            "--normalize",
            "0.5,0.5,0.5/1,1",
        ],
        "give 1 or 3 means and as many stds",
    );
    rejects(&["--headless", "--augment", "crop,blur"], "--augment 'crop,blur': unknown transform 'blur' (known: crop, pad-crop, flip, jitter, rotate, erase)");
    rejects(
        &["--headless", "--augment", "flip:1.5"],
        "--augment 'flip:1.5': 'flip:1.5': the probability must be in [0, 1]",
    );
    rejects(
        &["--headless", "--data", "cifar:/x"],
        "unknown data kind 'cifar'",
    );
    // eval of a folder without test/ says so.
    let run = succeeds(
        tmp.path(),
        &[
            "--headless",
            "--data",
            &spec,
            "--arch",
            "c4,f8",
            "--epochs",
            "1",
            "--run-dir",
            "r",
        ],
    );
    assert!(
        !run.contains("test set"),
        "no test split, no test evaluation: {run}"
    );
    rejects(
        &[
            "eval",
            "--checkpoint",
            s(&tmp.path().join("r/checkpoints/last.h5")),
        ],
        "no test split",
    );
}

#[test]
fn data_info_shows_the_classes_the_balance_and_the_normalisation() {
    let tmp = tempfile::tempdir().unwrap();
    let out = succeeds(
        tmp.path(),
        &[
            "data-info",
            "--subset",
            "1000",
            "--imbalance",
            "10",
            "--seed",
            "3",
        ],
    );
    insta::assert_snapshot!(out);
}

/// A short run from each source learns: validation accuracy far above chance (10%, or 1% for
/// CIFAR-100).
#[test]
fn training_from_cifar_files_and_image_folders_learns() {
    let tmp = tempfile::tempdir().unwrap();
    let c10 = tmp.path().join("c10");
    write_cifar(&c10, Layout::Cifar10, 300, 100);
    let folder = tmp.path().join("f");
    write_folder(&folder, true, [120, 30, 30]);
    for (spec, augment, run) in [
        (format!("cifar10:{}", s(&c10)), "pad-crop:4,flip", "a"),
        (
            format!("folder:{}", s(&folder)),
            "crop:0.6,flip,jitter:0.2",
            "b",
        ),
    ] {
        let out = succeeds(
            tmp.path(),
            &[
                "--headless",
                "--data",
                &spec,
                "--augment",
                augment,
                "--epochs",
                "3",
                "--arch",
                "c16,c32,f64",
                "--run-dir",
                run,
            ],
        );
        let acc = last_val_accuracy(&tmp.path().join(run));
        assert!(acc > 0.5, "{spec}: val accuracy {acc}\n{out}");
        assert!(out.contains("augmentation on: "), "{out}");
    }
}

/// A streamed image that disappears during the run ends the run with one line naming it: no
/// hang, no panic text.
#[test]
fn a_streamed_image_that_goes_missing_ends_the_run_with_its_name() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("f");
    write_folder(&folder, false, [40, 10, 0]);
    let spec = format!("folder:{}", s(&folder));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_candletop"))
        .args([
            "--headless",
            "--stream-images",
            "--data",
            &spec,
            "--epochs",
            "50",
        ])
        .args(["--arch", "c4,f8", "--batch-size", "8", "--run-dir", "r"])
        .current_dir(tmp.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the run has started, every training image goes.
    let log = tmp.path().join("r/metrics.jsonl");
    let t0 = std::time::Instant::now();
    while !log.exists() && t0.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::fs::remove_dir_all(folder.join("train")).unwrap();
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(t0.elapsed().as_secs() < 60, "the run did not end");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(1), "{stderr}");
    let last = stderr.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.contains(".png: ") && last.contains("No such file"),
        "{stderr}"
    );
}
