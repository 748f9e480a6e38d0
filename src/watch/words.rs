//! How the event log words the run: the lines each event adds. `RunState::on_event` folds an
//! event into the state, then logs what this says of it; the wording reads only the event and
//! the little of the run it names (`Context`).

use serde::{Deserialize, Serialize};

use crate::format::{clock, human_bytes, sci};
use crate::protocol::{
    Command, Event, FinishReason, OnNonFinite, RunInfo, Severity, REMEDY_TRIAL_STEPS,
};

/// What a log line is, for its colour and mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogKind {
    /// The run's landmarks: start, epochs, test set, end.
    Milestone,
    Info,
    /// Something the user did.
    Action,
    Warning,
    Error,
}

/// What the wording needs of the run besides the event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Context {
    /// The latest step (for events that carry none).
    pub step: u64,
    /// The run's epochs, once it started.
    pub epochs: Option<usize>,
}

/// One line of the event log: at which step, what kind, the words.
pub type Said = (u64, LogKind, String);

/// The lines `e` adds to the event log.
pub fn lines(e: &Event, run: Context) -> Vec<Said> {
    match e {
        Event::Started(info) => started(info),
        Event::LrChanged { .. }
        | Event::ScheduleChanged { .. }
        | Event::PlateauCut { .. }
        | Event::LrFound { .. } => lr(e),
        Event::StoppingChanged { .. }
        | Event::EarlyStopped { .. }
        | Event::TargetReached { .. } => stopping(e),
        Event::AugmentChanged { .. }
        | Event::ClippingChanged { .. }
        | Event::ClassWeightsChanged { .. } => switches(e),
        Event::Finding { .. }
        | Event::RemedyApplied { .. }
        | Event::RemedyUndone { .. }
        | Event::RemedyVerdict { .. }
        | Event::ConfigSuggested { .. } => doctor(e),
        Event::Forked { .. }
        | Event::BranchVerdict { .. }
        | Event::BranchKept { .. }
        | Event::BranchChanged { .. }
        | Event::BranchAbandoned { .. } => branch(e),
        Event::Paused { .. }
        | Event::Resumed { .. }
        | Event::NonFinite { .. }
        | Event::Finished { .. }
        | Event::Refused { .. } => run_control(e),
        Event::Epoch(m) => one(
            m.step,
            LogKind::Milestone,
            format!(
                "epoch {}/{}: val loss {:.4} acc {:.2}%, train loss {:.4} acc {:.2}%, lr {}, {:.0} img/s, {}",
                m.epoch,
                run.epochs.unwrap_or(m.epoch),
                m.val_loss,
                100.0 * m.val_accuracy,
                m.train_loss,
                100.0 * m.train_accuracy,
                sci(m.lr),
                m.images_per_sec,
                clock(m.elapsed_secs)
            ),
        ),
        Event::Evaluated(m) => one(
            run.step,
            LogKind::Milestone,
            format!(
                "{} set: loss {:.4} acc {:.2}%",
                m.split,
                m.loss,
                100.0 * m.accuracy
            ),
        ),
        Event::CheckpointSaved {
            step,
            path,
            bytes,
            write_secs,
            ..
        } => one(
            *step,
            LogKind::Action,
            format!(
                "saved {} ({}, {:.0} ms)",
                file_name(path),
                human_bytes(*bytes),
                write_secs * 1000.0
            ),
        ),
        Event::CheckpointFailed {
            step, path, reason, ..
        } => one(
            *step,
            LogKind::Error,
            format!(
                "could not save {}: {reason}; training goes on",
                file_name(path)
            ),
        ),
        Event::Warning { step, message } => {
            one(*step, LogKind::Warning, format!("warning: {message}"))
        }
        Event::Error { message } => one(run.step, LogKind::Error, format!("error: {message}")),
        Event::LrFinderProgress { .. } | Event::Samples { .. } | Event::Activations { .. } => {
            vec![]
        }
    }
}

