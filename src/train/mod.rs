//! The training thread: the step loop, evaluation, commands between steps, and the events that
//! report all of it.

pub mod optim;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, D};

use crate::checkpoint::{Checkpoint, CheckpointWriter, DataInfo, Position, SaveKind, SaveResult};
use crate::config::BestMetric;
use crate::config::RunConfig;
use crate::data::batch::{batches_per_epoch, epoch_order};
use crate::data::{Batch, BatchStream, DataSplits, Dataset, Normalization};
use crate::model::profile::{self, Phase};
use crate::model::{cross_entropy, Cnn, Mode};
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
    /// Where in the epoch the trainer is, with the epoch's sums so far.
    pos: Position,
    /// Every finished epoch's metrics, and the user's LR changes (for checkpoints).
    history: Vec<EpochMetrics>,
    lr_changes: Vec<(u64, f64)>,
    /// Set with a run directory: checkpoints go to `<run-dir>/checkpoints`.
    writer: Option<CheckpointWriter>,
    resumed_from: Option<String>,
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
    /// How long the last snapshot held the training thread.
    last_hold_ms: f64,
}

/// Training loss and accuracy since the last progress record.
#[derive(Default)]
struct Window {
    loss: f64,
    correct: usize,
    seen: usize,
    steps: u64,
}

/// Predictions on a whole split.
pub struct Predictions {
    pub loss: f64,
    pub labels: Vec<u32>,
    pub predicted: Vec<u32>,
    /// Row-major, one row of class probabilities per sample.
    pub probabilities: Vec<f32>,
}

/// What one call to `train_step` did.
enum StepOutcome {
    Done,
    NonFinite(String),
}

