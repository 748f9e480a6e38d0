//! The trainer's side of a what-if comparison: the fork, the branch's step on the main line's
//! batch (or the same images with its own augmentation), the verdict, the line kept, the
//! line left saved as a run of its own, and comparisons left unfinished.

use super::{branch, eval, TrainError, Trainer, EVAL_BATCH};
use crate::checkpoint::SaveKind;
use crate::data::{AugmentSpec, Batch, BatchStream, ClassWeights, Loader};
use crate::protocol::{Command, Event, Horizon, Record, ScheduleChange, Setting, StepMetrics};
use crate::run_dir::{MetricsLog, RunDir};

impl Trainer {
    /// Forks the run: a branch with `change` trains on the same batches until `horizon`; the
    /// refusal when it cannot. `last.h5` is saved at the fork, so that a process killed during
    /// the comparison resumes from the main line with the branch recorded as abandoned.
    pub(super) fn fork(
        &mut self,
        change: &[Setting],
        horizon: Horizon,
        ask: bool,
    ) -> Result<Option<String>, TrainError> {
        if self.branch.is_some() {
            return Ok(Some("a comparison is already under way".into()));
        }
        let step = self.progress.step;
        let until = match horizon {
            Horizon::Epoch => self.progress.epoch as u64 * self.info.steps_per_epoch as u64,
            Horizon::Steps(n) => step.saturating_add(n),
            Horizon::Open => u64::MAX,
        }
        .min(self.last_step());
        if until <= step {
            return Ok(Some("no step is left for a branch to take".into()));
        }
        let line = match self.fork_line(change) {
            Ok(line) => line,
            Err(problem) => return Ok(Some(problem)),
        };
        let change = change.to_vec();
        self.branch = Some(branch::Fork {
            line,
            change: change.clone(),
            forked_at: step,
            until,
            horizon,
            ask,
            comparison: branch::Comparison::default(),
            batches: None,
            awaiting: None,
            paused_for_it: false,
        });
        self.progress.branches.push(crate::protocol::BranchRecord {
            forked_at: step,
            until,
            change: change.clone(),
            verdict: None,
            kept_branch: None,
            saved: None,
            abandoned_at: None,
        });
        self.emit(Event::Forked {
            step,
            change,
            until,
            horizon,
            ask,
        });
        self.save(&[SaveKind::Last])?;
        Ok(None)
    }

    /// The branch's step on the main line's batch (or the same images with its own
    /// augmentation), after the main line's step that had `main_loss`.
    pub(super) fn branch_step(
        &mut self,
        batch: &Batch,
        main_loss: f64,
    ) -> Result<Option<crate::protocol::BranchStep>, TrainError> {
        let step = self.progress.step;
        let epoch = self.progress.epoch;
        let own = match self.branch.as_ref() {
            Some(f) if f.awaiting.is_none() => f.line.augment.clone(),
            _ => return Ok(None),
        };
        let own_batch = match own {
            Some(augment) => Some(self.branch_batch(batch, epoch, augment)?),
            None => None,
        };
        let Some(f) = self.branch.as_mut() else {
            return Ok(None);
        };
        let theirs = own_batch.as_ref().unwrap_or(batch);
        let (loss, hits) = f.line.step(theirs, step)?;
        f.comparison.push(main_loss, loss);
        Ok(Some(crate::protocol::BranchStep {
            loss,
            accuracy: hits as f64 / theirs.len() as f64,
            steps: 1,
        }))
    }

    /// The images of `batch` as the branch's augmentation makes them, from a stream of its
    /// own that follows the main line's (started again when the main line's is).
    fn branch_batch(
        &mut self,
        batch: &Batch,
        epoch: usize,
        augment: AugmentSpec,
    ) -> Result<Batch, TrainError> {
        if let Some(b) = self
            .branch
            .as_mut()
            .and_then(|f| next_of(f, epoch, batch.index))
        {
            return b;
        }
        // None yet, of another epoch, or out of step with the main line's (started again).
        let stream = BatchStream::spawn(
            self.data.train.clone(),
            self.epoch_order(epoch),
            self.cfg.batch_size,
            batch.index,
            Loader {
                augment,
                ..self.data.loader(self.cfg.seed, epoch)
            },
        );
        let Some(f) = self.branch.as_mut() else {
            unreachable!("a branch steps only while there is one")
        };
        f.batches = Some((epoch, stream));
        next_of(f, epoch, batch.index).expect("a stream started at a batch gives that batch first")
    }