/// The run's course: paused, resumed, a non-finite step, a refused command, the end.
fn run_control(e: &Event) -> Vec<Said> {
    match e {
        Event::Refused {
            step,
            command,
            reason,
        } => one(
            *step,
            LogKind::Warning,
            format!("refused {}: {reason}", describe(command)),
        ),
        Event::Paused { step } => one(*step, LogKind::Action, "paused".into()),
        Event::Resumed { step } => one(*step, LogKind::Action, "resumed".into()),
        Event::NonFinite {
            step,
            what,
            then,
            rolled_back_to,
            lr,
            ..
        } => {
            let back = match rolled_back_to {
                Some(good) => format!("rolled back to the weights and optimizer of step {good}"),
                None => "the update was skipped".into(),
            };
            let then = match (then, lr) {
                (OnNonFinite::Pause, _) => {
                    format!("{back}; paused: cut the LR (r or -), then p resumes")
                }
                (OnNonFinite::Stop, _) if rolled_back_to.is_some() => {
                    format!("{back}; no rollbacks left (--max-rollbacks): the run stops")
                }
                (OnNonFinite::Stop, _) => {
                    "the update was skipped and the run stops with the last good weights".into()
                }
                (OnNonFinite::Rollback, Some(lr)) => {
                    format!("{back}; going on with lr {}", sci(*lr))
                }
                (OnNonFinite::Rollback, None) => back,
            };
            one(
                *step,
                LogKind::Warning,
                format!("step {step}: {what}; {then}"),
            )
        }
        Event::Finished {
            step,
            reason,
            elapsed_secs,
            ..
        } => {
            let how = match reason {
                FinishReason::Completed => "finished",
                FinishReason::Stopped => "stopped",
                FinishReason::NonFinite => "stopped on a non-finite loss",
                FinishReason::EarlyStopped => "stopped early",
                FinishReason::TargetReached => "stopped at the target accuracy",
            };
            one(
                *step,
                LogKind::Milestone,
                format!("{how} at step {step} after {}", clock(*elapsed_secs)),
            )
        }
        _ => vec![],
    }
}

/// What the start says: the model and data, the optimizer and schedule, the data switches in
/// force, and what a resume changed.
fn started(info: &RunInfo) -> Vec<Said> {
    let step = info.resumed.as_ref().map_or(0, |r| r.step);
    let mut out = vec![
        (
            step,
            LogKind::Milestone,
            format!("started: {} on {}", info.model, info.data),
        ),
        (
            step,
            LogKind::Info,
            format!(
                "{}, lr {} {}; {} x {} of {}; run dir {}",
                info.optimizer,
                sci(info.schedule.lr_at(step + 1)),
                info.schedule.spec.describe(),
                plural(info.epochs, "epoch"),
                plural(info.steps_per_epoch, "step"),
                info.batch_size,
                info.run_dir
            ),
        ),
    ];
    let facts = &info.data_facts;
    if facts.active_transforms().is_some() {
        let text = format!("augmentation on: {}", facts.augment);
        out.push((step, LogKind::Info, text));
    }
    if !facts.class_weights.is_empty() {
        let text = format!("class weights: {}", weights_text(&facts.class_weights));
        out.push((step, LogKind::Info, text));
    }
    if facts.sampler != "shuffle" && !facts.sampler.is_empty() {
        let text = format!("sampler: {} (classes drawn equally often)", facts.sampler);
        out.push((step, LogKind::Info, text));
    }
    if let Some(first) = facts.skipped.first() {
        let text = format!(
            "skipped {} that do not decode (--skip-bad-images), e.g. {first}",
            plural(facts.skipped.len(), "image")
        );
        out.push((step, LogKind::Warning, text));
    }
    if let Some(r) = &info.resumed {
        let text = format!("resumed from {} at step {}", r.from, r.step);
        out.push((step, LogKind::Info, text));
        for c in &r.changes {
            let text = format!("{} {} -> {} (given with --resume)", c.flag, c.old, c.new);
            out.push((step, LogKind::Action, text));
        }
        for n in &r.notes {
            out.push((step, LogKind::Warning, format!("note: {n}")));
        }
    }
    out
}

