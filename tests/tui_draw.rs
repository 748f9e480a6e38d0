//! The terminal UI drawn on a ratatui `TestBackend` from a recorded run: every panel is there
//! with the right numbers, at the design size, at 80x24, and a notice when too small.

use candletop::protocol::{EpochMetrics, Event, LrSource, RunInfo, StepMetrics};
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

/// A run of 2 epochs x 50 steps: a LR change at step 60, paused at step 75.
fn recorded() -> App {
    let mut app = App::new(UiOptions::default());
    app.on_event(&Event::Started(RunInfo {
        data: "embedded (9000 train / 1000 val / 2000 test)".into(),
        model: "c32,c64,f128 relu bn (421,738 params)".into(),
        param_count: 421_738,
        optimizer: "AdamW wd 0.01".into(),
        layers: layers(),
        classes: (0..10).map(|c| c.to_string()).collect(),
        epochs: 2,
        steps_per_epoch: 50,
        batch_size: 64,
        run_dir: "runs/x".into(),
        resumed_from: None,
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
            lr = 2e-3;
        }
        app.on_step(&StepMetrics {
            step,
            epoch: if step <= 50 { 1 } else { 2 },
            steps: 1,
            loss: 2.0 / (1.0 + step as f64 / 10.0),
            accuracy: 0.5 + 0.004 * step as f64,
            lr,
            // The last layer's gradient vanishes.
            grad_norms: vec![0.5, 0.05, 0.04, 1.5, 1e-8],
            update_ratios: vec![1e-3, 2e-4, 3e-2, 1e-2, 0.0],
            images_per_sec: 250.0,
        });
        if step == 50 {
            app.on_event(&Event::Epoch(EpochMetrics {
                epoch: 1,
                step: 50,
                train_loss: 0.61,
                train_accuracy: 0.78,
                val_loss: 0.4321,
                val_accuracy: 0.8512,
                val_class_accuracy: vec![0.85; 10],
                lr,
                images_per_sec: 250.0,
                elapsed_secs: 13.0,
            }));
        }
    }
    app.on_event(&Event::Paused { step: 75 });
    app
}

fn screen(app: &App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| f.render_widget(app, f.area())).unwrap();
    let buf = t.backend().buffer().clone();
    (0..h)
        .map(|y| {
            (0..w)
                .map(|x| buf[(x, y)].symbol().to_string())
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_design_size_shows_every_panel_with_its_numbers() {
    let app = recorded();
    let s = screen(&app, 120, 36);
    for want in [
        "PAUSED",
        "epoch 2/2",
        "step 75/100",
        "250 img/s",
        "lr 2.00e-3",
        "AdamW wd 0.01",
        "421,738 params",
        "Loss",
        "val 0.4321",
        "Accuracy",
        "val 85.12%",
        "Gradients",
        "features.0.weight",
        "classifier.0.bias",
        "5.00e-1",
        "vanishing",
        "Learning rate 2.00e-3",
        "your changes (1)",
        "Events",
        "lr 1.00e-3 -> 2.00e-3",
        "epoch 1: val acc 85.12%",
        "paused",
        "q quit",
    ] {
        assert!(s.contains(want), "missing {want:?} in\n{s}");
    }
    // The smoothed train loss at step 75 is below the first step's 1.82.
    let loss = app.run.loss_smoothed.unwrap();
    assert!(loss < 0.5, "{loss}");
    assert!(s.contains(&format!("train {loss:.4}")), "{s}");
}

#[test]
fn eighty_by_twenty_four_is_still_complete() {
    let s = screen(&recorded(), 80, 24);
    for want in [
        "PAUSED",
        "step 75/100",
        "Loss",
        "Accuracy",
        "Gradients",
        "Learning rate",
        "Events",
        "features.0.weight",
        "quit",
    ] {
        assert!(s.contains(want), "missing {want:?} at 80x24 in\n{s}");
    }
}

#[test]
fn too_small_says_so() {
    let s = screen(&recorded(), 40, 10);
    assert!(s.contains("terminal too small"), "{s}");
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
    app.on_key(KeyEvent::from(KeyCode::Char('?')));
    for (w, h) in [(1, 1), (20, 5), (60, 18), (61, 19), (130, 45)] {
        screen(&app, w, h);
    }
    app.on_key(KeyEvent::from(KeyCode::Esc));
    app.on_key(KeyEvent::from(KeyCode::Char('l')));
    for (w, h) in [(1, 1), (20, 5), (60, 18), (130, 45)] {
        screen(&app, w, h);
    }
}

#[test]
fn overlays_show_help_prompt_and_quit() {
    let mut app = recorded();
    app.on_key(KeyEvent::from(KeyCode::Char('?')));
    assert!(screen(&app, 120, 36).contains("multiply / divide the learning rate"));
    app.on_key(KeyEvent::from(KeyCode::Esc));
    app.on_key(KeyEvent::from(KeyCode::Char('l')));
    for c in "abc".chars() {
        app.on_key(KeyEvent::from(KeyCode::Char(c)));
    }
    app.on_key(KeyEvent::from(KeyCode::Enter));
    let s = screen(&app, 120, 36);
    assert!(
        s.contains("new lr: abc") && s.contains("'abc' is not a number"),
        "{s}"
    );
    app.on_key(KeyEvent::from(KeyCode::Esc));
    app.on_key(KeyEvent::from(KeyCode::Char('q')));
    assert!(screen(&app, 80, 24).contains("Stop training and quit?"));
    // Per-epoch view.
    app.on_key(KeyEvent::from(KeyCode::Esc));
    app.on_key(KeyEvent::from(KeyCode::Char('v')));
    assert!(screen(&app, 120, 36).contains("epoch"));
}

#[test]
fn an_error_shows_the_error_state_and_message() {
    let mut app = recorded();
    app.on_event(&Event::Error {
        message: "the training thread panicked: boom".into(),
    });
    let s = screen(&app, 120, 36);
    assert!(s.contains("ERROR"), "{s}");
    assert!(
        s.contains("error: the training thread panicked: boom"),
        "{s}"
    );
    let s = screen(&app, 80, 24);
    assert!(
        s.contains("ERROR") && s.contains("error: the training thread panicked"),
        "{s}"
    );
    // Nothing is left to stop: q quits at once.
    assert!(app.on_key(KeyEvent::from(KeyCode::Char('q'))).is_empty());
    assert!(app.should_exit);
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
}