    /// The comparison's end: both lines validated and the verdict. When a watcher was to be
    /// asked, the run pauses for its decision; else the better line goes on (the branch only
    /// when it is better beyond the noise).
    pub(super) fn end_branch(&mut self) -> Result<(), TrainError> {
        let Some(f) = self.branch.as_mut() else {
            return Ok(());
        };
        let Some(v) = f.comparison.verdict() else {
            return Ok(());
        };
        let val = self.data.val.clone();
        let norm = self.data.norm.clone();
        let theirs = eval::evaluate(&mut f.line.learner.model, &val, &norm, EVAL_BATCH)?;
        let main = self.evaluate(&val, EVAL_BATCH)?;
        let Some(f) = self.branch.as_mut() else {
            return Ok(());
        };
        let ask = f.ask;
        let verdict = crate::protocol::BranchVerdict {
            change: f.change.clone(),
            forked_at: f.forked_at,
            steps: v.steps as u64,
            main_loss: v.main,
            branch_loss: v.branch,
            diff: v.diff,
            noise: v.noise,
            call: v.call,
            main_val_loss: main.loss,
            main_val_accuracy: main.accuracy,
            branch_val_loss: theirs.loss,
            branch_val_accuracy: theirs.accuracy,
            kept_branch: !ask && v.call == crate::protocol::BranchCall::Better,
            awaiting: ask,
        };
        f.batches = None;
        if let Some(r) = self.progress.branches.last_mut() {
            r.verdict = Some(verdict.clone());
        }
        let step = self.progress.step;
        self.emit(Event::BranchVerdict {
            step,
            verdict: verdict.clone(),
        });
        if !ask {
            return self.take_line(verdict.kept_branch, false, false);
        }
        let paused = self.control.paused;
        if let Some(f) = self.branch.as_mut() {
            f.awaiting = Some(verdict);
            f.paused_for_it = !paused;
        }
        if !paused {
            self.control.paused = true;
            self.emit(Event::Paused { step });
        }
        Ok(())
    }

    /// Whether the run waits for a watcher to keep one line of a comparison.
    pub(super) fn awaiting_decision(&self) -> bool {
        self.branch.as_ref().is_some_and(|f| f.awaiting.is_some())
    }

    /// A watcher's decision on a comparison that waits for one; the refusal when none does.
    pub(super) fn keep_line(
        &mut self,
        branch: bool,
        save_other: bool,
    ) -> Result<Option<String>, TrainError> {
        if !self.awaiting_decision() {
            return Ok(Some(match &self.branch {
                Some(_) => "the comparison is still under way (b ends it now)".into(),
                None => "no comparison waits for a decision".into(),
            }));
        }
        if save_other && self.saver.is_none() {
            return Ok(Some(
                "this run has no run directory to save the other line beside".into(),
            ));
        }
        self.take_line(branch, save_other, true)?;
        Ok(None)
    }

    /// Goes on with the branch (`branch`) or the main line; with `save_other` the line left
    /// is saved as a run directory of its own. `said`: a watcher decided (else the verdict).
    pub(super) fn take_line(
        &mut self,
        branch: bool,
        save_other: bool,
        said: bool,
    ) -> Result<(), TrainError> {
        let Some(f) = self.branch.take() else {
            return Ok(());
        };
        let step = self.progress.step;
        let change = f.change.clone();
        let resume = f.paused_for_it;
        let mut line = f.line;
        if branch {
            // The main line's learner and schedule go to `line`, and the branch's settings
            // are said as the live switches say them.
            std::mem::swap(&mut self.learner, &mut line.learner);
            let main = self.schedule.clone();
            self.use_schedule(std::mem::replace(&mut line.schedule, main));
            self.emit_schedule(ScheduleChange::Set);
            self.cfg.label_smoothing = self.learner.label_smoothing;
            self.cfg.dropout = self.learner.model.config().dropout;
            self.cfg.optimizer.hyper.weight_decay = self.learner.opt.hyper.weight_decay;
            let clip = self.learner.clip_grad_norm.take();
            self.learner.clip_grad_norm = line.learner.clip_grad_norm;
            self.set_clip(clip.unwrap_or(0.0));
            let weights = self.learner.class_weights.take();
            self.learner.class_weights = line.learner.class_weights.clone();
            self.set_class_weights(weights.is_some());
            if let Some(a) = line.augment.take() {
                let on = !a.transforms.is_empty();
                if on {
                    self.data.augment = a;
                }
                self.data.augmenting = !on;
                self.set_augment(on);
            }
            // A non-finite step now rolls back to the branch, not to the main line.
            self.last_good = Some(self.keep()?);
        }
        let saved = if save_other {
            self.save_line(&line, !branch)
        } else {
            None
        };
        if let Some(r) = self.progress.branches.last_mut() {
            r.kept_branch = Some(branch);
            r.saved.clone_from(&saved);
        }
        if said {
            self.emit(Event::BranchKept {
                step,
                change,
                branch,
                saved,
            });
        }
        if resume && self.control.paused {
            self.control.paused = false;
            self.control.single_steps = 0;
            self.emit(Event::Resumed { step });
        }
        Ok(())
    }