/// The learning rate: a change, a new schedule, a plateau cut, the LR finder's result.
fn lr(e: &Event) -> Vec<Said> {
    match e {
        Event::LrChanged { step, old, new, .. } => one(
            *step,
            LogKind::Action,
            format!("lr {} -> {}", sci(*old), sci(*new)),
        ),
        Event::ScheduleChanged {
            step,
            schedule,
            why: crate::protocol::ScheduleChange::Set,
        } => one(
            *step,
            LogKind::Action,
            format!(
                "schedule {} from step {}, lr {}",
                schedule.spec.describe(),
                step + 1,
                sci(schedule.lr_at(step + 1))
            ),
        ),
        Event::PlateauCut {
            step, monitor, cut, ..
        } => {
            let cooldown = match cut.cooldown {
                0 => String::new(),
                n => format!(", then {} without cuts", plural(n as usize, "epoch")),
            };
            let text = format!(
                "plateau: {monitor} has not improved on {:.4} for {}: lr {} -> {}{cooldown}",
                cut.best,
                plural(cut.bad_epochs as usize, "epoch"),
                sci(cut.old),
                sci(cut.new)
            );
            one(*step, LogKind::Info, text)
        }
        Event::LrFound { step, finding } => {
            let text = match finding.suggestion {
                Some(i) => format!(
                    "lr finder: {} suggested ({})",
                    sci(finding.points[i].lr),
                    finding.how
                ),
                None => format!("lr finder: no suggestion ({})", finding.how),
            };
            one(*step, LogKind::Info, text)
        }
        _ => vec![],
    }
}

/// The data switches and gradient clipping, turned on or off.
fn switches(e: &Event) -> Vec<Said> {
    match e {
        Event::AugmentChanged { step, on, augment } => {
            let text = if *on {
                format!("augmentation on from step {}: {augment}", step + 1)
            } else {
                format!("augmentation off from step {}", step + 1)
            };
            one(*step, LogKind::Action, text)
        }
        Event::ClippingChanged { step, max_norm } => {
            let text = if *max_norm > 0.0 {
                format!(
                    "gradients clipped to a global norm of {max_norm} from step {}",
                    step + 1
                )
            } else {
                format!("gradient clipping off from step {}", step + 1)
            };
            one(*step, LogKind::Action, text)
        }
        Event::ClassWeightsChanged { step, weights } => {
            let text = if weights.is_empty() {
                format!("class weights off from step {}", step + 1)
            } else {
                format!(
                    "class weights balanced from step {}: {}",
                    step + 1,
                    weights_text(weights)
                )
            };
            one(*step, LogKind::Action, text)
        }
        _ => vec![],
    }
}

/// The rules that end a run early: changed, and what they did.
fn stopping(e: &Event) -> Vec<Said> {
    match e {
        Event::StoppingChanged { step, stopping } => {
            let early = if stopping.early_stop.is_on() {
                format!("early stopping {}", stopping.early_stop)
            } else {
                "early stopping off".to_string()
            };
            let target = match (stopping.target_acc, stopping.stop_at_target) {
                (0.0, _) => "no target accuracy".to_string(),
                (t, true) => format!("target {t}%, stop there"),
                (t, false) => format!("target {t}%"),
            };
            one(*step, LogKind::Action, format!("{early}; {target}"))
        }
        Event::EarlyStopped {
            step,
            epoch,
            monitor,
            best,
            best_epoch,
            patience,
            restored,
        } => {
            let best = if monitor == "val_acc" {
                format!("{:.2}%", 100.0 * best)
            } else {
                format!("{best:.4}")
            };
            let restored = if *restored {
                format!("; the weights of epoch {best_epoch} are back")
            } else {
                String::new()
            };
            one(
                *step,
                LogKind::Milestone,
                format!(
                    "early stop after epoch {epoch}: {monitor} has not improved on {best} (epoch {best_epoch}) for {}{restored}",
                    plural(*patience as usize, "epoch")
                ),
            )
        }
        Event::TargetReached {
            step,
            epoch,
            val_accuracy,
            target,
        } => one(
            *step,
            LogKind::Milestone,
            format!(
                "target reached at epoch {epoch}: val acc {:.2}% >= {target}%",
                100.0 * val_accuracy
            ),
        ),
        _ => vec![],
    }
}

