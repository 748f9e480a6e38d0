//! The kinds of schedule, one file each. A kind is a struct of its values that says how it is
//! written (`Def`: its name, help and form in the editor), how it is read (its `parse`) and
//! what it computes (`Curve`: the LR at a point, its spec, its few words); `curve.rs` says
//! what those are.
//!
//! To add a kind: a file here with its struct, its parser, its `Curve` and its `DEF`; then a
//! variant of `Kind`, its arm in `Kind::curve` and its row in `KINDS`.

mod constant;
mod cosine;
mod curve;
mod exp;
mod multistep;
mod onecycle;
mod plateau;
mod poly;
mod step;

pub use constant::Constant;
pub use cosine::Cosine;
pub use curve::{At, Curve, Def, FormArgs};
pub use exp::Exponential;
pub use multistep::MultiStep;
pub use onecycle::{Anneal, OneCycle};
pub use plateau::{Mode, Monitor, Plateau, PlateauCut, PlateauState, ThresholdMode};
pub use poly::Poly;
pub use step::Step;

use super::spec::SpecError;

/// One kind of schedule with its values.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Constant(Constant),
    Step(Step),
    MultiStep(MultiStep),
    Exponential(Exponential),
    Cosine(Cosine),
    OneCycle(OneCycle),
    Plateau(Plateau),
    Poly(Poly),
}

/// A kind in the list: how it is written, and how the text after `name:` becomes one (`whole`
/// is `name:args`, for errors about the kind as written).
pub struct Listed {
    pub def: &'static Def,
    pub parse: fn(whole: &str, args: &str) -> Result<Kind, SpecError>,
}

/// Every kind, in the order the help and the editor list them.
pub const KINDS: [Listed; 8] = [
    Listed {
        def: &constant::DEF,
        parse: |w, a| Ok(Kind::Constant(Constant::parse(w, a)?)),
    },
    Listed {
        def: &step::DEF,
        parse: |w, a| Ok(Kind::Step(Step::parse(w, a)?)),
    },
    Listed {
        def: &multistep::DEF,
        parse: |w, a| Ok(Kind::MultiStep(MultiStep::parse(w, a)?)),
    },
    Listed {
        def: &exp::DEF,
        parse: |w, a| Ok(Kind::Exponential(Exponential::parse(w, a)?)),
    },
    Listed {
        def: &cosine::DEF,
        parse: |w, a| Ok(Kind::Cosine(Cosine::parse(w, a)?)),
    },
    Listed {
        def: &poly::DEF,
        parse: |w, a| Ok(Kind::Poly(Poly::parse(w, a)?)),
    },
    Listed {
        def: &onecycle::DEF,
        parse: |w, a| Ok(Kind::OneCycle(OneCycle::parse(w, a)?)),
    },
    Listed {
        def: &plateau::DEF,
        parse: |w, a| Ok(Kind::Plateau(Plateau::parse(w, a)?)),
    },
];

impl Kind {
    pub fn curve(&self) -> &dyn Curve {
        match self {
            Kind::Constant(k) => k,
            Kind::Step(k) => k,
            Kind::MultiStep(k) => k,
            Kind::Exponential(k) => k,
            Kind::Cosine(k) => k,
            Kind::OneCycle(k) => k,
            Kind::Plateau(k) => k,
            Kind::Poly(k) => k,
        }
    }

    pub fn def(&self) -> &'static Def {
        self.curve().def()
    }
}

/// The kinds' names, for errors and help: `constant, step, ...`.
pub fn names() -> String {
    KINDS.map(|k| k.def.name).join(", ")
}