    /// Saves `line` (the branch when `is_branch`, else the main line) as a run directory of
    /// its own beside this one: its settings, its checkpoint, and the records of this run up to
    /// the fork followed by the line's own. The directory, or None when it could not be
    /// written (said as a warning; the run goes on).
    fn save_line(&mut self, line: &branch::Line, is_branch: bool) -> Option<String> {
        let step = self.progress.step;
        match self.write_line(line, is_branch) {
            Ok(dir) => Some(dir),
            Err(e) => {
                let which = if is_branch { "branch" } else { "main line" };
                self.emit(Event::Warning {
                    step,
                    message: format!("the {which} could not be saved as a run of its own: {e}"),
                });
                None
            }
        }
    }

    /// `save_line`'s work: a new directory beside this run's, removed again when something in
    /// it cannot be written (a full disk leaves no half run behind).
    fn write_line(&self, line: &branch::Line, is_branch: bool) -> Result<String, String> {
        let suffix = if is_branch { "branch" } else { "main" };
        let base = format!("{}-{suffix}", self.info.run_dir.trim_end_matches('/'));
        let mut path = std::path::PathBuf::from(&base);
        let mut n = 2;
        while path.exists() {
            path = format!("{base}-{n}").into();
            n += 1;
        }
        let dir = RunDir::new(&path);
        dir.create().map_err(|e| e.to_string())?;
        match self.fill_line_dir(line, is_branch, &dir) {
            Ok(()) => Ok(path.display().to_string()),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&path);
                Err(e)
            }
        }
    }

    /// The line's settings, records and checkpoint in `dir`.
    fn fill_line_dir(
        &self,
        line: &branch::Line,
        is_branch: bool,
        dir: &RunDir,
    ) -> Result<(), String> {
        let here = RunDir::new(&self.info.run_dir);
        let mut cfg = self.cfg.clone();
        cfg.schedule = line.schedule.spec.clone();
        cfg.label_smoothing = line.learner.label_smoothing;
        cfg.dropout = line.learner.model.config().dropout;
        cfg.run_dir = Some(dir.path().to_path_buf());
        cfg.optimizer.hyper.weight_decay = line.learner.opt.hyper.weight_decay;
        cfg.clip_grad_norm = line.learner.clip_grad_norm.unwrap_or(0.0);
        cfg.class_weights = match line.learner.class_weights {
            Some(_) => ClassWeights::Balanced,
            None => ClassWeights::None,
        };
        let augmenting = match &line.augment {
            Some(a) if !a.transforms.is_empty() => {
                cfg.augment = a.clone();
                true
            }
            Some(_) => false,
            None => self.data.augmenting,
        };
        cfg.save_in(dir).map_err(|e| e.to_string())?;
        // The records: this run's up to the fork, then the line's own.
        let forked_at = self.progress.branches.last().map_or(0, |r| r.forked_at);
        let records = here.read_records().map_err(|e| e.to_string())?;
        let mut log = MetricsLog::create(dir).map_err(|e| e.to_string())?;
        for r in records.records {
            let record = match r.record {
                Record::Step(m) if is_branch && r.step > forked_at => match m.branch {
                    Some(b) => Record::Step(StepMetrics {
                        loss: b.loss,
                        loss_max: b.loss,
                        accuracy: b.accuracy,
                        lr: line.schedule.lr_at(m.step),
                        grad_norms: Vec::new(),
                        update_ratios: Vec::new(),
                        branch: None,
                        ..m
                    }),
                    None => continue,
                },
                // The main line's epochs after the fork are not the branch's.
                Record::Event(Event::Epoch(_)) if is_branch && r.step > forked_at => continue,
                other => other,
            };
            log.write(r.step, r.epoch, &record)
                .map_err(|e| e.to_string())?;
        }
        // It ends here, stopped: `ls` lists it so, and `--resume` takes it on.
        let (step, epoch) = (self.progress.step, self.progress.epoch);
        let end = Event::Finished {
            step,
            epoch: epoch.min(self.cfg.epochs),
            reason: crate::protocol::FinishReason::Stopped,
            elapsed_secs: self.started.elapsed().as_secs_f64(),
        };
        log.write(step, epoch, &Record::Event(end))
            .map_err(|e| e.to_string())?;
        let mut ckpt = self
            .snapshot_of(&line.learner, &line.schedule, &cfg)
            .map_err(|e| e.to_string())?;
        ckpt.data.augmenting = Some(augmenting);
        // Its history, from its own side: this line went on here, the other in this run.
        if let Some(r) = ckpt.branches.last_mut() {
            r.kept_branch = Some(is_branch);
            r.saved = Some(self.info.run_dir.clone());
        }
        std::fs::create_dir_all(dir.checkpoints()).map_err(|e| e.to_string())?;
        let last = dir.checkpoints().join(SaveKind::Last.file_name());
        crate::checkpoint::writer::write_atomic(&ckpt, &last).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Records every comparison still open as abandoned at this step, and says so.
    pub(super) fn abandon_branches(&mut self, why: &str) {
        let step = self.progress.step;
        let mut said = Vec::new();
        for r in self.progress.branches.iter_mut().filter(|r| r.is_open()) {
            r.abandoned_at = Some(step);
            said.push(Event::BranchAbandoned {
                step,
                forked_at: r.forked_at,
                change: r.change.clone(),
                why: why.into(),
            });
        }
        for e in said {
            self.emit(e);
        }
    }

    /// A what-if line forked from the run as it is now, with `change` from the next step
    /// on: the problem, naming the setting, when it cannot be made.
    pub fn fork_line(&self, change: &[Setting]) -> Result<branch::Line, String> {
        let mut line =
            branch::Line::fork(&self.learner, &self.schedule).map_err(|e| e.to_string())?;
        self.change_line(&mut line, change)?;
        Ok(line)
    }

    /// Applies `change` to `line` from the next step on.
    fn change_line(&self, line: &mut branch::Line, change: &[Setting]) -> Result<(), String> {
        let schedule = |text: &str| {
            self.new_schedule(text)
                .map_err(|e| format!("schedule={text}: {e}"))
        };
        let run = branch::RunSide {
            augment: &self.data.augment,
            balanced_weights: &self.data.balanced_weights,
            schedule: &schedule,
        };
        line.apply(change, self.progress.step + 1, &run)?;
        // Its augmentation, when it is the main line's, is no augmentation of its own.
        let main = self.data.augmenting.then(|| self.data.augment.clone());
        if line
            .augment
            .as_ref()
            .map(|a| (!a.transforms.is_empty()).then(|| a.clone()))
            == Some(main)
        {
            line.augment = None;
        }
        Ok(())
    }

    /// Whether a comparison is under way (both lines training).
    pub(super) fn comparing(&self) -> bool {
        self.branch.as_ref().is_some_and(|f| f.awaiting.is_none())
    }

    /// A live change while a comparison runs goes to the branch: the main line stays the
    /// control. The refusal when it cannot be made.
    pub(super) fn change_branch(&mut self, cmd: &Command) -> Option<String> {
        let next = self.progress.step + 1;
        let lr_now = self.branch.as_ref()?.line.schedule.lr_at(next);
        let on_off = |on: bool, yes: &str, no: &str| if on { yes } else { no }.to_string();
        let s = match cmd {
            Command::SetLr(lr) => Setting::new("lr", lr),
            Command::ScaleLr(f) if !(f.is_finite() && *f > 0.0) => {
                return Some(format!("{f} is not a positive factor"))
            }
            Command::ScaleLr(f) => Setting::new("lr", crate::format::sci(lr_now * f)),
            Command::SetSchedule(spec) => Setting::new("schedule", spec),
            Command::SetAugment(on) => Setting::new("augment", on_off(*on, "on", "off")),
            Command::SetClassWeights(on) => {
                Setting::new("class_weights", on_off(*on, "balanced", "none"))
            }
            Command::SetClipGradNorm(m) => Setting::new("clip_grad_norm", m),
            _ => return None,
        };
        let mut f = self.branch.take()?;
        let applied = self.change_line(&mut f.line, std::slice::from_ref(&s));
        if applied.is_ok() {
            // The branch's own batches start again with its new augmentation.
            f.batches = None;
            match f.change.iter_mut().find(|c| c.key == s.key) {
                Some(c) => c.value = s.value,
                None => f.change.push(s),
            }
        }
        let change = f.change.clone();
        self.branch = Some(f);
        if let Err(problem) = applied {
            return Some(problem);
        }
        if let Some(r) = self.progress.branches.last_mut() {
            r.change.clone_from(&change);
        }
        let step = self.progress.step;
        self.emit(Event::BranchChanged { step, change });
        None
    }
}

/// The branch's next batch of its own, when its stream is of `epoch` and at batch `index`.
fn next_of(f: &mut branch::Fork, epoch: usize, index: usize) -> Option<Result<Batch, TrainError>> {
    let (e, stream) = f.batches.as_mut()?;
    if *e != epoch {
        return None;
    }
    match stream.next()? {
        Ok(b) if b.index == index => Some(Ok(b)),
        Ok(_) => None,
        Err(e) => Some(Err(e.into())),
    }
}
