//! The terminal UI drawn on a ratatui `TestBackend` from a recorded run. Whole screens are
//! compared with reviewed snapshots (`tests/snapshots/`), so that any change of layout or of a
//! number shows as a diff; a few properties that no snapshot pins down are asserted directly.
//!
//! After an intended change: `INSTA_UPDATE=always cargo test --release --test tui_draw`, then
//! read the diff of `tests/snapshots/` before committing it.

use candletop::protocol::{
    Command, DataFacts, EpochMetrics, EvalMetrics, Event, FinishReason, LrSource, RunInfo,
    SampleGrid, StepMetrics,
};
use candletop::tui::{App, UiOptions};
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

fn layers() -> Vec<String> {
    [
        "features.0.weight",
        "features.1.weight",
        "features.1.bias",
        "classifier.0.weight",
        "classifier.0.bias",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A run of 2 epochs x 50 steps: a LR change at step 60, a save, paused at step 75.
fn recorded() -> App {
    let mut app = App::new(UiOptions::default());
    app.on_event(&Event::Started(RunInfo {
        stopping: Default::default(),
        clip_grad_norm: 0.0,
        data_facts: DataFacts {
            train_counts: vec![900, 880, 910, 450, 900, 905, 300, 900, 890, 900],
            val_counts: vec![100; 10],
            test_counts: vec![200; 10],
            augment: "pad-crop:4,flip:0.5".into(),
            augmenting: true,
            class_weights: vec![],
            balanced_weights: vec![0.9; 10],
            sampler: "shuffle".into(),
            skipped: vec![],
            input_mean: vec![0.0],
            input_std: vec![1.0],
        },
        data: "embedded (9000 train / 1000 val / 2000 test)".into(),
        model: "c32,c64,f128 relu bn (421,738 params)".into(),
        param_count: 421_738,
        optimizer: "AdamW wd 0.01".into(),
        layers: layers(),
        classes: (0..10).map(|c| c.to_string()).collect(),
        epochs: 2,
        steps_per_epoch: 50,
        total_steps: 100,
        batch_size: 64,
        run_dir: "runs/x".into(),
        resumed: None,
        schedule: candletop::schedule::Schedule::constant(1e-3, 100, 50),
    }));
    let mut lr = 1e-3;
    for step in 1..=75u64 {
        if step == 61 {
            app.on_event(&Event::LrChanged {
                step: 60,
                old: lr,
                new: 2e-3,
                source: LrSource::User,
            });
            // As the trainer follows it: the schedule, scaled to the new LR.
            let mut schedule = candletop::schedule::Schedule::constant(1e-3, 100, 50);
            schedule.rescale(61, 2e-3).unwrap();
            app.on_event(&Event::ScheduleChanged {
                step: 60,
                schedule,
                why: candletop::protocol::ScheduleChange::Scaled,
            });
            lr = 2e-3;
        }
        app.on_step(&StepMetrics {
            step,
            epoch: if step <= 50 { 1 } else { 2 },
            steps: 1,
            loss: 2.0 / (1.0 + step as f64 / 10.0),
            loss_max: 2.0 / (1.0 + step as f64 / 10.0),
            accuracy: 0.5 + 0.004 * step as f64,
            lr,
            // The last layer's gradient vanishes.
            grad_norms: vec![0.5, 0.05, 0.04, 1.5, 1e-8],
            update_ratios: vec![1e-3, 2e-4, 3e-2, 1e-2, 0.0],
            images_per_sec: 250.0,
            branch: None,
        });
        if step == 50 {
            app.on_event(&Event::Epoch(EpochMetrics {
                epoch: 1,
                step: 50,
                train_loss: 0.61,
                train_accuracy: 0.78,
                val_loss: 0.4321,
                val_accuracy: 0.8512,
                val_class_accuracy: vec![
                    0.82, 0.97, 0.78, 0.86, 0.79, 0.95, 0.58, 0.93, 0.96, 0.94,
                ],
                // Where each class's images went wrong (Shirt, 6, mostly to T-shirt, 0).
                val_confusion: [
                    (6, 0.11),
                    (3, 0.02),
                    (4, 0.12),
                    (0, 0.05),
                    (2, 0.14),
                    (7, 0.03),
                    (0, 0.21),
                    (9, 0.04),
                    (8, 0.0),
                    (7, 0.05),
                ]
                .iter()
                .map(|&(class, share)| candletop::protocol::Confusion { class, share })
                .collect(),
                lr,
                images_per_sec: 250.0,
                elapsed_secs: 13.0,
            }));
            app.on_event(&Event::CheckpointSaved {
                step: 50,
                epoch: 1,
                path: "runs/x/checkpoints/epoch-001.h5".into(),
                bytes: 5_100_000,
                write_secs: 0.009,
                hold_ms: 0.5,
            });
        }
    }
    app.on_event(&Event::Paused { step: 75 });
    app
}

/// The screen as text, one line per row, trailing blanks trimmed.
fn screen(app: &App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| f.render_widget(app, f.area())).unwrap();
    let buf = t.backend().buffer().clone();
    (0..h)
        .map(|y| {
            let row: String = (0..w).map(|x| buf[(x, y)].symbol().to_string()).collect();
            row.trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn key(c: char) -> KeyEvent {
    KeyEvent::from(KeyCode::Char(c))
}

#[test]
fn a_paused_run_at_the_design_size() {
    let app = recorded();
    let s = screen(&app, 120, 36);
    insta::assert_snapshot!("paused_120x36", s);
    // The title's train loss is the chart's smoothed curve at its end: an EMA of span 50 over
    // the 75 raw losses, debiased (pandas' `ewm(span=50, adjust=True).mean()`).
    let alpha = 2.0 / 51.0;
    let (mut num, mut den) = (0.0, 0.0);
    for step in 1..=75 {
        let loss = 2.0 / (1.0 + step as f64 / 10.0);
        num = (1.0 - alpha) * num + loss;
        den = (1.0 - alpha) * den + 1.0;
    }
    let ema = num / den;
    assert!(s.contains(&format!("train {ema:.4}")), "{ema:.4}\n{s}");
}

/// A run as Fashion-MNIST trains: 3 epochs x 141 steps, the loss falling fast from 2.3 and then
/// slowly, with batch noise; one layer's gradient fades away over the run.
fn realistic() -> App {
    let mut app = App::new(UiOptions::default());
    let layers = layers();
    app.on_event(&Event::Started(RunInfo {
        stopping: Default::default(),
        clip_grad_norm: 0.0,
        data_facts: DataFacts {
            train_counts: vec![900; 10],
            val_counts: vec![100; 10],
            test_counts: vec![200; 10],
            augment: String::new(),
            augmenting: false,
            class_weights: vec![],
            balanced_weights: vec![1.0; 10],
            sampler: "shuffle".into(),
            skipped: vec![],
            input_mean: vec![0.0],
            input_std: vec![1.0],
        },
        data: "embedded (9000 train / 1000 val / 2000 test, 1x28x28, 10 classes)".into(),
        model: "c32,c64,f128 relu bn dropout 0.25 (421,738 params)".into(),
        param_count: 421_738,
        optimizer: "AdamW wd 0.01".into(),
        layers,
        classes: (0..10).map(|c| c.to_string()).collect(),
        epochs: 3,
        steps_per_epoch: 141,
        total_steps: 423,
        batch_size: 64,
        run_dir: "runs/x".into(),
        resumed: None,
        schedule: candletop::schedule::Schedule::constant(1e-3, 423, 141),
    }));
    // A fixed pseudo-random sequence for the batch noise.
    let mut seed = 12345u64;
    let mut noise = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let vals = [(0.4410, 0.8420), (0.3512, 0.8713), (0.3117, 0.8920)];
    for step in 1..=423u64 {
        let s = step as f64;
        let loss = 0.3 + 2.0 * (-s / 25.0).exp() + 0.25 * noise();
        let accuracy = (0.89 - 0.79 * (-s / 25.0).exp() + 0.08 * noise()).min(1.0);
        let fade = 1e-2 * (-s / 40.0).exp();
        app.on_step(&StepMetrics {
            step,
            epoch: (step as usize - 1) / 141 + 1,
            steps: 1,
            loss,
            loss_max: 0.0,
            accuracy,
            lr: 1e-3,
            grad_norms: vec![0.6 + 0.2 * noise(), 0.06, 0.03, 1.6 + 0.4 * noise(), fade],
            update_ratios: vec![1.4e-3, 2.3e-4, 4.8e-3, 7.2e-3, 1e-2],
            images_per_sec: 2600.0,
            branch: None,
        });
        if step % 141 == 0 {
            let e = (step / 141) as usize;
            let (val_loss, val_accuracy) = vals[e - 1];
            app.on_event(&Event::Epoch(EpochMetrics {
                epoch: e,
                step,
                train_loss: 0.3 + 0.5 / e as f64,
                train_accuracy: 0.80 + 0.03 * e as f64,
                val_loss,
                val_accuracy,
                val_class_accuracy: vec![val_accuracy; 10],
                val_confusion: vec![],
                lr: 1e-3,
                images_per_sec: 2600.0,
                elapsed_secs: 4.0 * e as f64,
            }));
        }
    }
    app.on_event(&Event::Paused { step: 423 });
    app
}

#[test]
fn a_realistic_run_reads_at_120x36_and_80x24() {
    let app = realistic();
    let big = screen(&app, 120, 36);
    insta::assert_snapshot!("realistic_120x36", big);
    let small = screen(&app, 80, 24);
    insta::assert_snapshot!("realistic_80x24", small);
    for s in [&big, &small] {
        // The header keeps the essentials at both sizes.
        let header: String = s.lines().take(4).collect::<Vec<_>>().join("\n");
        for want in [
            "PAUSED",
            "epoch 3/3",
            "step 423/423",
            "img/s",
            "lr 1.00e-3",
            "data embedded",
        ] {
            assert!(header.contains(want), "{want} missing:\n{header}");
        }
        // The layer whose gradient faded is marked, in the bar and at the end of its history.
        assert!(s.contains("vanishing"), "{s}");
    }
}

/// The y tick labels of the chart whose title starts with `title` (the left column of its
/// rows), top to bottom.
fn y_labels(s: &str, title: &str) -> Vec<String> {
    let lines: Vec<&str> = s.lines().collect();
    let (row, col) = lines
        .iter()
        .enumerate()
        .find_map(|(i, l)| l.find(title).map(|c| (i, c)))
        .unwrap_or_else(|| panic!("no {title} in\n{s}"));
    let col = l_chars(lines[row], col) - 2; // the frame's corner, then a space
    let mut out = Vec::new();
    for l in &lines[row + 1..] {
        let chars: Vec<char> = l.chars().collect();
        if chars.get(col) != Some(&'│') {
            break;
        }
        // The label column ends at the axis: ┤ at a tick, │ elsewhere.
        let label: String = chars[col + 1..]
            .iter()
            .take_while(|&&c| c != '│' && c != '┤')
            .collect();
        if chars.get(col + 1 + label.chars().count()) == Some(&'┤') {
            out.push(label.trim().to_string());
        }
    }
    out
}

/// The char index of byte offset `b` in `l`.
fn l_chars(l: &str, b: usize) -> usize {
    l[..b].chars().count()
}

#[test]
fn the_loss_axis_fits_the_run_not_the_first_spike() {
    let mut app = realistic();
    // The smoothed loss falls from 2.3 to 0.29, less than a decade: a linear axis, its top well
    // under the first steps' spike, and the cut said.
    let s = screen(&app, 120, 36);
    let labels = y_labels(&s, "Loss ");
    let top: f64 = labels[0].parse().unwrap();
    let bottom: f64 = labels.last().unwrap().parse().unwrap();
    assert!(top <= 1.5 && bottom <= 0.4, "{labels:?}\n{s}");
    assert!(labels.len() >= 3, "{labels:?}");
    assert!(s.contains("▲ 2."), "the clipped spike is named:\n{s}");
    // Log on `y`: all of it on the axis.
    app.on_key(key('y'));
    let s = screen(&app, 120, 36);
    let labels = y_labels(&s, "Loss ");
    let top: f64 = labels[0].parse().unwrap();
    assert!(
        top >= 2.0 && !s.contains("▲ 2."),
        "nothing cut off: {labels:?}\n{s}"
    );
    assert!(s.contains("ema 50  log"), "{s}");
    // Accuracy: fitted to the data, or the whole 0-100% on `%`.
    let fitted = y_labels(&s, "Accuracy ");
    assert!(
        fitted[0] != "100%" && fitted.last().unwrap() != "0%",
        "{fitted:?}"
    );
    app.on_key(key('%'));
    let full = y_labels(&screen(&app, 120, 36), "Accuracy ");
    assert_eq!(
        (full[0].as_str(), full.last().unwrap().as_str()),
        ("100%", "0%")
    );
}

#[test]
fn y_turns_the_loss_axis_the_other_way_from_how_it_was_drawn() {
    // A loss from 3 down to 0.06: automatically on a log axis.
    let mut app = App::new(UiOptions::default());
    app.on_event(&Event::Started(realistic().run.info.unwrap()));
    for step in 1..=300u64 {
        app.on_step(&StepMetrics {
            step,
            epoch: 1,
            steps: 1,
            loss: 0.05 + 3.0 * (-(step as f64) / 30.0).exp(),
            loss_max: 0.0,
            accuracy: 0.5,
            lr: 1e-3,
            grad_norms: vec![0.1; 5],
            update_ratios: vec![1e-3; 5],
            images_per_sec: 2600.0,
            branch: None,
        });
    }
    assert!(screen(&app, 120, 36).contains("ema 50  log"));
    app.on_key(key('y'));
    let s = screen(&app, 120, 36);
    assert!(
        !s.contains("ema 50  log") && s.contains("▲ "),
        "linear, the spike cut:\n{s}"
    );
    app.on_key(key('y'));
    assert!(screen(&app, 120, 36).contains("ema 50  log"));
}

#[test]
fn the_smoothing_span_changes_on_a_key_and_says_so() {
    let mut app = realistic();
    assert!(screen(&app, 120, 36).contains("ema 50"));
    app.on_key(key(']'));
    let s = screen(&app, 120, 36);
    assert!(s.contains("ema 100"), "{s}");
    for _ in 0..10 {
        app.on_key(key('['));
    }
    let s = screen(&app, 120, 36);
    // The raw values: no band under the curve, and the title shows the last raw loss.
    assert!(s.contains(" raw "), "{s}");
    let last = app.run.train_loss.points().last().unwrap().1;
    assert!(s.contains(&format!("train {last:.4}")), "{last}\n{s}");
}

#[test]
fn any_panel_enlarges_to_the_screen_and_goes_back() {
    let mut app = realistic();
    let before = screen(&app, 120, 36);
    // Loss, Accuracy, then Gradients.
    app.on_key(KeyEvent::from(KeyCode::Tab));
    app.on_key(KeyEvent::from(KeyCode::Tab));
    app.on_key(KeyEvent::from(KeyCode::Enter));
    let big = screen(&app, 120, 36);
    insta::assert_snapshot!("gradients_enlarged_120x36", big);
    assert!(!big.contains("Loss "), "only the focused panel:\n{big}");
    app.on_key(KeyEvent::from(KeyCode::Esc));
    let after = screen(&app, 120, 36);
    assert_eq!(after, before, "back as it was");
    // The loss chart enlarged: more ticks than in its quarter of the screen.
    app.focus = candletop::tui::app::Panel::Loss;
    let small_ticks = y_labels(&screen(&app, 120, 36), "Loss ").len();
    app.on_key(KeyEvent::from(KeyCode::Enter));
    let s = screen(&app, 120, 36);
    assert!(y_labels(&s, "Loss ").len() > small_ticks, "{s}");
    app.on_key(KeyEvent::from(KeyCode::Enter));
    assert_eq!(screen(&app, 120, 36), {
        let mut a = realistic();
        a.focus = candletop::tui::app::Panel::Loss;
        screen(&a, 120, 36)
    });
}

#[test]
fn a_paused_run_at_80x24() {
    insta::assert_snapshot!("paused_80x24", screen(&recorded(), 80, 24));
}

#[test]
fn the_help_overlay() {
    let mut app = recorded();
    app.on_key(key('?'));
    insta::assert_snapshot!("help_120x36", screen(&app, 120, 36));
}

#[test]
fn the_lr_prompt_refuses_what_is_not_a_learning_rate_in_place() {
    let mut app = recorded();
    app.on_key(key('l'));
    for c in "abc".chars() {
        app.on_key(key(c));
    }
    assert!(app.on_key(KeyEvent::from(KeyCode::Enter)).is_empty());
    insta::assert_snapshot!("lr_prompt_error_80x24", screen(&app, 80, 24));
}

#[test]
fn quit_asks_first() {
    let mut app = recorded();
    app.on_key(key('q'));
    insta::assert_snapshot!("quit_80x24", screen(&app, 80, 24));
}

#[test]
fn per_epoch_charts() {
    let mut app = recorded();
    app.on_key(key('v'));
    insta::assert_snapshot!("per_epoch_120x36", screen(&app, 120, 36));
}

#[test]
fn a_finished_run_with_its_test_result() {
    let mut app = recorded();
    app.on_event(&Event::Resumed { step: 75 });
    app.on_event(&Event::Evaluated(EvalMetrics {
        split: "test".into(),
        loss: 0.3921,
        accuracy: 0.8655,
        class_accuracy: vec![0.8; 10],
        images_per_sec: 9000.0,
    }));
    app.on_event(&Event::Finished {
        step: 100,
        epoch: 2,
        reason: FinishReason::Completed,
        elapsed_secs: 27.0,
    });
    insta::assert_snapshot!("finished_120x36", screen(&app, 120, 36));
}

/// A trainer that stops sending steps (frozen, SIGSTOPped) must not look alive: after twenty
/// step times, and at least 15 s, the header says how long it has been quiet, with no speed.
#[test]
fn a_run_that_sends_no_steps_says_so_instead_of_looking_alive() {
    let mut app = realistic();
    let secs = std::time::Duration::from_secs;
    assert!(!app.is_quiet(secs(3600)), "a paused run is quiet by choice");
    app.on_event(&Event::Resumed { step: 423 });
    assert!(!app.is_quiet(secs(14)));
    assert!(app.is_quiet(secs(16)));
    assert!(screen(&app, 120, 36)
        .lines()
        .nth(1)
        .unwrap()
        .contains(" RUNNING "));
    app.quiet_secs = Some(83);
    let s = screen(&app, 120, 36);
    let top = s.lines().nth(1).unwrap();
    assert!(
        top.contains(" NO STEPS ") && top.contains("no step for 1:23"),
        "{top}"
    );
    assert!(!top.contains("img/s") && !top.contains("ETA"), "{top}");
}

#[test]
fn an_error_shows_the_error_state_and_message() {
    let mut app = recorded();
    app.on_event(&Event::Error {
        message: "the training thread panicked: boom".into(),
    });
    insta::assert_snapshot!("error_80x24", screen(&app, 80, 24));
    // Nothing is left to stop: q quits at once.
    assert!(app.on_key(key('q')).is_empty());
    assert!(app.should_exit);
}

#[test]
fn too_small_says_so() {
    let s = screen(&recorded(), 40, 10);
    assert_eq!(
        s.lines().next().unwrap(),
        "terminal too small: 40x10, candletop"
    );
    assert!(!s.contains("Gradients"));
}

#[test]
fn every_size_draws_without_panicking() {
    let mut app = recorded();
    for w in 0..=130u16 {
        for h in 0..=45u16 {
            screen(&app, w, h);
        }
    }
    // And with overlays open.
    app.on_key(key('?'));
    for (w, h) in [(1, 1), (20, 5), (60, 18), (61, 19), (130, 45)] {
        screen(&app, w, h);
    }
    app.on_key(KeyEvent::from(KeyCode::Esc));
    app.on_key(key('l'));
    for (w, h) in [(1, 1), (20, 5), (60, 18), (130, 45)] {
        screen(&app, w, h);
    }
}

#[test]
fn no_color_keeps_emphasis() {
    let mut app = recorded();
    app.options.color = false;
    let mut t = Terminal::new(TestBackend::new(120, 36)).unwrap();
    t.draw(|f| f.render_widget(&app, f.area())).unwrap();
    let buf = t.backend().buffer();
    let mut reversed = false;
    for y in 0..36 {
        for x in 0..120 {
            let c = &buf[(x, y)];
            assert_eq!(
                c.fg,
                ratatui::style::Color::Reset,
                "a colour at {x},{y} with NO_COLOR"
            );
            reversed |= c.modifier.contains(ratatui::style::Modifier::REVERSED);
        }
    }
    assert!(reversed, "the state badge is still emphasised");
    // Shapes, not colours, tell the marks apart: validation ◆ on the smoothed curve over the
    // ░ spread of the raw values.
    let s = screen(&app, 120, 36);
    assert!(s.contains('◆') && s.contains('░'), "{s}");
}

#[test]
fn the_schedule_editor_shows_the_plan_before_it_applies() {
    let mut app = recorded();
    app.on_key(key('e'));
    insta::assert_snapshot!("schedule_editor_constant_120x36", screen(&app, 120, 36));
    // → step → multistep → exp → cosine: fill in its minimum.
    for _ in 0..4 {
        app.on_key(KeyEvent::from(KeyCode::Right));
    }
    for c in "1e-5".chars() {
        app.on_key(key(c));
    }
    insta::assert_snapshot!("schedule_editor_cosine_120x36", screen(&app, 120, 36));
    // A value the spec refuses: the reason in place, nothing sent.
    app.on_key(KeyEvent::from(KeyCode::Down));
    app.on_key(key('x'));
    assert!(app.on_key(KeyEvent::from(KeyCode::Enter)).is_empty());
    let s = screen(&app, 120, 36);
    assert!(
        s.contains("at 'restart=x': 'x' is not a whole number (epochs of the first period)"),
        "{s}"
    );
    app.on_key(KeyEvent::from(KeyCode::Backspace));
    assert_eq!(
        app.on_key(KeyEvent::from(KeyCode::Enter)),
        vec![Command::SetSchedule("cosine:min=1e-5".into())]
    );
    assert_eq!(app.overlay, candletop::tui::app::Overlay::None);
}

#[test]
fn the_lr_finder_shows_its_progress_then_the_curve() {
    use candletop::protocol::{FinderPoint, LrFinding};
    let mut app = recorded();
    assert_eq!(app.on_key(key('f')), vec![Command::FindLr]);
    app.on_event(&Event::LrFinderProgress {
        step: 75,
        done: 40,
        total: 100,
    });
    insta::assert_snapshot!("lr_finder_sweeping_80x24", screen(&app, 80, 24));
    let points: Vec<FinderPoint> = (0..80)
        .map(|i| {
            let lr = 1e-7 * 10f64.powf(8.0 * i as f64 / 99.0);
            let x = lr.log10();
            let loss = 2.3 - 1.6 / (1.0 + (-(x + 3.0) * 2.0).exp())
                + if x > -1.0 { (x + 1.0) * 4.0 } else { 0.0 };
            FinderPoint {
                lr,
                loss,
                smoothed: loss,
            }
        })
        .collect();
    let suggestion = Some(49);
    app.on_event(&Event::LrFound {
        step: 75,
        finding: LrFinding {
            points: points.clone(),
            suggestion,
            how: "the smoothed loss falls fastest there: -0.800 per decade".into(),
            stopped: Some("the smoothed loss passed 4x its best at lr 4.00e-1".into()),
        },
    });
    insta::assert_snapshot!("lr_finder_found_120x36", screen(&app, 120, 36));
    // Pick a smaller LR and apply it; the run was paused, so it stays paused.
    app.on_key(KeyEvent::from(KeyCode::Left));
    app.on_key(KeyEvent::from(KeyCode::Left));
    assert_eq!(
        app.on_key(KeyEvent::from(KeyCode::Enter)),
        vec![Command::SetLr(points[47].lr)]
    );
}

/// `a` and `w` ask for the other state of the switch; the header shows what is on once the
/// trainer says so.
#[test]
fn the_data_switches_go_through_the_trainer_and_show_in_the_header() {
    let mut app = recorded();
    let header = |app: &App| {
        screen(app, 120, 36)
            .lines()
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        header(&app).contains("aug pad-crop flip"),
        "{}",
        header(&app)
    );
    assert_eq!(app.on_key(key('a')), vec![Command::SetAugment(false)]);
    assert!(
        header(&app).contains("aug pad-crop flip"),
        "nothing changes before the trainer"
    );
    app.on_event(&Event::AugmentChanged {
        step: 75,
        on: false,
        augment: "pad-crop:4,flip:0.5".into(),
    });
    assert!(!header(&app).contains("aug "), "{}", header(&app));
    assert_eq!(app.on_key(key('a')), vec![Command::SetAugment(true)]);
    assert_eq!(app.on_key(key('w')), vec![Command::SetClassWeights(true)]);
    app.on_event(&Event::ClassWeightsChanged {
        step: 75,
        weights: vec![0.9; 10],
    });
    assert!(
        header(&app).contains("weights balanced"),
        "{}",
        header(&app)
    );
    assert_eq!(app.on_key(key('w')), vec![Command::SetClassWeights(false)]);
    // x: gradient clipping on at the UI's norm (1 unless --clip-grad-norm), then off.
    assert_eq!(app.on_key(key('x')), vec![Command::SetClipGradNorm(1.0)]);
    app.on_event(&Event::ClippingChanged {
        step: 75,
        max_norm: 1.0,
    });
    assert!(header(&app).contains("clip 1"), "{}", header(&app));
    assert_eq!(app.on_key(key('x')), vec![Command::SetClipGradNorm(0.0)]);
    let log = screen(&app, 120, 36);
    assert!(log.contains("augmentation off from step 76"), "{log}");
    assert!(log.contains("class weights balanced from step 76"), "{log}");
}

#[test]
fn the_per_class_view_marks_the_worst_classes() {
    let mut app = recorded();
    assert!(app.on_key(key('c')).is_empty());
    insta::assert_snapshot!("classes_120x36", screen(&app, 120, 36));
    // w inside the view switches the weights and the view stays.
    assert_eq!(app.on_key(key('w')), vec![Command::SetClassWeights(true)]);
    assert!(screen(&app, 120, 36).contains("Validation accuracy per class"));
    app.on_key(KeyEvent::from(KeyCode::Esc));
    assert!(!screen(&app, 120, 36).contains("Validation accuracy per class"));
}

#[test]
fn the_sample_grid_draws_each_pixel_pair_in_half_blocks() {
    let mut app = recorded();
    assert_eq!(app.on_key(key('g')), vec![Command::ShowSamples(24)]);
    assert!(screen(&app, 120, 36).contains("asking the trainer for images"));
    // 28x28 grayscale images: image k has value 9k at (y, x) where x < y, else 255 - 9k.
    let images: Vec<Vec<u8>> = (0..24u8)
        .map(|k| {
            (0..28 * 28)
                .map(|p| if p % 28 < p / 28 { 9 * k } else { 255 - 9 * k })
                .collect()
        })
        .collect();
    app.on_event(&Event::Samples {
        step: 75,
        grid: SampleGrid {
            channels: 1,
            height: 28,
            width: 28,
            images,
            labels: (0..24).map(|k| k % 10).collect(),
            augmented: true,
        },
    });
    insta::assert_snapshot!("samples_120x36", screen(&app, 120, 36));
    // The first tile's top-left cell: pixels (0, 0) and (1, 0) of image 0, in colour.
    let mut t = Terminal::new(TestBackend::new(120, 36)).unwrap();
    t.draw(|f| f.render_widget(&app, f.area())).unwrap();
    let buf = t.backend().buffer().clone();
    let (x, y) = (0..120u16)
        .flat_map(|x| (0..36u16).map(move |y| (x, y)))
        .find(|&(x, y)| buf[(x, y)].symbol() == "▀")
        .unwrap();
    let cell = &buf[(x, y)];
    use ratatui::style::Color;
    assert_eq!(cell.fg, Color::Rgb(255, 255, 255), "pixel (0, 0) is 255");
    assert_eq!(
        cell.bg,
        Color::Rgb(0, 0, 0),
        "pixel (1, 0) is below the diagonal: 0"
    );
    // g again asks for new images; a switches augmentation and asks again.
    assert_eq!(app.on_key(key('g')), vec![Command::ShowSamples(24)]);
    assert_eq!(
        app.on_key(key('a')),
        vec![Command::SetAugment(false), Command::ShowSamples(24)]
    );
}

/// The diagnosis panel: warnings before notes, each with its evidence and what to try, the
/// remedy `r` applies marked; `u` undoes it while it can; the gradient panel shows each layer's
/// dead and saturated shares; a cleared finding leaves.
#[test]
fn the_diagnosis_panel_lists_findings_most_severe_first() {
    use candletop::protocol::{
        Finding, FindingKind, LayerActivations, Remedy, RemedyRecord, Severity,
    };
    let mut app = recorded();
    let finding = |kind, severity, evidence: &str, action: &str, remedy| Finding {
        kind,
        severity,
        evidence: evidence.into(),
        action: action.into(),
        remedy,
    };
    let act = |layer: &str, dead, saturated, outside_5| LayerActivations {
        layer: layer.into(),
        mean: 0.3,
        std: 0.5,
        dead,
        saturated,
        outside_5,
        zero_grad: 0.0,
    };
    app.on_event(&Event::Activations {
        step: 75,
        layers: vec![
            act("features.0", Some(0.12), None, 0.0),
            act("classifier.0", Some(0.64), None, 0.02),
        ],
    });
    // No finding with a remedy yet: r says so and sends nothing.
    assert!(app.on_key(key('r')).is_empty());
    app.on_event(&Event::Finding {
        step: 50,
        finding: finding(
            FindingKind::WeakClass,
            Severity::Info,
            "class 6 has 58.0% validation accuracy against a mean of 85.8% (300 training images)",
            "look at its images (g); more images of it, or augmentation (a)",
            None,
        ),
        cleared: false,
    });
    app.on_event(&Event::Finding {
        step: 70,
        finding: finding(
            FindingKind::LrTooHigh,
            Severity::Warning,
            "the loss rose in 3 of the last 4 windows of 50 steps (0.4100 -> 0.5200); 4 spikes",
            "cut the LR x0.1 (r), or - a few times",
            Some(Remedy::ScaleLr(0.1)),
        ),
        cleared: false,
    });
    insta::assert_snapshot!("diagnosis_120x36", screen(&app, 120, 36));
    assert_eq!(
        app.on_key(key('r')),
        vec![Command::ApplyRemedy(Remedy::ScaleLr(0.1))]
    );
    // Nothing to undo before the trainer says the remedy is on.
    assert!(app.on_key(key('u')).is_empty());
    let record = RemedyRecord {
        step: 75,
        remedy: Remedy::ScaleLr(0.1),
        finding: FindingKind::LrTooHigh,
        undone_at: None,
        verdict: None,
    };
    app.on_event(&Event::RemedyApplied {
        step: 75,
        record,
        until: 275,
    });
    let s = screen(&app, 120, 36);
    assert!(
        s.contains("u undoes: cut the LR x0.1 (until step 275)"),
        "{s}"
    );
    // r again during the trial: not a second cut; the log says why.
    assert!(app.on_key(key('r')).is_empty());
    assert!(
        app.run
            .log
            .back()
            .unwrap()
            .text
            .starts_with("cut the LR x0.1 is on trial until step 275: u undoes it"),
        "{:?}",
        app.run.log.back()
    );
    assert_eq!(app.on_key(key('u')), vec![Command::UndoRemedy]);
    app.on_event(&Event::Finding {
        step: 75,
        finding: finding(FindingKind::LrTooHigh, Severity::Warning, "", "", None),
        cleared: true,
    });
    let s = screen(&app, 120, 36);
    assert!(
        s.contains("Diagnosis  1 note") && !s.contains("▲ learning rate too high"),
        "{s}"
    );
    assert!(s.contains("resolved: learning rate too high"), "{s}");
}

/// `--compare`: another run's loss, accuracy and LR drawn under this one's (blue, its validation
/// ◇), named under each chart; its longer run widens the step axis.
#[test]
fn another_run_is_drawn_under_this_one() {
    use candletop::tui::Comparison;
    use candletop::watch::RunState;
    let mut app = recorded();
    let mut other = RunState::default();
    let mut info = app.run.info.clone().unwrap();
    info.total_steps = 150;
    other.on_event(&Event::Started(info));
    for step in 1..=150u64 {
        other.on_step(&StepMetrics {
            step,
            epoch: 1 + (step as usize - 1) / 50,
            steps: 1,
            loss: 1.2,
            loss_max: 0.0,
            accuracy: 0.62,
            lr: 1e-2,
            grad_norms: vec![0.1; 5],
            update_ratios: vec![1e-3; 5],
            images_per_sec: 250.0,
            branch: None,
        });
    }
    app.compare = Some(Comparison {
        name: "before".into(),
        run: other,
    });
    let s = screen(&app, 120, 36);
    insta::assert_snapshot!("compare_120x36", s);
    // Named under each chart it is drawn in: loss, accuracy, LR.
    assert_eq!(s.matches(" before ").count(), 3, "{s}");
}

/// The bottom line of a screen wide enough for every entry.
fn key_bar(app: &App) -> String {
    screen(app, 220, 36).lines().last().unwrap().to_string()
}

#[test]
fn the_key_bar_shows_only_the_keys_that_work_there() {
    // Paused: p resumes, n steps.
    let mut app = recorded();
    assert_eq!(
        key_bar(&app),
        " +/- lr  l set lr  e schedule  f find lr  a augment  w weights  g samples  c classes  r remedy  b branch  u undo  p resume  n step  s save  Tab focus  Enter enlarge  y log  v axis  ? help  q quit"
    );
    // Running: no n; n says how to get it.
    app.on_event(&Event::Resumed { step: 75 });
    assert_eq!(
        key_bar(&app),
        " +/- lr  l set lr  e schedule  f find lr  a augment  w weights  g samples  c classes  r remedy  b branch  u undo  p pause  s save  Tab focus  Enter enlarge  y log  v axis  ? help  q quit"
    );
    assert!(app.on_key(key('n')).is_empty());
    assert_eq!(
        app.run.log.back().unwrap().text,
        "n: one training step while paused (p pauses)"
    );
    // Attached to a run of another process: d detaches.
    let mut attached = recorded();
    attached.options.attached = true;
    assert!(key_bar(&attached).ends_with("  v axis  d detach  ? help  q quit"));
    // Over: only the keys that change the view; a steering key says why it does nothing.
    app.on_event(&Event::Finished {
        step: 75,
        epoch: 1,
        reason: FinishReason::Completed,
        elapsed_secs: 9.0,
    });
    assert_eq!(
        key_bar(&app),
        " c classes  Tab focus  Enter enlarge  y log  v axis  ? help  q quit"
    );
    for c in ['+', 'p', 'n', 's', 'r', 'g'] {
        assert!(app.on_key(key(c)).is_empty(), "{c}");
        assert_eq!(
            app.run.log.back().unwrap().text,
            "the run has ended: nothing to steer"
        );
    }
}

/// A what-if branch from the `b` menu: the menu, then both lines' losses live with the header
/// saying that throughput is shared, then the result in numbers waiting for a key that keeps a
/// line. Keys become the commands the trainer takes.
#[test]
fn a_branch_is_forked_from_the_menu_drawn_live_and_decided_on_a_key() {
    use candletop::protocol::{BranchCall, BranchStep, BranchVerdict, Horizon, Setting};
    let mut app = recorded();
    app.on_event(&Event::Resumed { step: 75 });
    assert!(app.on_key(key('b')).is_empty());
    insta::assert_snapshot!("branch_menu_120x36", screen(&app, 120, 36));
    // Down to "cut the LR /3", → to 50 steps, Enter.
    app.on_key(KeyEvent::from(KeyCode::Down));
    app.on_key(KeyEvent::from(KeyCode::Right));
    let change = vec![Setting::new("lr", "6.67e-4")];
    assert_eq!(
        app.on_key(KeyEvent::from(KeyCode::Enter)),
        vec![Command::Fork {
            change: change.clone(),
            horizon: Horizon::Steps(50),
            ask: true
        }]
    );
    // A typed change that is not one stays in the menu with the problem.
    app.on_key(key('b'));
    for c in "lr".chars() {
        app.on_key(key(c));
    }
    assert!(app.on_key(KeyEvent::from(KeyCode::Enter)).is_empty());
    assert!(screen(&app, 120, 36).contains("'lr' is not key=value"));
    app.on_key(KeyEvent::from(KeyCode::Esc));

    // The trainer forks after step 75; the branch's loss falls faster.
    app.on_event(&Event::Forked {
        step: 75,
        change: change.clone(),
        until: 100,
        horizon: Horizon::Steps(25),
        ask: true,
    });
    for step in 76..=90u64 {
        let loss = 2.0 / (1.0 + step as f64 / 10.0);
        app.on_step(&StepMetrics {
            step,
            epoch: 2,
            steps: 1,
            loss,
            loss_max: loss,
            accuracy: 0.8,
            lr: 2e-3,
            grad_norms: vec![0.5, 0.05, 0.04, 1.5, 1e-8],
            update_ratios: vec![1e-3, 2e-4, 3e-2, 1e-2, 0.0],
            images_per_sec: 125.0,
            branch: Some(BranchStep {
                loss: loss * (1.0 - 0.02 * (step - 75) as f64),
                accuracy: 0.85,
                steps: 1,
            }),
        });
    }
    let s = screen(&app, 120, 36);
    insta::assert_snapshot!("branch_running_120x36", s);
    assert!(s.contains("⑂ lr=6.67e-4 15/25 steps, img/s shared"), "{s}");
    // b while it runs ends it now.
    assert_eq!(app.on_key(key('b')), vec![Command::EndBranch]);
    // m does nothing before a verdict, and says when it does.
    assert!(app.on_key(key('m')).is_empty());
    assert_eq!(
        app.run.log.back().unwrap().text,
        "m keeps a line after a what-if comparison (b starts one)"
    );

    app.on_event(&Event::BranchVerdict {
        step: 90,
        verdict: BranchVerdict {
            change: change.clone(),
            forked_at: 75,
            steps: 15,
            main_loss: 0.8,
            branch_loss: 0.7,
            diff: -0.1,
            noise: 0.02,
            call: BranchCall::Better,
            main_val_loss: 0.43,
            main_val_accuracy: 0.851,
            branch_val_loss: 0.39,
            branch_val_accuracy: 0.866,
            kept_branch: false,
            awaiting: true,
        },
    });
    app.on_event(&Event::Paused { step: 90 });
    insta::assert_snapshot!("branch_result_120x36", screen(&app, 120, 36));
    let keep = |branch, save_other| vec![Command::KeepLine { branch, save_other }];
    assert_eq!(app.on_key(key('b')), keep(true, false));
    assert_eq!(app.on_key(key('m')), keep(false, false));
    assert_eq!(app.on_key(key('B')), keep(true, true));
    assert_eq!(app.on_key(key('M')), keep(false, true));
    assert!(key_bar(&app).contains("  m/b keep main/branch  "));
    app.on_event(&Event::BranchKept {
        step: 90,
        change,
        branch: true,
        saved: None,
    });
    // Decided: the result goes, the branch's curve stays where it ran, b opens the menu.
    let s = screen(&app, 120, 36);
    assert!(
        !s.contains("Branch result") && s.contains("━ branch"),
        "{s}"
    );
    assert!(app.on_key(key('b')).is_empty());
    assert!(screen(&app, 120, 36).contains("What-if branch"));
}
