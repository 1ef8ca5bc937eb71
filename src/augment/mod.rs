//! Data augmentation: a chain of ops written as a spec, drawn per sample from
//! a seed, planned into as few fused passes of the `augment` kernel as the
//! ops allow, and run on the GPU or the CPU.
//!
//! ```text
//! hflip:p=0.5;rotate:deg=15;jitter:brightness=0.2,contrast=0.2;crop:w=512,h=512;resize:w=224,h=224;normalize
//! ```
//!
//! Three forms of a chain:
//! - the **spec** ([`Spec`]): ops with random ranges, as the user writes it;
//! - the **drawn** chain ([`Drawn`]): every random choice made for one sample
//!   (flip or not, the angle, the crop box as fractions of the image), written
//!   in the same syntax, so it can be saved and replayed on another image (a
//!   crop box drawn on an HR image lands on the same region of its LR twin);
//! - the **plan** ([`Plan`]): passes of the `augment` kernel. Geometric ops
//!   compose into one sampling transform evaluated only at output pixels (so
//!   crops and downscales cost nothing before them), colour ops into one colour
//!   transform; a new pass starts only where fusing would change the result:
//!   gamma or noise before a resampling op, noise before any geometric op,
//!   resampling ops with different filters, or more than 8 stages.
//!
//! Semantics: values are not clamped between ops, only at the end (so linear
//! colour ops commute exactly with resampling); fill colours made by a
//! geometric op go through only the colour ops written after it.
//! [`Plan::op_by_op`] runs each op as its own pass (one resampling per
//! resampling op): the reference the fused plan is tested against.

mod augmenter;
mod op;
mod plan;
mod spec;

pub use augmenter::*;
pub use op::*;
pub use plan::*;
pub use spec::*;