impl Trainer {
    pub fn new(cfg: RunConfig, data: DataSplits) -> Result<Self, crate::Error> {
        let input = [data.train.channels, data.train.height, data.train.width];
        let model_cfg = cfg.model_config(input, data.classes.len())?;
        let mut rng = Rng::derive(cfg.seed, "init", 0);
        let mut model = Cnn::new(model_cfg, &mut rng, DType::F32)?;
        model.set_kernels(cfg.kernels);
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
            resumed_from: None,
        };
        Ok(Self {
            lr: cfg.lr,
            rng: Rng::derive(cfg.seed, "dropout", 0),
            model,
            opt,
            step: 0,
            epoch: 1,
            pos: Position {
                epoch: 1,
                ..Position::default()
            },
            history: Vec::new(),
            lr_changes: Vec::new(),
            writer: None,
            resumed_from: None,
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
            last_hold_ms: 0.0,
            cfg,
        })
    }

    /// Continues the run a checkpoint describes: weights, optimizer state, LR, RNG, step and
    /// position in the epoch, so that the run goes on exactly as if it had not stopped.
    pub fn resume(
        cfg: RunConfig,
        data: DataSplits,
        ckpt: &Checkpoint,
        from: &std::path::Path,
    ) -> Result<Self, crate::Error> {
        let mut t = Self::new(cfg, data)?;
        let bad = |what: String| crate::Error::Resume(format!("{}: {what}", from.display()));
        if *t.model.config() != ckpt.model_config {
            return Err(bad(format!(
                "the checkpoint's model ({}) differs from this run's ({})",
                ckpt.model_config.arch,
                t.model.config().arch
            )));
        }
        t.model
            .load_state(&ckpt.tensors, &ckpt.counters)
            .map_err(bad)?;
        let sizes: Vec<usize> = t
            .model
            .params()
            .iter()
            .map(|p| p.var.elem_count())
            .collect();
        let state_ok = ckpt.optimizer.state.len() == sizes.len()
            && ckpt.optimizer.state.iter().zip(&sizes).all(|(s, &n)| {
                (s.m.is_empty() || s.m.len() == n) && (s.v.is_empty() || s.v.len() == n)
            });
        if !state_ok {
            return Err(bad("the optimizer state does not fit the model".into()));
        }
        if ckpt.optimizer.kind == t.opt.kind {
            t.opt.state.clone_from(&ckpt.optimizer.state);
            t.opt.steps = ckpt.optimizer.steps;
        }
        t.rng = Rng::from_state(ckpt.rng);
        t.lr = ckpt.lr;
        t.step = ckpt.global_step;
        t.epoch = ckpt.position.epoch.max(1);
        t.pos = ckpt.position;
        t.history.clone_from(&ckpt.epochs);
        t.lr_changes.clone_from(&ckpt.lr_changes);
        t.norm = Normalization {
            mean: ckpt.data.mean,
            std: ckpt.data.std,
        };
        t.resumed_from = Some(from.display().to_string());
        t.info.resumed_from = t.resumed_from.clone();
        Ok(t)
    }

    /// Records the run in `<dir>/metrics.jsonl` and saves checkpoints in `<dir>/checkpoints`.
    pub fn set_run_dir(&mut self, dir: &std::path::Path) -> Result<(), crate::Error> {
        std::fs::create_dir_all(dir).map_err(|source| crate::run_dir::RunDirError {
            path: dir.to_path_buf(),
            source,
        })?;
        let log = MetricsLog::create(dir)?;
        let ckpt_dir = dir.join("checkpoints");
        let writer =
            CheckpointWriter::spawn(ckpt_dir.clone(), self.cfg.keep_last).map_err(|source| {
                crate::run_dir::RunDirError {
                    path: ckpt_dir,
                    source,
                }
            })?;
        self.info.run_dir = dir.display().to_string();
        self.log = Some(log);
        self.writer = Some(writer);
        Ok(())
    }

    /// Everything needed to resume from here. Taken between two steps.
    pub fn snapshot(&self) -> Result<Checkpoint, crate::Error> {
        let (tensors, counters) = self.model.state()?;
        Ok(Checkpoint {
            created: chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            global_step: self.step,
            model_config: self.model.config().clone(),
            train_config: self.cfg.clone(),
            classes: self.info.classes.clone(),
            data: DataInfo {
                source: self.cfg.data.to_string(),
                mean: self.norm.mean,
                std: self.norm.std,
            },
            tensors,
            counters,
            optimizer: self.opt.clone(),
            param_names: self.model.params().iter().map(|p| p.name.clone()).collect(),
            lr: self.lr,
            rng: self.rng.state(),
            position: self.pos,
            epochs: self.history.clone(),
            lr_changes: self.lr_changes.clone(),
        })
    }

    /// Hands a snapshot to the background writer (no-op without a run directory).
    fn save(&mut self, kinds: &[SaveKind], link: &mut TrainerLink) -> Result<(), crate::Error> {
        if self.writer.is_none() {
            return Ok(());
        }
        let t0 = Instant::now();
        let ckpt = Arc::new(self.snapshot()?);
        self.last_hold_ms = t0.elapsed().as_secs_f64() * 1000.0;
        if let Some(w) = &self.writer {
            for k in kinds {
                w.save(ckpt.clone(), k.clone());
            }
        }
        self.poll_saves(link);
        Ok(())
    }

    /// Reports the saves the writer has finished.
    fn poll_saves(&mut self, link: &mut TrainerLink) {
        let done: Vec<SaveResult> = match &self.writer {
            Some(w) => std::iter::from_fn(|| w.try_result()).collect(),
            None => return,
        };
        for r in done {
            self.report_save(r, link);
        }
    }

    fn report_save(&mut self, r: SaveResult, link: &mut TrainerLink) {
        let path = r.path.display().to_string();
        let e = match r.outcome {
            Ok((bytes, secs)) => Event::CheckpointSaved {
                step: r.step,
                path,
                bytes,
                write_secs: secs,
                hold_ms: self.last_hold_ms,
            },
            Err(error) => Event::CheckpointFailed {
                step: r.step,
                path,
                error,
            },
        };
        self.emit(link, e);
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
        // Elapsed times count from this start (a resumed run starts its clock again).
        self.started = Instant::now();
        self.emit(link, Event::Started(self.info.clone()));
        while self.epoch <= self.cfg.epochs {
            let order = epoch_order(self.train.len(), self.cfg.seed, self.epoch);
            let batches = BatchStream::spawn(
                self.train.clone(),
                order,
                self.cfg.batch_size,
                self.pos.batch,
                self.norm,
            );
            for batch in batches {
                self.poll_saves(link);
                if self.cfg.max_steps > 0 && self.step >= self.cfg.max_steps {
                    return self.finish(link, FinishReason::Stopped);
                }
                if !self.between_steps(link)? {
                    return self.finish(link, FinishReason::Stopped);
                }
                let t0 = Instant::now();
                let (outcome, loss, hits) = self.train_step(&batch, link)?;
                self.pos.active_secs += t0.elapsed().as_secs_f64();
                self.pos.batch = batch.index + 1;
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
                self.pos.loss_sum += loss * batch.len() as f64;
                self.pos.correct += hits as u64;
                self.pos.seen += batch.len() as u64;
                if self.cfg.save_every_steps > 0 && self.step % self.cfg.save_every_steps == 0 {
                    self.save(&[SaveKind::Last], link)?;
                }
            }
            let (val_loss, val_accuracy, val_class_accuracy, _) =
                self.evaluate(&self.val.clone())?;
            let p = self.pos;
            let m = EpochMetrics {
                epoch: self.epoch,
                step: self.step,
                train_loss: p.loss_sum / p.seen.max(1) as f64,
                train_accuracy: p.correct as f64 / p.seen.max(1) as f64,
                val_loss,
                val_accuracy,
                val_class_accuracy,
                lr: self.lr,
                images_per_sec: p.seen as f64 / p.active_secs.max(1e-9),
                elapsed_secs: self.started.elapsed().as_secs_f64(),
            };
            let improved = self.improves(&m);
            self.history.push(m.clone());
            self.emit(link, Event::Epoch(m));
            self.epoch += 1;
            self.pos = Position {
                epoch: self.epoch,
                ..Position::default()
            };
            let mut kinds = vec![SaveKind::Epoch(self.epoch - 1)];
            if improved {
                kinds.push(SaveKind::Best);
            }
            self.save(&kinds, link)?;
        }
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

    /// True when `m` beats every earlier epoch on the chosen validation metric.
    fn improves(&self, m: &EpochMetrics) -> bool {
        match self.cfg.best_metric {
            BestMetric::ValAcc => self.history.iter().all(|e| m.val_accuracy > e.val_accuracy),
            BestMetric::ValLoss => self.history.iter().all(|e| m.val_loss < e.val_loss),
        }
    }

    /// Saves `last.h5`, waits for the writer, then reports the end.
    fn finish(&mut self, link: &mut TrainerLink, reason: FinishReason) -> Result<(), crate::Error> {
        self.save(&[SaveKind::Last], link)?;
        let rest = self.writer.as_mut().map(|w| w.finish()).unwrap_or_default();
        for r in rest {
            self.report_save(r, link);
        }
        let e = Event::Finished {
            step: self.step,
            epoch: self.epoch.min(self.cfg.epochs),
            reason,
            elapsed_secs: self.started.elapsed().as_secs_f64(),
        };
        self.emit(link, e);
        Ok(())
    }

    /// Applies the commands that arrived; while paused, waits for one that lets a step run.
    /// Returns false when the run must stop.
    fn between_steps(&mut self, link: &mut TrainerLink) -> Result<bool, crate::Error> {
        loop {
            while let Some(cmd) = link.try_command() {
                if !self.apply(cmd, link)? {
                    return Ok(false);
                }
            }
            if !self.paused {
                return Ok(true);
            }
            if self.single_steps > 0 {
                self.single_steps -= 1;
                return Ok(true);
            }
            // While paused, saves finishing are still reported promptly.
            match link.wait_command_timeout(std::time::Duration::from_millis(200)) {
                Ok(cmd) => {
                    if !self.apply(cmd, link)? {
                        return Ok(false);
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => self.poll_saves(link),
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return Ok(false), // nobody is left to resume the run
            }
        }
    }

    fn apply(&mut self, cmd: Command, link: &mut TrainerLink) -> Result<bool, crate::Error> {
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
            Command::Save => self.save(&[SaveKind::Last], link)?,
            Command::Stop => return Ok(false),
        }
        Ok(true)
    }

    fn set_lr(&mut self, lr: f64, link: &mut TrainerLink) {
        let old = self.lr;
        self.lr = lr;
        self.lr_changes.push((self.step, lr));
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
        let mut grad_tensors = Vec::with_capacity(params.len());
        let mut grad_norms = Vec::with_capacity(params.len());
        for p in &params {
            let g = match grads.get(p.var.as_tensor()) {
                Some(g) => g.contiguous()?,
                None => p.var.zeros_like()?,
            };
            grad_norms.push(l2_of(&g)?);
            grad_tensors.push(g);
        }
        if let Some(i) = grad_norms.iter().position(|n| !n.is_finite()) {
            let what = format!("gradient norm of {} is {}", params[i].name, grad_norms[i]);
            return Ok((StepOutcome::NonFinite(what), loss, hits));
        }
        self.opt.begin_step();
        let mut update_ratios = Vec::with_capacity(params.len());
        let label = || format!("optimizer ({})", self.cfg.optimizer.name());
        profile::time(label, Phase::Forward, 0.0, || -> candle_core::Result<()> {
            for (i, (p, g)) in params.iter().zip(&grad_tensors).enumerate() {
                let (norm_w, delta) =
                    self.opt
                        .update_tensor(i, p.var.as_tensor(), g, self.lr as f32)?;
                update_ratios.push(if norm_w > 0.0 { delta / norm_w } else { delta });
            }
            Ok(())
        })?;
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

    pub fn train_set(&self) -> Arc<Dataset> {
        self.train.clone()
    }

    pub fn val_set(&self) -> Arc<Dataset> {
        self.val.clone()
    }

    pub fn test_set(&self) -> Arc<Dataset> {
        self.test.clone()
    }

    /// The model's predictions on `data` in eval mode: softmax probabilities and mean loss.
    pub fn predict(&mut self, data: &Arc<Dataset>) -> Result<Predictions, crate::Error> {
        let [c, h, w] = self.model.config().input;
        let mut p = Predictions {
            loss: 0.0,
            labels: Vec::new(),
            predicted: Vec::new(),
            probabilities: Vec::new(),
        };
        for batch in BatchStream::sequential(data.clone(), EVAL_BATCH, self.norm) {
            let x = Tensor::from_slice(&batch.x, (batch.len(), c, h, w), &Device::Cpu)?;
            let logits = self.model.forward(&x, Mode::Eval, &mut self.rng)?.detach();
            p.loss += cross_entropy(&logits, &batch.y, 0.0)?.to_scalar::<f32>()? as f64
                * batch.len() as f64;
            p.predicted
                .extend(logits.argmax(D::Minus1)?.to_vec1::<u32>()?);
            p.probabilities.extend(
                candle_nn::ops::softmax_last_dim(&logits)?
                    .flatten_all()?
                    .to_vec1::<f32>()?,
            );
            p.labels.extend_from_slice(&batch.y);
        }
        p.loss /= p.labels.len().max(1) as f64;
        Ok(p)
    }
}

fn count_correct(logits: &Tensor, labels: &[u32]) -> candle_core::Result<usize> {
    let preds: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
    Ok(preds.iter().zip(labels).filter(|(p, y)| p == y).count())
}

/// The L2 norm of a contiguous f32 tensor, read in place.
fn l2_of(t: &Tensor) -> candle_core::Result<f64> {
    let (s, l) = t.storage_and_layout();
    Ok(optim::l2(crate::model::cpu::slice::<f32>(&s, l, "l2")?))
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
