//! `candletop data-info`: what a dataset holds; the data every subcommand that trains loads.

use std::io::Write;
use std::process::ExitCode;

use crate::cli::DataInfoArgs;
use crate::config::RunConfig;
use crate::data::DataSplits;
use crate::error::Error;
use crate::runtime;

pub(super) fn data_info(args: &DataInfoArgs) -> Result<ExitCode, Error> {
    let cfg = args.train.resolve()?;
    runtime::set_threads(cfg.threads(), cfg.kernels);
    let data = load_data(&cfg)?;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(data_report(&data, &cfg).as_bytes());
    Ok(ExitCode::SUCCESS)
}

/// `candletop data-info`'s report.
pub(super) fn data_report(data: &DataSplits, cfg: &RunConfig) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let t = &data.train;
    let _ = writeln!(
        o,
        "source     {} ({}x{}x{}, {} classes)",
        data.source,
        t.channels,
        t.height,
        t.width,
        data.classes.len()
    );
    let n = crate::format::group_thousands;
    let _ = writeln!(
        o,
        "splits     {} train / {} val / {} test",
        n(data.train.len()),
        n(data.val.len()),
        n(data.test.len())
    );
    let how = match cfg.normalize {
        crate::data::NormalizeSpec::Auto => "of the training set",
        _ => "given",
    };
    let _ = writeln!(o, "normalise  {} ({how})", data.norm.describe());
    let _ = writeln!(o, "augment    {}", cfg.augment);
    if !data.skipped.is_empty() {
        let _ = writeln!(
            o,
            "skipped    {} images that do not decode",
            data.skipped.len()
        );
    }
    let counts = data.counts();
    let max = counts.train.iter().copied().max().unwrap_or(0).max(1);
    let w = data
        .classes
        .iter()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(5)
        .clamp(5, 24);
    const BAR: usize = 24;
    let _ = writeln!(
        o,
        "\n{:<w$}  {:>8} {:<BAR$}  {:>7}  {:>7}",
        "class", "train", "", "val", "test"
    );
    for (i, name) in data.classes.iter().enumerate() {
        let name: String = name.chars().take(w).collect();
        let tr = counts.train[i];
        let _ = writeln!(
            o,
            "{name:<w$}  {:>8} {:<BAR$}  {:>7}  {:>7}",
            n(tr),
            bar(tr as f64 / max as f64, BAR),
            n(counts.val[i]),
            n(counts.test[i])
        );
    }
    let ratio = crate::data::balance::imbalance_ratio(&counts.train);
    let empty = counts.train.iter().filter(|&&c| c == 0).count();
    if empty > 0 {
        let _ = writeln!(
            o,
            "\nwarning: {empty} classes have no training images; the model cannot learn them"
        );
    }
    if ratio >= 1.5 {
        let _ = writeln!(
            o,
            "\nwarning: the training set is unbalanced: its largest class has {ratio:.1}x the images of its smallest; --class-weights balanced or --sampler balanced make every class count the same"
        );
    }
    o
}

/// A horizontal bar of `share` (0..1) of `width` cells, in eighths.
fn bar(share: f64, width: usize) -> String {
    const PARTS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    let eighths = (share.clamp(0.0, 1.0) * width as f64 * 8.0).round() as usize;
    let mut s = "█".repeat(eighths / 8);
    if eighths % 8 > 0 {
        s.push(PARTS[eighths % 8]);
    }
    s
}

/// The data `cfg` names, saying on stderr what a slow load is about to do and which files
/// `--skip-bad-images` left out.
pub(super) fn load_data(cfg: &RunConfig) -> Result<DataSplits, Error> {
    let data = DataSplits::load_noting(&cfg.data, &cfg.data_options(), &mut |note| {
        eprintln!("{note}");
    })?;
    if !data.skipped.is_empty() {
        eprintln!(
            "skipped {} images that do not decode (--skip-bad-images):",
            data.skipped.len()
        );
        for b in data.skipped.iter().take(20) {
            eprintln!("  {}: {}", b.path.display(), b.problem);
        }
        if data.skipped.len() > 20 {
            eprintln!(
                "  ... and {} more (all in metrics.jsonl)",
                data.skipped.len() - 20
            );
        }
    }
    Ok(data)
}