/// What-if branches: the fork, the verdict in numbers, the line kept, a branch abandoned.
fn branch(e: &Event) -> Vec<Said> {
    match e {
        Event::Forked {
            step,
            change,
            until,
            horizon,
            ..
        } => one(
            *step,
            LogKind::Action,
            format!(
                "branch {}: forked at step {step}; both lines train on the same batches {} (throughput is shared)",
                crate::protocol::Setting::describe_change(change),
                match horizon {
                    crate::protocol::Horizon::Open => "until you end it (b)".to_string(),
                    _ => format!("until step {until}"),
                }
            ),
        ),
        Event::BranchChanged { step, change } => one(
            *step,
            LogKind::Action,
            format!(
                "branch now {} from step {}: live changes go to the branch while the comparison runs (the main line is its control)",
                crate::protocol::Setting::describe_change(change),
                step + 1
            ),
        ),
        Event::BranchKept {
            step,
            change,
            branch,
            saved,
        } => one(
            *step,
            LogKind::Action,
            format!(
                "branch {}: {} goes on{}",
                crate::protocol::Setting::describe_change(change),
                if *branch { "the branch" } else { "the main line" },
                match saved {
                    Some(dir) => format!("; the other line is saved in {dir}"),
                    None => "; the other line is discarded".into(),
                }
            ),
        ),
        Event::BranchAbandoned {
            step,
            forked_at,
            change,
            why,
        } => one(
            *step,
            LogKind::Warning,
            format!(
                "branch {} forked at step {forked_at}: abandoned ({why}); the main line goes on",
                crate::protocol::Setting::describe_change(change)
            ),
        ),
        Event::BranchVerdict { step, verdict: v } => {
            let call = match v.call {
                crate::protocol::BranchCall::Better => "better",
                crate::protocol::BranchCall::Worse => "worse",
                crate::protocol::BranchCall::Same => "no different",
            };
            one(
                *step,
                LogKind::Milestone,
                format!(
                    "branch {}: {call} on training loss over {} steps on the same batches: {:.4} vs {:.4} on the main line ({:+.4} ± {:.4}); validation loss {:.4} vs {:.4}, accuracy {:.2}% vs {:.2}%; {}",
                    crate::protocol::Setting::describe_change(&v.change),
                    v.steps,
                    v.branch_loss,
                    v.main_loss,
                    v.diff,
                    v.noise,
                    v.branch_val_loss,
                    v.main_val_loss,
                    100.0 * v.branch_val_accuracy,
                    100.0 * v.main_val_accuracy,
                    if v.awaiting {
                        "keep which? m: the main line, b: the branch"
                    } else if v.kept_branch {
                        "the branch goes on"
                    } else {
                        "the main line goes on"
                    }
                ),
            )
        }
        _ => vec![],
    }
}

