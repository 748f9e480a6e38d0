//! Every setting of a run, declared once: its config key (the flag is `--` and the key with `-`
//! for `_`), how the command line gives it, its help, and what a resumed run may do with it.
//! Its type and default are `RunConfig`'s; the command line (`cli`), the config files, the
//! resume checks (`train::resume`) and `--help` all read this table.

use std::path::PathBuf;

use super::{ConfigError, RunConfig};

/// How the command line gives a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `--key VALUE`, shown with this value name.
    Value(&'static str),
    /// `--key` turns it on.
    Switch,
    /// `--key` turns it on, `--no-key` off.
    Negatable,
    /// Only in a config file.
    File,
}

/// What a flag given with `--resume` may do to the checkpoint's setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnResume {
    /// Takes effect from the resumed step.
    Free,
    /// Cannot change, for this reason.
    Fixed(&'static str),
    /// Dropout may change between non-zero values; on or off adds or removes layers.
    Dropout,
    /// Changes which images an epoch visits: only at an epoch's start.
    EpochStart,
    /// Other data: only of the same shape and classes, and only at an epoch's start.
    Data,
}

/// One setting.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The config key: `batch_size`.
    pub key: &'static str,
    pub form: Form,
    /// One paragraph for `-h` (with the default, as `[default: ...]`).
    pub help: &'static str,
    /// The whole story for `--help`, when there is more to say.
    pub long_help: Option<fn() -> String>,
    pub on_resume: OnResume,
}

impl Setting {
    /// `--batch-size`.
    pub fn flag(&self) -> String {
        format!("--{}", self.key.replace('_', "-"))
    }
}

const WEIGHTS: &str = "the checkpoint's weights fit only the model they were trained in";

const fn s(
    key: &'static str,
    form: Form,
    help: &'static str,
    long_help: Option<fn() -> String>,
    on_resume: OnResume,
) -> Setting {
    Setting {
        key,
        form,
        help,
        long_help,
        on_resume,
    }
}

use Form::{File, Negatable, Switch, Value};
use OnResume::{Data, Dropout, EpochStart, Fixed, Free};

