//! Colours and emphasis. Only the 16 basic ANSI colours are used (they look right with 16 or
//! 256 colours, in tmux and screen); with `NO_COLOR` there is no colour, only bold and reverse.

use ratatui::style::{Color, Modifier, Style};

use crate::watch::{LogKind, Status};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    pub fn fg(&self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    pub fn dim(&self) -> Style {
        if self.color {
            Style::new().fg(Color::DarkGray)
        } else {
            Style::new()
        }
    }

    /// Titles and values inside titles: the default colour (a block's border colour would
    /// otherwise carry over to them).
    pub fn title(&self) -> Style {
        self.text().add_modifier(Modifier::BOLD)
    }

    pub fn text(&self) -> Style {
        if self.color {
            Style::new().fg(Color::Reset)
        } else {
            Style::new()
        }
    }

    pub fn border(&self, focused: bool) -> Style {
        match (focused, self.color) {
            (true, true) => Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
            (true, false) => Style::new().add_modifier(Modifier::BOLD),
            (false, true) => Style::new().fg(Color::DarkGray),
            (false, false) => Style::new(),
        }
    }

    /// A key to press, where the text offers it.
    pub fn key(&self) -> Style {
        self.title().add_modifier(Modifier::REVERSED)
    }

    /// The state badge: readable at a glance, in colour or without.
    pub fn status(&self, s: &Status) -> Style {
        let base = Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED);
        if !self.color {
            return base;
        }
        base.fg(match s {
            Status::Starting => Color::Blue,
            Status::Running => Color::Green,
            Status::Paused => Color::Yellow,
            Status::Finished(_) => Color::Cyan,
            Status::Error(_) => Color::Red,
        })
    }

    /// A value that needs attention (vanishing or exploding gradients, errors).
    pub fn alarm(&self) -> Style {
        if self.color {
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED)
        }
    }

    pub fn log(&self, kind: LogKind) -> Style {
        match kind {
            LogKind::Milestone => Style::new().add_modifier(Modifier::BOLD),
            LogKind::Info => Style::new(),
            LogKind::Action => self.fg(Color::Cyan),
            LogKind::Warning => self.fg(Color::Yellow).add_modifier(Modifier::BOLD),
            LogKind::Error => self.alarm(),
        }
    }

    pub const TRAIN: Color = Color::Yellow;
    pub const VAL: Color = Color::Cyan;
    pub const LR: Color = Color::Magenta;
    pub const MARK: Color = Color::Red;
    /// The raw values under a smoothed curve, and what the schedule plans.
    pub const RAW: Color = Color::DarkGray;
    /// Another run drawn under this one (`--compare`).
    pub const OTHER: Color = Color::Blue;
    /// A what-if branch of this run (`b`).
    pub const BRANCH: Color = Color::LightGreen;
}