/// The doctor: findings raised and cleared, remedies applied, undone and judged, restart
/// configs written.
fn doctor(e: &Event) -> Vec<Said> {
    match e {
        Event::Finding {
            step,
            finding,
            cleared,
        } => {
            let title = finding.kind.title();
            if *cleared {
                return one(*step, LogKind::Info, format!("resolved: {title}"));
            }
            let kind = match finding.severity {
                Severity::Warning => LogKind::Warning,
                Severity::Info => LogKind::Info,
            };
            let text = format!(
                "{}: {title}: {}; try {}",
                finding.severity.word(),
                finding.evidence,
                finding.action
            );
            one(*step, kind, text)
        }
        Event::RemedyApplied {
            step,
            record,
            until,
        } => one(
            *step,
            LogKind::Action,
            format!(
                "remedy for {}: {} from step {} (u undoes it until step {until})",
                record.finding.title(),
                record.remedy.describe(),
                step + 1
            ),
        ),
        Event::RemedyUndone { step, record } => one(
            *step,
            LogKind::Action,
            format!(
                "undone: {}; the weights, optimizer, schedule and switches are those of step {}",
                record.remedy.describe(),
                record.step
            ),
        ),
        Event::RemedyVerdict { step, record } => match record.verdict {
            Some((before, after, verdict)) => {
                let steps = step.saturating_sub(record.step).min(REMEDY_TRIAL_STEPS);
                one(
                    *step,
                    LogKind::Milestone,
                    format!(
                        "verdict: {} (step {}) {}: mean loss {before:.4} before, {after:.4} over the {steps} steps after",
                        record.remedy.describe(),
                        record.step,
                        verdict.word()
                    ),
                )
            }
            None => vec![],
        },
        Event::ConfigSuggested {
            step,
            path,
            finding,
            settings,
        } => {
            let changes: Vec<String> = settings
                .iter()
                .map(|s| format!("{} {}", s.key, s.value))
                .collect();
            one(
                *step,
                LogKind::Action,
                format!(
                    "for {}: wrote {path} ({}); start it with candletop --config {path}",
                    finding.title(),
                    changes.join(", ")
                ),
            )
        }
        _ => vec![],
    }
}

/// An event's one line.
fn one(step: u64, kind: LogKind, text: String) -> Vec<Said> {
    vec![(step, kind, text)]
}

/// A command as the event log names it.
pub fn describe(c: &Command) -> String {
    match c {
        Command::SetLr(lr) => format!("lr {lr}"),
        Command::ScaleLr(f) => format!("lr x{f}"),
        Command::SetSchedule(spec) => format!("schedule {spec}"),
        Command::FindLr => "lr finder".into(),
        Command::SetAugment(on) => format!("augmentation {}", if *on { "on" } else { "off" }),
        Command::SetClassWeights(on) => {
            format!("class weights {}", if *on { "balanced" } else { "off" })
        }
        Command::ShowSamples(n) => format!("{n} samples"),
        Command::SetClipGradNorm(m) => format!("gradient clipping at {m}"),
        Command::Warn(m) => format!("warning {m}"),
        Command::SetStopping(s) => {
            format!("early stopping {}, target {}%", s.early_stop, s.target_acc)
        }
        Command::ApplyRemedy(r) => r.describe(),
        Command::UndoRemedy => "undo".into(),
        Command::ProbeActivations => "activation statistics".into(),
        Command::Pause => "pause".into(),
        Command::Resume => "resume".into(),
        Command::Step => "step".into(),
        Command::Save => "save".into(),
        Command::Stop => "stop".into(),
        Command::Fork { change, .. } => format!(
            "branch {}",
            crate::protocol::Setting::describe_change(change)
        ),
        Command::EndBranch => "end the comparison".into(),
        Command::KeepLine { branch: true, .. } => "keep the branch".into(),
        Command::KeepLine { branch: false, .. } => "keep the main line".into(),
    }
}

/// Class weights in a line: "0.82 to 1.35" (or the one value when all are equal).
fn weights_text(w: &[f32]) -> String {
    let lo = w.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = w.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if (hi - lo).abs() < 5e-3 {
        format!("{lo:.2} for every class")
    } else {
        format!("{lo:.2} to {hi:.2}")
    }
}

/// `1 epoch`, `3 epochs`.
fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn file_name(path: &str) -> String {
    std::path::Path::new(path)
        .file_name()
        .map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned())
}
