//! The training thread: the step loop, evaluation, commands between steps, and the events that
//! report all of it.

pub mod optim;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, D};

use crate::config::RunConfig;
use crate::data::batch::{batches_per_epoch, epoch_order};
use crate::data::{Batch, BatchStream, DataSplits, Dataset, Normalization};
use crate::model::{cross_entropy, Cnn, Mode, ModelConfig};
use crate::protocol::{
    Command, EpochMetrics, EvalMetrics, Event, FinishReason, LrSource, RunInfo, StepMetrics,
    TrainerLink,
};
use crate::rng::Rng;
use crate::run_dir::MetricsLog;
use optim::Optimizer;

/// The training thread's name (the UI's panic hook recognises its panics by it).
pub const THREAD_NAME: &str = "candletop-train";

/// Batch size used for evaluation: bigger than training batches, since no gradients are kept.
const EVAL_BATCH: usize = 256;

/// A training run ready to go: model, optimizer and data, built from a validated config.
pub struct Trainer {
    cfg: RunConfig,
    model: Cnn,
    opt: Optimizer,
    rng: Rng,
    lr: f64,
    step: u64,
    epoch: usize,
    train: Arc<Dataset>,
    val: Arc<Dataset>,
    test: Arc<Dataset>,
    norm: Normalization,
    info: RunInfo,
    log: Option<MetricsLog>,
    paused: bool,
    /// Steps the user allowed while paused (`n`).
    single_steps: u32,
    ips: Option<f64>,
    window: Window,
    started: Instant,
}

/// Training loss and accuracy since the last progress record.
#[derive(Default)]
struct Window {
    loss: f64,
    correct: usize,
    seen: usize,
    steps: u64,
}

/// What one call to `train_step` did.
enum StepOutcome {
    Done,
    NonFinite(String),
}

impl Trainer {
    pub fn new(cfg: RunConfig, data: DataSplits) -> Result<Self, crate::Error> {
        let arch = cfg.validate()?;
        let model_cfg = ModelConfig {
            input: [data.train.channels, data.train.height, data.train.width],
            classes: data.classes.len(),
            arch,
            activation: cfg.activation,
            batch_norm: cfg.batch_norm,
            dropout: cfg.dropout,
        };
        let mut rng = Rng::derive(cfg.seed, "init", 0);
        let model = Cnn::new(model_cfg, &mut rng, DType::F32)?;
        let sizes: Vec<usize> = model.params().iter().map(|p| p.var.elem_count()).collect();
        let opt = Optimizer::new(cfg.optimizer, cfg.hyper(), &sizes);
        let info = RunInfo {
            data: data.describe(),
            model: model.summary(),
            param_count: model.param_count(),
            optimizer: describe_optimizer(&cfg),
            layers: model.params().iter().map(|p| p.name.clone()).collect(),
            classes: data.classes.clone(),
            epochs: cfg.epochs,
            steps_per_epoch: batches_per_epoch(data.train.len(), cfg.batch_size),
            batch_size: cfg.batch_size,
            run_dir: String::new(),
        };
        Ok(Self {
            lr: cfg.lr,
            rng: Rng::derive(cfg.seed, "dropout", 0),
            model,
            opt,
            step: 0,
            epoch: 1,
            train: Arc::new(data.train),
            val: Arc::new(data.val),
            test: Arc::new(data.test),
            norm: data.norm,
            info,
            log: None,
            paused: false,
            single_steps: 0,
            ips: None,
            window: Window::default(),
            started: Instant::now(),
            cfg,
        })
    }

    /// Records the run in `metrics.jsonl` of the log's directory.
    pub fn set_log(&mut self, log: MetricsLog) {
        self.info.run_dir = log
            .path()
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        self.log = Some(log);
    }

    pub fn info(&self) -> &RunInfo {
        &self.info
    }

    pub fn model(&self) -> &Cnn {
        &self.model
    }