/// Every setting, in the order of `--help`.
#[rustfmt::skip]
pub const SETTINGS: &[Setting] = &[
    s("data", Value("SPEC"), "Dataset: embedded, mnist:DIR, fashion-mnist:DIR, cifar10:DIR, cifar100:DIR, cifar100-coarse:DIR or folder:DIR [default: embedded]", Some(|| DATA_HELP.into()), Data),
    s("val_split", Value("F"), "Share of the training set held out for validation, stratified by class (unless the image folder has a val/ of its own) [default: 0.1]", None,
        Fixed("it would move images between training and validation")),
    s("channels", Value("C"), "Image folders: 1 (grayscale) or 3 (RGB) channels [default: what the images are]", None, Data),
    s("image_size", Value("N|WxH"), "Image folders: resize every image to N (square) or WxH pixels [default: the first image's size; all must match]", None, Data),
    s("skip_bad_images", Switch, "Image folders: skip files that do not decode, and list them, instead of stopping", None, Data),
    s("stream_images", Switch, "Image folders: read the images from disk as the loaders need them instead of decoding them into memory once (the default for a set that would take more than half the memory available)", None, Free),
    s("subset", Value("N"), "Train on a stratified subset of N training images [default: 0, all]", None, Data),
    s("imbalance", Value("RATIO"), "Skew the training set: class k keeps a share decaying geometrically, so the first class has RATIO times the images of the last (validation and test stay as they are) [default: 0, none]", None, Data),
    s("label_noise", Value("P"), "Change a share P of the training labels to another class, chosen at random from the seed (validation and test stay clean) [default: 0, none]", None, Data),
    s("normalize", Value("SPEC"), "Input normalisation: auto (each channel's mean and std over the training set) or MEAN/STD, e.g. 0.5/0.25 or 0.49,0.48,0.45/0.25,0.24,0.26 [default: auto]", None,
        Fixed("the model was trained on inputs normalised as the checkpoint says and keeps that")),
    s("augment", Value("SPEC"), "Augmentation of training images, e.g. crop:0.8,flip,jitter:0.2 or pad-crop:4,flip (see --help) [default: none]; the key a toggles it live", Some(|| AUGMENT_HELP.into()), Free),
    s("class_weights", Value("none|balanced"), "Weights of the classes in the loss: none, or balanced (inverse class frequency, as scikit-learn) [default: none]; the key w toggles it live", None, Free),
    s("sampler", Value("shuffle|balanced"), "How an epoch visits the training images: shuffle (each once), or balanced (with replacement, weighted by inverse class frequency) [default: shuffle]", None, EpochStart),
    s("arch", Value("LAYERS"), "Layers, comma-separated [default: c32,c64,f128]", Some(|| ARCH_HELP.into()), Fixed(WEIGHTS)),
    s("activation", Value("relu|leaky_relu|elu|tanh|sigmoid"), "Activation after every conv and hidden layer [default: relu]", None, Fixed(WEIGHTS)),
    s("batch_norm", Negatable, "Batch norm after every conv layer, or none with --no-batch-norm [default: on]", None, Fixed(WEIGHTS)),
    s("dropout", Value("P"), "Dropout probability after the conv blocks and after every hidden layer [default: 0.25]", None, Dropout),
    s("epochs", Value("N"), "Number of epochs [default: 10]", None, Free),
    s("batch_size", Value("N"), "Images per training step [default: 64]", None, EpochStart),
    s("lr", Value("LR"), "Learning rate [default: 0.001]", None, Free),
    s("schedule", Value("SPEC"), "How the learning rate moves: a kind (--help lists them) with an optional warmup [default: constant]", Some(crate::schedule::help), Free),
    s("optimizer", Value("sgd|adam|adamw"), "Optimizer [default: adamw]", None, Free),
    s("momentum", Value("M"), "SGD momentum [default: 0.9]", None, Free),
    s("nesterov", Switch, "Nesterov momentum for SGD [default: off]", None, Free),
    s("weight_decay", Value("WD"), "Weight decay: L2 for SGD and Adam, decoupled for AdamW [default: 0.01]", None, Free),
    s("beta1", File, "Adam's first moment decay [default: 0.9]", None, Free),
    s("beta2", File, "Adam's second moment decay [default: 0.999]", None, Free),
    s("eps", File, "Adam's epsilon [default: 1e-8]", None, Free),
    s("clip_grad_norm", Value("N"), "Clip the gradients' global L2 norm to N before each update (PyTorch's clip_grad_norm_); the key x switches clipping off and on [default: 0, off]", None, Free),
    s("label_smoothing", Value("EPS"), "Label smoothing of the cross-entropy loss [default: 0]", None, Free),
    s("seed", Value("N"), "Seed of every random choice (init, dropout, split, batch order) [default: 42]", None,
        Fixed("the seed chose the validation split and the batch order the run has followed")),
    s("threads", Value("N"), "Compute threads, at most 8 per core; 0: all cores [default: all cores]", None, Free),
    s("log_every", Value("N"), "Steps between progress records in metrics.jsonl and progress lines [default: 20]", None, Free),
    s("run_dir", Value("DIR"), "Directory for config.toml, metrics.jsonl and checkpoints/ [default: runs/<timestamp>]", None, Free),
    s("keep_last", Value("K"), "Epoch checkpoints (checkpoints/epoch-NNN.h5) kept; older ones are deleted [default: 3]", None, Free),
    s("best_metric", Value("val_acc|val_loss"), "The validation metric that decides checkpoints/best.h5 [default: val_acc]", None, Free),
    s("save_every_steps", Value("N"), "Also save checkpoints/last.h5 every N steps [default: 0, never]", None, Free),
    s("max_steps", Value("N"), "Stop after N steps in total [default: 0, no limit]", None, Free),
    s("early_stop", Value("SPEC"), "End the run when the validation metric has not improved for PATIENCE epochs: PATIENCE[:monitor=val_loss|val_acc][,min_delta=D][,restore_best] (Keras' EarlyStopping); restore_best puts the best epoch's weights back before the test evaluation and last.h5; off to switch it off; live in the schedule editor (e) [default: off]", None, Free),
    s("target_acc", Value("PCT"), "A validation accuracy to aim for, in percent: the header forecasts the epoch that reaches it from the accuracy so far, and an event marks it reached [default: 0, none]", None, Free),
    s("stop_at_target", Switch, "End the run at the epoch whose validation accuracy reaches --target-acc", None, Free),
    s("kernels", Value("fast|stock"), "Hot-path implementation: candle's stock ops, or candletop's fused custom ops (batch norm) [default: fast]", None, Free),
];