    /// Runs on a thread of its own; a panic inside becomes an `Error` event.
    pub fn spawn(mut self, mut link: TrainerLink) -> JoinHandle<()> {
        std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || {
                let result =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run(&mut link)));
                let message = match result {
                    Ok(Ok(())) => return,
                    Ok(Err(e)) => e.to_string(),
                    Err(panic) => panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .map(|m| format!("the training thread panicked: {m}"))
                        .unwrap_or_else(|| "the training thread panicked".into()),
                };
                link.send(Event::Error { message });
            })
            .expect("spawning the training thread")
    }

    /// The whole run: every epoch, then the test set. Returns when done, stopped or failed.
    pub fn run(&mut self, link: &mut TrainerLink) -> Result<(), crate::Error> {
        self.started = Instant::now();
        self.emit(link, Event::Started(self.info.clone()));
        while self.epoch <= self.cfg.epochs {
            let order = epoch_order(self.train.len(), self.cfg.seed, self.epoch);
            let batches =
                BatchStream::spawn(self.train.clone(), order, self.cfg.batch_size, 0, self.norm);
            let epoch_started = Instant::now();
            let mut active_secs = 0.0;
            let (mut loss_sum, mut correct, mut seen) = (0.0, 0usize, 0usize);
            for batch in batches {
                if !self.between_steps(link) {
                    return self.finish(link, FinishReason::Stopped);
                }
                let t0 = Instant::now();
                let (outcome, loss, hits) = self.train_step(&batch, link)?;
                active_secs += t0.elapsed().as_secs_f64();
                if let StepOutcome::NonFinite(what) = outcome {
                    self.paused = true;
                    let e = Event::NonFinite {
                        step: self.step,
                        epoch: self.epoch,
                        what,
                    };
                    self.emit(link, e);
                    self.emit(link, Event::Paused { step: self.step });
                    continue;
                }
                loss_sum += loss * batch.len() as f64;
                correct += hits;
                seen += batch.len();
            }
            let _ = epoch_started;
            let (val_loss, val_accuracy, val_class_accuracy, _) =
                self.evaluate(&self.val.clone())?;
            let m = EpochMetrics {
                epoch: self.epoch,
                step: self.step,
                train_loss: loss_sum / seen.max(1) as f64,
                train_accuracy: correct as f64 / seen.max(1) as f64,
                val_loss,
                val_accuracy,
                val_class_accuracy,
                lr: self.lr,
                images_per_sec: seen as f64 / active_secs.max(1e-9),
                elapsed_secs: self.started.elapsed().as_secs_f64(),
            };
            self.emit(link, Event::Epoch(m));
            self.epoch += 1;
        }
        self.epoch = self.cfg.epochs;
        let (loss, accuracy, class_accuracy, images_per_sec) = self.evaluate(&self.test.clone())?;
        let e = Event::Evaluated(EvalMetrics {
            split: "test".into(),
            loss,
            accuracy,
            class_accuracy,
            images_per_sec,
        });
        self.emit(link, e);
        self.finish(link, FinishReason::Completed)
    }

    fn finish(&mut self, link: &mut TrainerLink, reason: FinishReason) -> Result<(), crate::Error> {
        let e = Event::Finished {
            step: self.step,
            epoch: self.epoch,
            reason,
            elapsed_secs: self.started.elapsed().as_secs_f64(),
        };
        self.emit(link, e);
        Ok(())
    }

    /// Applies the commands that arrived; while paused, waits for one that lets a step run.
    /// Returns false when the run must stop.
    fn between_steps(&mut self, link: &mut TrainerLink) -> bool {
        loop {
            while let Some(cmd) = link.try_command() {
                if !self.apply(cmd, link) {
                    return false;
                }
            }
            if !self.paused {
                return true;
            }
            if self.single_steps > 0 {
                self.single_steps -= 1;
                return true;
            }
            match link.wait_command() {
                Some(cmd) => {
                    if !self.apply(cmd, link) {
                        return false;
                    }
                }
                None => return false, // nobody is left to resume the run
            }
        }
    }

    fn apply(&mut self, cmd: Command, link: &mut TrainerLink) -> bool {
        match cmd {
            Command::SetLr(lr) | Command::ScaleLr(lr) if !(lr.is_finite() && lr > 0.0) => {}
            Command::SetLr(lr) => self.set_lr(lr, link),
            Command::ScaleLr(f) => self.set_lr(self.lr * f, link),
            Command::Pause if !self.paused => {
                self.paused = true;
                self.emit(link, Event::Paused { step: self.step });
            }
            Command::Resume if self.paused => {
                self.paused = false;
                self.single_steps = 0;
                self.emit(link, Event::Resumed { step: self.step });
            }
            Command::Step if self.paused => self.single_steps += 1,
            Command::Pause | Command::Resume | Command::Step => {}
            Command::Stop => return false,
        }
        true
    }

    fn set_lr(&mut self, lr: f64, link: &mut TrainerLink) {
        let old = self.lr;
        self.lr = lr;
        self.emit(
            link,
            Event::LrChanged {
                step: self.step,
                old,
                new: lr,
                source: LrSource::User,
            },
        );
    }

    /// Sends an event and records it in metrics.jsonl.
    fn emit(&mut self, link: &mut TrainerLink, e: Event) {
        if let Some(log) = &mut self.log {
            // A failed metrics write must not end the run; it is reported once as an event.
            if let Err(err) = log.write("event", self.step, self.epoch, &e) {
                self.log = None;
                link.send(Event::Error {
                    message: format!("metrics log disabled: {err}"),
                });
            }
        }
        link.send(e);
    }

    /// Forward, backward and optimizer update for one batch. Returns the outcome, the batch loss
    /// and the number of correct predictions.
    fn train_step(
        &mut self,
        batch: &Batch,
        link: &mut TrainerLink,
    ) -> Result<(StepOutcome, f64, usize), crate::Error> {
        let t0 = Instant::now();
        let [c, h, w] = self.model.config().input;
        let x = Tensor::from_slice(&batch.x, (batch.len(), c, h, w), &Device::Cpu)?;
        let logits = self.model.forward(&x, Mode::Train, &mut self.rng)?;
        let loss_t = cross_entropy(&logits, &batch.y, self.cfg.label_smoothing)?;
        let loss = loss_t.to_scalar::<f32>()? as f64;
        let hits = count_correct(&logits, &batch.y)?;
        self.step += 1;
        if !loss.is_finite() {
            return Ok((
                StepOutcome::NonFinite(format!("loss is {loss}")),
                loss,
                hits,
            ));
        }
        let grads = loss_t.backward()?;
        let params = self.model.params().to_vec();
        let mut grad_vecs = Vec::with_capacity(params.len());
        let mut grad_norms = Vec::with_capacity(params.len());
        for p in &params {
            let g: Vec<f32> = match grads.get(p.var.as_tensor()) {
                Some(g) => g.flatten_all()?.to_vec1()?,
                None => vec![0.0; p.var.elem_count()],
            };
            grad_norms.push(l2(&g));
            grad_vecs.push(g);
        }
        if let Some(i) = grad_norms.iter().position(|n| !n.is_finite()) {
            let what = format!("gradient norm of {} is {}", params[i].name, grad_norms[i]);
            return Ok((StepOutcome::NonFinite(what), loss, hits));
        }
        self.opt.begin_step();
        let mut update_ratios = Vec::with_capacity(params.len());
        for (i, (p, g)) in params.iter().zip(&grad_vecs).enumerate() {
            let mut w: Vec<f32> = p.var.flatten_all()?.to_vec1()?;
            let norm_w = l2(&w);
            let delta = self.opt.update(i, &mut w, g, self.lr as f32).sqrt();
            update_ratios.push(if norm_w > 0.0 { delta / norm_w } else { delta });
            p.var
                .set(&Tensor::from_vec(w, p.var.shape(), &Device::Cpu)?)?;
        }
        let ips_now = batch.len() as f64 / t0.elapsed().as_secs_f64().max(1e-9);
        let ips = match self.ips {
            Some(prev) => 0.9 * prev + 0.1 * ips_now,
            None => ips_now,
        };
        self.ips = Some(ips);
        let m = StepMetrics {
            step: self.step,
            epoch: self.epoch,
            steps: 1,
            loss,
            accuracy: hits as f64 / batch.len() as f64,
            lr: self.lr,
            grad_norms,
            update_ratios,
            images_per_sec: ips,
        };
        self.record_progress(&m, hits, batch.len());
        link.send_step(m);
        Ok((StepOutcome::Done, loss, hits))
    }

    /// Every `log_every` steps, a `step` record in metrics.jsonl with the window's means.
    fn record_progress(&mut self, m: &StepMetrics, hits: usize, n: usize) {
        let w = &mut self.window;
        w.loss += m.loss;
        w.correct += hits;
        w.seen += n;
        w.steps += 1;
        if m.step % self.cfg.log_every != 0 {
            return;
        }
        let mut rec = m.clone();
        rec.steps = w.steps as u32;
        rec.loss = w.loss / w.steps as f64;
        rec.accuracy = w.correct as f64 / w.seen.max(1) as f64;
        *w = Window::default();
        if let Some(log) = &mut self.log {
            if log.write("step", m.step, m.epoch, &rec).is_err() {
                self.log = None;
            }
        }
    }

    /// Loss, accuracy, per-class accuracy and images/s of the model in eval mode on `data`.
    pub fn evaluate(
        &mut self,
        data: &Arc<Dataset>,
    ) -> Result<(f64, f64, Vec<f64>, f64), crate::Error> {
        self.evaluate_batched(data, EVAL_BATCH)
    }

    pub fn evaluate_batched(
        &mut self,
        data: &Arc<Dataset>,
        batch_size: usize,
    ) -> Result<(f64, f64, Vec<f64>, f64), crate::Error> {
        let t0 = Instant::now();
        let classes = self.model.config().classes;
        let [c, h, w] = self.model.config().input;
        let (mut loss_sum, mut n) = (0.0, 0usize);
        let mut class_hits = vec![0usize; classes];
        let mut class_n = vec![0usize; classes];
        for batch in BatchStream::sequential(data.clone(), batch_size, self.norm) {
            let x = Tensor::from_slice(&batch.x, (batch.len(), c, h, w), &Device::Cpu)?;
            let logits = self.model.forward(&x, Mode::Eval, &mut self.rng)?.detach();
            let loss = cross_entropy(&logits, &batch.y, 0.0)?.to_scalar::<f32>()? as f64;
            loss_sum += loss * batch.len() as f64;
            n += batch.len();
            let preds: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
            for (&p, &y) in preds.iter().zip(&batch.y) {
                class_n[y as usize] += 1;
                class_hits[y as usize] += usize::from(p == y);
            }
        }
        let per_class = class_hits
            .iter()
            .zip(&class_n)
            .map(|(&h, &n)| h as f64 / n.max(1) as f64)
            .collect();
        let acc = class_hits.iter().sum::<usize>() as f64 / n.max(1) as f64;
        Ok((
            loss_sum / n.max(1) as f64,
            acc,
            per_class,
            n as f64 / t0.elapsed().as_secs_f64().max(1e-9),
        ))
    }

    /// One training step on `batch` without a watcher: for benchmarks and tests.
    pub fn step_once(&mut self, batch: &Batch) -> Result<f64, crate::Error> {
        let (mut link, _monitor) = crate::protocol::link();
        Ok(self.train_step(batch, &mut link)?.1)
    }

    /// The `i`-th training batch of epoch 1 (for benchmarks and tests).
    pub fn training_batch(&self, size: usize) -> Batch {
        let order = epoch_order(self.train.len(), self.cfg.seed, 1);
        BatchStream::spawn(self.train.clone(), order, size, 0, self.norm)
            .next()
            .expect("a non-empty training set")
    }

    pub fn val_set(&self) -> Arc<Dataset> {
        self.val.clone()
    }
}

fn count_correct(logits: &Tensor, labels: &[u32]) -> candle_core::Result<usize> {
    let preds: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
    Ok(preds.iter().zip(labels).filter(|(p, y)| p == y).count())
}

fn l2(xs: &[f32]) -> f64 {
    xs.iter()
        .map(|&x| (x as f64) * (x as f64))
        .sum::<f64>()
        .sqrt()
}

fn describe_optimizer(cfg: &RunConfig) -> String {
    use optim::OptimizerKind::*;
    match cfg.optimizer {
        Sgd => format!(
            "SGD momentum {}{} wd {}",
            cfg.momentum,
            if cfg.nesterov { " nesterov" } else { "" },
            cfg.weight_decay
        ),
        Adam => format!("Adam wd {}", cfg.weight_decay),
        Adamw => format!("AdamW wd {}", cfg.weight_decay),
    }
}