/// The setting of a config key.
pub fn setting(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key)
}

impl RunConfig {
    /// A setting's value as a config file holds it, from the text the command line gives:
    /// typed as the setting's default is (a whole number, a number, a switch, text).
    pub fn parse_setting(key: &str, text: &str) -> Result<toml::Value, ConfigError> {
        let bad = |problem: String| ConfigError::Setting {
            flag: format!("--{}", key.replace('_', "-")),
            value: crate::format::shown(text),
            problem,
        };
        let defaults = Self::default().values();
        let value = match defaults.get(key) {
            Some(serde_json::Value::Bool(_)) => text
                .parse::<bool>()
                .map(toml::Value::Boolean)
                .map_err(|_| bad("not true or false".into()))?,
            Some(serde_json::Value::Number(n)) if n.is_f64() => text
                .trim()
                .parse::<f64>()
                .map(toml::Value::Float)
                .map_err(|_| bad("not a number".into()))?,
            Some(serde_json::Value::Number(_)) => text
                .trim()
                .parse::<i64>()
                .map(toml::Value::Integer)
                .map_err(|_| bad(format!("not a whole number from 0 to {}", i64::MAX)))?,
            _ => toml::Value::String(text.to_string()),
        };
        // Checked as its field reads it (a spec parses, a name is one of the choices).
        let mut table = toml::Table::new();
        table.insert(key.to_string(), value.clone());
        let text_of = toml::to_string(&table).map_err(|e| bad(e.to_string()))?;
        toml::from_str::<RunConfig>(&text_of).map_err(|e| {
            let said = crate::format::shown(e.message().lines().next().unwrap_or("invalid"));
            // A spec's parser names the flag and the value itself.
            if said.starts_with(&format!("--{}", key.replace('_', "-"))) {
                ConfigError::Said(said)
            } else {
                bad(said)
            }
        })?;
        Ok(value)
    }

    /// These settings with some changed, each a config key and its value as the command line
    /// gives it ("relu", "true", "c64,c128,f256"); each checked as its flag would be.
    pub fn with_settings(&self, settings: &[(String, String)]) -> Result<Self, ConfigError> {
        let mut table: toml::Table =
            toml::from_str(&self.to_toml()).expect("a RunConfig reads back");
        for (key, value) in settings {
            if setting(key).is_none() {
                return Err(ConfigError::UnknownKey {
                    path: PathBuf::from("(the command line)"),
                    key: crate::format::shown(key),
                });
            }
            table.insert(key.clone(), Self::parse_setting(key, value)?);
        }
        let text = toml::to_string_pretty(&table).expect("a TOML table serialises");
        Self::from_toml(&text)
    }
}

const ARCH_HELP: &str = "Layers, comma-separated [default: c32,c64,f128]

  cOUT[kK][sS][pP][/POOL]   convolution with OUT channels, kernel K (default 3), stride S
                            (default 1), padding P (default K/2); then batch norm (unless
                            --no-batch-norm), the activation, and 2x2 pooling POOL: max
                            (default), avg or none
  fUNITS                    hidden fully connected layer (after the convolutions)

The last layer, one output per class, is always added.
Example: c32k5,c64/avg,c128/none,f256,f64";

const DATA_HELP: &str = "Dataset [default: embedded]

  embedded              10,000 training and 2,000 test images of Fashion-MNIST built into
                        the binary (--val-split holds 1,000 of the training images out for
                        validation by default)
  mnist:DIR             MNIST IDX files (train-images-idx3-ubyte[.gz], t10k-..., gzipped or not)
  fashion-mnist:DIR     Fashion-MNIST IDX files, as MNIST
  cifar10:DIR           CIFAR-10 binary version: data_batch_1..5.bin, test_batch.bin,
                        batches.meta.txt (in DIR or DIR/cifar-10-batches-bin)
  cifar100:DIR          CIFAR-100 binary version: train.bin, test.bin, fine_label_names.txt
                        (in DIR or DIR/cifar-100-binary); 100 fine classes
  cifar100-coarse:DIR   CIFAR-100 with its 20 coarse classes (coarse_label_names.txt)
  folder:DIR            images (png, jpg, jpeg, bmp, gif, webp) in DIR/train/<class>/ with
                        DIR/val/<class>/ and DIR/test/<class>/ when present, or in DIR/<class>/
                        (validation split off by --val-split); classes are the sorted folder
                        names; see --channels, --image-size, --skip-bad-images

`candletop data-info --data SPEC` shows what a source holds.";

const AUGMENT_HELP: &str = "Augmentation of training images, per sample, with torchvision's
semantics [default: none]. SPEC is none or transforms separated by commas, applied in the
order written; normalisation comes after them:

  crop[:S1[-S2]][:R1-R2]  RandomResizedCrop back to the input size: a box of S1..S2 of the area
                          (0.08-1) with aspect ratio R1..R2 (0.75-1.333), bilinear
  pad-crop[:P]            RandomCrop of the input size after zero padding of P pixels (4)
  flip[:P]                RandomHorizontalFlip with probability P (0.5)
  jitter:B[:C[:S[:H]]]    ColorJitter: brightness B, contrast C (B), saturation S (B), hue H (0,
                          at most 0.5); saturation and hue only change RGB images
  rotate[:DEG]            RandomRotation by up to DEG degrees either way (10), nearest, zero fill
  erase[:P]               RandomErasing with probability P (0.5): a box of 2-33% of the area,
                          aspect 0.3-3.3, set to 0 after normalisation (the mean)

Each sample's draws depend only on the seed, the epoch and its place in the epoch: runs repeat
and resume exactly. In the UI, a turns augmentation off and on (without --augment, on means
pad-crop by an eighth of the side and flip) and g shows augmented samples.
Examples: pad-crop:4,flip   crop:0.8,flip,jitter:0.2   flip,rotate:15,erase";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_config_is_declared_once() {
        let keys = RunConfig::keys();
        for k in &keys {
            assert_eq!(
                SETTINGS.iter().filter(|s| s.key == k).count(),
                1,
                "{k} is declared once"
            );
        }
        assert_eq!(SETTINGS.len(), keys.len());
    }

    #[test]
    fn command_line_values_are_typed_by_the_setting() {
        let c = RunConfig::default()
            .with_settings(&[
                ("epochs".into(), "3".into()),
                ("lr".into(), "3e-3".into()),
                ("dropout".into(), "0".into()),
                ("batch_norm".into(), "false".into()),
                ("activation".into(), "tanh".into()),
                ("arch".into(), "1".into()),
            ])
            .unwrap();
        assert_eq!((c.epochs, c.lr.get(), c.dropout), (3, 3e-3, 0.0));
        assert!(!c.batch_norm);
        assert_eq!(c.arch, "1");
        for (key, value, want) in [
            (
                "epochs",
                "x",
                "--epochs x: not a whole number from 0 to 9223372036854775807",
            ),
            (
                "seed",
                "18446744073709551615",
                "--seed 18446744073709551615: not a whole number",
            ),
            ("lr", "0", "--lr 0: '0' is not a positive learning rate"),
            (
                "activation",
                "swish",
                "--activation swish: unknown variant `swish`",
            ),
            ("momentum", "much", "--momentum much: not a number"),
        ] {
            let e = RunConfig::default()
                .with_settings(&[(key.into(), value.into())])
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(want), "{e}");
        }
    }
}
