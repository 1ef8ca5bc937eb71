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

use crate::error::{Error, Result};
use crate::kernels::augment::{AugmentPass, Border, ColourOp, Filter, GeoStage, OutMode, MAX_STAGES};

/// ITU-R BT.601 luma weights (greyscale, saturation).
pub const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

/// Every op name and its keys, for error messages and the docs.
pub const OPS: &[(&str, &str)] = &[
    ("hflip", "p"),
    ("vflip", "p"),
    ("rot90", "k"),
    ("rotate", "deg, angle, border, fill"),
    ("crop", "w, h, x, y, fx, fy, fw, fh"),
    ("center-crop", "w, h"),
    ("random-resized-crop", "size, w, h, scale, ratio, method"),
    ("resize", "w, h, scale, method, antialias"),
    ("pad", "all, left, top, right, bottom, mode, fill"),
    ("jitter", "brightness, contrast, saturation, hue"),
    ("brightness", "f"),
    ("contrast", "f"),
    ("saturation", "f"),
    ("hue", "f"),
    ("gamma", "g"),
    ("noise", "sigma, seed"),
    ("grey", "p"),
    ("normalize", "mean, std"),
];

/// One op as written: its name and `key=value` pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct OpSpec {
    /// Op name (one of [`OPS`]).
    pub name: String,
    /// Keys and values in the order written.
    pub keys: Vec<(String, String)>,
}

impl OpSpec {
    fn get(&self, k: &str) -> Option<&str> {
        self.keys.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
    }
    fn err(&self, msg: impl std::fmt::Display) -> Error {
        Error::invalid("augment", format!("{}: {msg}", self.name))
    }
    fn num(&self, k: &str) -> Result<Option<f64>> {
        self.get(k)
            .map(|v| {
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| self.err(format!("{k}={v} is not a number")))
            })
            .transpose()
    }
    fn num_or(&self, k: &str, d: f64) -> Result<f64> {
        Ok(self.num(k)?.unwrap_or(d))
    }
    fn size(&self, k: &str) -> Result<Option<usize>> {
        match self.num(k)? {
            Some(v) if (1.0..=65536.0).contains(&v) && v.fract() == 0.0 => Ok(Some(v as usize)),
            Some(v) => Err(self.err(format!("{k}={v}: give a whole number of pixels from 1 to 65536"))),
            None => Ok(None),
        }
    }
    fn count(&self, k: &str) -> Result<usize> {
        match self.num(k)? {
            Some(v) if (0.0..=65536.0).contains(&v) && v.fract() == 0.0 => Ok(v as usize),
            Some(v) => Err(self.err(format!("{k}={v}: give a whole number of pixels from 0"))),
            None => Ok(0),
        }
    }
    fn prob(&self, d: f64) -> Result<f64> {
        let p = self.num_or("p", d)?;
        if !(0.0..=1.0).contains(&p) {
            return Err(self.err(format!("p={p}: a probability is from 0 to 1")));
        }
        Ok(p)
    }
    /// `lo-hi` or a single value `v` (as `v-v`).
    fn range(&self, k: &str) -> Result<Option<(f64, f64)>> {
        let Some(v) = self.get(k) else { return Ok(None) };
        let bad = || self.err(format!("{k}={v}: give a number or a range lo-hi"));
        // The separator is ':' or a '-' that is neither leading nor an exponent's sign (1e-3).
        let b = v.as_bytes();
        let sep = (1..b.len()).find(|&i| b[i] == b':' || (b[i] == b'-' && !matches!(b[i - 1], b'e' | b'E')));
        let parts: Vec<&str> = match sep {
            Some(i) => vec![&v[..i], &v[i + 1..]],
            None => vec![v],
        };
        let (lo, hi) = if parts.len() == 1 {
            let x: f64 = v.trim().parse().map_err(|_| bad())?;
            (x, x)
        } else {
            (parts[0].trim().parse().map_err(|_| bad())?, parts[1].trim().parse().map_err(|_| bad())?)
        };
        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
            return Err(bad());
        }
        Ok(Some((lo, hi)))
    }
    fn triple(&self, k: &str, d: [f32; 3]) -> Result<[f32; 3]> {
        let Some(v) = self.get(k) else { return Ok(d) };
        let x: Vec<f32> = v.split('/').filter_map(|s| s.trim().parse().ok()).collect();
        if x.iter().any(|x| !x.is_finite()) || x.len() != v.split('/').count() {
            return Err(self.err(format!("{k}={v}: give finite numbers, one value or three as r/g/b")));
        }
        match x.len() {
            1 => Ok([x[0]; 3]),
            3 => Ok([x[0], x[1], x[2]]),
            _ => Err(self.err(format!("{k}={v}: give one value or three as r/g/b"))),
        }
    }
    fn filter(&self) -> Result<Filter> {
        match self.get("method").unwrap_or("bilinear") {
            "nearest" => Ok(Filter::Nearest),
            "bilinear" => Ok(Filter::Bilinear),
            "bicubic" => Ok(Filter::Bicubic),
            m => Err(self.err(format!("method={m} (valid: nearest, bilinear, bicubic)"))),
        }
    }
    fn border(&self, key: &str) -> Result<Border> {
        let fill = self.triple("fill", [0.0; 3])?;
        match self.get(key).unwrap_or("constant") {
            "constant" => Ok(Border::Constant([fill[0], fill[1], fill[2], 0.0])),
            "edge" | "replicate" => Ok(Border::Edge),
            "reflect" => Ok(Border::Reflect),
            m => Err(self.err(format!("{key}={m} (valid: constant, edge, reflect)"))),
        }
    }
}

/// A chain of ops as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec(pub Vec<OpSpec>);

impl std::str::FromStr for Spec {
    type Err = Error;
    /// Parses `op;op:key=value,key=value;...`, refusing unknown ops and keys
    /// with the valid list.
    fn from_str(s: &str) -> Result<Spec> {
        let mut ops = Vec::new();
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, rest) = part.split_once(':').unwrap_or((part, ""));
            let name = name.trim().to_ascii_lowercase();
            let Some((_, keys)) = OPS.iter().find(|(n, _)| *n == name) else {
                let valid: Vec<&str> = OPS.iter().map(|(n, _)| *n).collect();
                return Err(Error::invalid("augment", format!("unknown op '{name}' (valid: {})", valid.join(", "))));
            };
            let valid: Vec<&str> = keys.split(", ").collect();
            let mut kv = Vec::new();
            for pair in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| Error::invalid("augment", format!("{name}: '{pair}' is not key=value")))?;
                let k = k.trim().to_ascii_lowercase();
                if !valid.contains(&k.as_str()) {
                    return Err(Error::invalid(
                        "augment",
                        format!("{name}: unknown key '{k}' (valid: {})", valid.join(", ")),
                    ));
                }
                kv.push((k, v.trim().to_string()));
            }
            ops.push(OpSpec { name, keys: kv });
        }
        if ops.is_empty() {
            return Err(Error::invalid("augment", "the op list is empty"));
        }
        if let Some(i) = ops.iter().position(|o| o.name == "normalize") {
            if i + 1 != ops.len() {
                return Err(Error::invalid("augment", "normalize must be the last op"));
            }
        }
        let spec = Spec(ops);
        spec.validate()?;
        Ok(spec)
    }
}

impl std::fmt::Display for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|o| {
                if o.keys.is_empty() {
                    o.name.clone()
                } else {
                    let kv: Vec<String> = o.keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    format!("{}:{}", o.name, kv.join(","))
                }
            })
            .collect();
        write!(f, "{}", parts.join(";"))
    }
}

/// The generator every draw uses: the project's SplitMix64, seeded per sample
/// (the same on every machine).
#[derive(Debug, Clone)]
pub struct Rng(crate::rng::SplitMix);

impl Rng {
    /// The generator of sample `sample` under `seed`.
    pub fn for_sample(seed: u64, sample: u64) -> Rng {
        let mut r = crate::rng::SplitMix(seed ^ 0x5851_f42d_4c95_7f2d);
        r.next_u64();
        r.0 ^= sample.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Rng(r)
    }
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
}

/// A chain with every random choice made: ops in the spec syntax with fixed
/// values (crop boxes as fractions of the image they are applied to).
pub type Drawn = Spec;

fn fixed(name: &str, keys: &[(&str, String)]) -> OpSpec {
    OpSpec { name: name.into(), keys: keys.iter().map(|(k, v)| (k.to_string(), v.clone())).collect() }
}

/// Rounds to 6 significant decimals so drawn values print and parse back exactly.
fn r6(x: f64) -> String {
    format!("{x:.6}")
}

impl Spec {
    /// Checks every value that does not depend on the image.
    pub fn validate(&self) -> Result<()> {
        let mut rng = Rng::for_sample(0, 0);
        // Every parser runs; checks that need the real image (a crop within
        // it, reflect padding smaller than it) wait for it. Sizes that are
        // over the limits on any image (a 1x1 one) are refused here.
        self.draw_sized(&mut rng, 1, 1, false).map(|_| ())
    }

    /// Draws one sample's values for an image of `w` x `h` pixels.
    pub fn draw(&self, seed: u64, sample: u64, w: usize, h: usize) -> Result<Drawn> {
        self.draw_sized(&mut Rng::for_sample(seed, sample), w, h, true)
    }

    /// Draws against a `w0` x `h0` image; `strict` false leaves out the
    /// checks that depend on the image's size (for [`Spec::validate`]).
    fn draw_sized(&self, rng: &mut Rng, w0: usize, h0: usize, strict: bool) -> Result<Drawn> {
        let mut out = Vec::new();
        let (mut w, mut h) = (w0 as f64, h0 as f64);
        for o in &self.0 {
            match o.name.as_str() {
                "hflip" | "vflip" | "grey" => {
                    let p = o.prob(if o.name == "grey" { 1.0 } else { 0.5 })?;
                    let on = rng.unit() < p;
                    out.push(fixed(&o.name, &[("p", if on { "1" } else { "0" }.into())]));
                }
                "rot90" => {
                    let k = match o.get("k") {
                        None | Some("random") => (rng.next() % 4) as usize,
                        Some(v) => match v.trim().parse::<i64>() {
                            // Negative turns are clockwise, as numpy.rot90's k.
                            Ok(k) => k.rem_euclid(4) as usize,
                            Err(_) => return Err(o.err(format!("k={v}: give a whole number of quarter turns"))),
                        },
                    };
                    if k % 2 == 1 {
                        std::mem::swap(&mut w, &mut h);
                    }
                    out.push(fixed("rot90", &[("k", k.to_string())]));
                }
                "rotate" => {
                    let a = match (o.num("angle")?, o.num("deg")?) {
                        (Some(a), _) => a,
                        (None, Some(d)) => rng.uniform(-d.abs(), d.abs()),
                        (None, None) => return Err(o.err("give deg=D (random in -D..D) or angle=A")),
                    };
                    o.border("border")?;
                    let mut keys = vec![("angle", r6(a))];
                    for k in ["border", "fill"] {
                        if let Some(v) = o.get(k) {
                            keys.push((k, v.to_string()));
                        }
                    }
                    out.push(fixed("rotate", &keys));
                }
                "crop" | "center-crop" => {
                    let (cw, ch) = match (o.get("fw"), o.get("fh")) {
                        (Some(_), Some(_)) => {
                            let (fw, fh) = (o.num_or("fw", 1.0)?, o.num_or("fh", 1.0)?);
                            if !(fw > 0.0 && fw <= 1.0 && fh > 0.0 && fh <= 1.0) {
                                return Err(o.err("fw and fh are fractions of the image in (0, 1]"));
                            }
                            ((fw * w).round().max(1.0), (fh * h).round().max(1.0))
                        }
                        _ => {
                            let (Some(cw), Some(ch)) = (o.size("w")?, o.size("h")?) else {
                                return Err(o.err("give w=W,h=H"));
                            };
                            (cw as f64, ch as f64)
                        }
                    };
                    if !strict {
                        for k in ["fx", "fy", "x", "y"] {
                            o.num(k)?;
                        }
                        (w, h) = (cw, ch);
                        out.push(o.clone());
                        continue;
                    }
                    if cw > w || ch > h {
                        return Err(o.err(format!("{cw}x{ch} is larger than the {w}x{h} image")));
                    }
                    let (x, y) = if o.name == "center-crop" {
                        (((w - cw) / 2.0).round(), ((h - ch) / 2.0).round())
                    } else {
                        match (o.num("fx")?, o.num("fy")?, o.num("x")?, o.num("y")?) {
                            (Some(fx), Some(fy), _, _) => ((fx * w).round(), (fy * h).round()),
                            (_, _, Some(x), Some(y)) => (x, y),
                            _ => ((rng.unit() * (w - cw + 1.0)).floor(), (rng.unit() * (h - ch + 1.0)).floor()),
                        }
                    };
                    let (x, y) = (x.clamp(0.0, w - cw), y.clamp(0.0, h - ch));
                    out.push(fixed(
                        "crop",
                        &[("fx", r6(x / w)), ("fy", r6(y / h)), ("fw", r6(cw / w)), ("fh", r6(ch / h))],
                    ));
                    (w, h) = (cw, ch);
                }
                "random-resized-crop" => {
                    let (ow, oh) = match (o.size("size")?, o.size("w")?, o.size("h")?) {
                        (Some(s), _, _) => (s, s),
                        (None, Some(a), Some(b)) => (a, b),
                        _ => return Err(o.err("give size=S or w=W,h=H")),
                    };
                    let (slo, shi) = o.range("scale")?.unwrap_or((0.08, 1.0));
                    let (rlo, rhi) = o.range("ratio")?.unwrap_or((3.0 / 4.0, 4.0 / 3.0));
                    if !(slo > 0.0 && shi <= 1.0 && rlo > 0.0) {
                        return Err(o.err("scale is within (0, 1] and ratio positive"));
                    }
                    o.filter()?;
                    // torchvision's RandomResizedCrop.get_params: 10 tries, then a centre crop.
                    let area = w * h;
                    let mut boxed = None;
                    for _ in 0..10 {
                        let target = area * rng.uniform(slo, shi);
                        let ratio = rng.uniform(rlo.ln(), rhi.ln()).exp();
                        let cw = (target * ratio).sqrt().round();
                        let ch = (target / ratio).sqrt().round();
                        if cw >= 1.0 && ch >= 1.0 && cw <= w && ch <= h {
                            let x = (rng.unit() * (w - cw + 1.0)).floor();
                            let y = (rng.unit() * (h - ch + 1.0)).floor();
                            boxed = Some((x, y, cw, ch));
                            break;
                        }
                    }
                    let (x, y, cw, ch) = boxed.unwrap_or_else(|| {
                        let r = w / h;
                        let (cw, ch) = if r < rlo {
                            (w, (w / rlo).round())
                        } else if r > rhi {
                            ((h * rhi).round(), h)
                        } else {
                            (w, h)
                        };
                        (((w - cw) / 2.0).floor(), ((h - ch) / 2.0).floor(), cw, ch)
                    });
                    out.push(fixed(
                        "crop",
                        &[("fx", r6(x / w)), ("fy", r6(y / h)), ("fw", r6(cw / w)), ("fh", r6(ch / h))],
                    ));
                    let mut keys = vec![("w", ow.to_string()), ("h", oh.to_string())];
                    if let Some(m) = o.get("method") {
                        keys.push(("method", m.to_string()));
                    }
                    out.push(fixed("resize", &keys));
                    (w, h) = (ow as f64, oh as f64);
                }
                "resize" => {
                    let (nw, nh) = match (o.size("w")?, o.size("h")?, o.num("scale")?) {
                        (Some(a), Some(b), _) => (a as f64, b as f64),
                        (Some(a), None, None) => (a as f64, (h * a as f64 / w).round().max(1.0)),
                        (None, Some(b), None) => ((w * b as f64 / h).round().max(1.0), b as f64),
                        (None, None, Some(s)) if s > 0.0 => ((w * s).floor().max(1.0), (h * s).floor().max(1.0)),
                        _ => return Err(o.err("give w and/or h, or scale=F > 0")),
                    };
                    o.filter()?;
                    if let Some(a) = o.get("antialias") {
                        if !matches!(a, "true" | "false" | "1" | "0") {
                            return Err(o.err(format!("antialias={a} (valid: true, false)")));
                        }
                    }
                    let mut keys = vec![("w", nw.to_string()), ("h", nh.to_string())];
                    for k in ["method", "antialias"] {
                        if let Some(v) = o.get(k) {
                            keys.push((k, v.to_string()));
                        }
                    }
                    out.push(fixed("resize", &keys));
                    (w, h) = (nw, nh);
                }
                "pad" => {
                    let all = o.count("all")?;
                    let side = |k: &str| -> Result<usize> { Ok(if o.get(k).is_some() { o.count(k)? } else { all }) };
                    let (l, t, r, b) = (side("left")?, side("top")?, side("right")?, side("bottom")?);
                    let border = o.border("mode")?;
                    if strict && border == Border::Reflect && (l.max(r) as f64 >= w || t.max(b) as f64 >= h) {
                        return Err(o.err(format!("reflect padding must be smaller than the {w}x{h} image")));
                    }
                    out.push(o.clone());
                    w += (l + r) as f64;
                    h += (t + b) as f64;
                }
                "jitter" => {
                    let mut keys = Vec::new();
                    for (k, op, centre) in [
                        ("brightness", "brightness", 1.0),
                        ("contrast", "contrast", 1.0),
                        ("saturation", "saturation", 1.0),
                        ("hue", "hue", 0.0),
                    ] {
                        let amount = o.num_or(k, 0.0)?;
                        if amount < 0.0 || (k == "hue" && amount > 0.5) {
                            return Err(
                                o.err(format!("{k}={amount}: from 0{}", if k == "hue" { " to 0.5" } else { "" }))
                            );
                        }
                        if amount > 0.0 {
                            let lo = if centre == 1.0 { (1.0 - amount).max(0.0) } else { -amount };
                            keys.push((op, r6(rng.uniform(lo, centre + amount))));
                        }
                    }
                    // Fixed order: brightness, contrast, saturation, hue.
                    for (op, v) in keys {
                        out.push(fixed(op, &[("f", v)]));
                    }
                }
                "brightness" | "contrast" | "saturation" | "hue" => {
                    let f = o.num("f")?.ok_or_else(|| o.err("give f=F"))?;
                    out.push(fixed(&o.name, &[("f", r6(f))]));
                }
                "gamma" => {
                    let (lo, hi) = o.range("g")?.ok_or_else(|| o.err("give g=G or g=LO-HI"))?;
                    if !(lo >= 0.01 && hi <= 100.0) {
                        return Err(o.err(format!("g={}: gamma is from 0.01 to 100", o.get("g").unwrap_or(""))));
                    }
                    out.push(fixed("gamma", &[("g", r6(rng.uniform(lo, hi)))]));
                }
                "noise" => {
                    let s = o.num("sigma")?.ok_or_else(|| o.err("give sigma=S"))?;
                    if s < 0.0 {
                        return Err(o.err("sigma must not be negative"));
                    }
                    let seed = match o.num("seed")? {
                        Some(v) => v as u32 & 0xFF_FFFF,
                        None => (rng.next() >> 40) as u32,
                    };
                    out.push(fixed("noise", &[("sigma", r6(s)), ("seed", seed.to_string())]));
                }
                "normalize" => {
                    let std = o.triple("std", [0.229, 0.224, 0.225])?;
                    if std.iter().any(|s| *s <= 0.0) {
                        return Err(o.err("std must be positive"));
                    }
                    o.triple("mean", [0.485, 0.456, 0.406])?;
                    out.push(o.clone());
                }
                _ => return Err(o.err("unknown op")),
            }
            let lim = crate::image_io::DecodeLimits::default();
            if w > lim.max_side as f64 || h > lim.max_side as f64 || w * h > lim.max_pixels as f64 {
                return Err(o.err(format!(
                    "makes the image {w}x{h}, over the limit of {} per side and {} pixels",
                    lim.max_side, lim.max_pixels
                )));
            }
        }
        Ok(Spec(out))
    }
}

/// Passes of the `augment` kernel for one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The passes, in order; the last writes the result.
    pub passes: Vec<AugmentPass>,
}

/// What one drawn op becomes.
enum Step {
    Geo(GeoStage, Option<(Filter, bool)>, (usize, usize)),
    Colour(ColourOp),
    Normalize([f32; 3], [f32; 3]),
    Nothing,
}

fn affine(m: [f32; 9], t: [f32; 3]) -> ColourOp {
    ColourOp::Affine { m, t }
}

fn identity_plus(f: f32, blend: [f32; 3]) -> [f32; 9] {
    let mut m = [0.0; 9];
    for r in 0..3 {
        for c in 0..3 {
            m[3 * r + c] = if r == c { f } else { 0.0 } + (1.0 - f) * blend[c];
        }
    }
    m
}

/// Hue rotation by `f` turns about the grey axis, in YIQ.
fn hue_matrix(f: f32) -> [f32; 9] {
    let to_yiq = [0.299, 0.587, 0.114, 0.596, -0.274, -0.322, 0.211, -0.523, 0.312];
    let from_yiq = [1.0, 0.956, 0.621, 1.0, -0.272, -0.647, 1.0, -1.106, 1.703];
    let (s, c) = (std::f32::consts::TAU * f).sin_cos();
    let rot = [1.0, 0.0, 0.0, 0.0, c, -s, 0.0, s, c];
    mul3(&from_yiq, &mul3(&rot, &to_yiq))
}

fn mul3(a: &[f32; 9], b: &[f32; 9]) -> [f32; 9] {
    let mut m = [0.0; 9];
    for r in 0..3 {
        for c in 0..3 {
            m[3 * r + c] = (0..3).map(|k| a[3 * r + k] * b[3 * k + c]).sum();
        }
    }
    m
}

fn step(o: &OpSpec, w: usize, h: usize) -> Result<Step> {
    let (wf, hf) = (w as f32, h as f32);
    let geo = |map: [f32; 6], border: Border, resample: Option<(Filter, bool)>, size: (usize, usize)| {
        Step::Geo(GeoStage { map, w: wf, h: hf, border, order: 0.0 }, resample, size)
    };
    let on = |o: &OpSpec| o.get("p") == Some("1");
    let f = |o: &OpSpec| o.num("f").map(|v| v.unwrap_or(1.0) as f32);
    Ok(match o.name.as_str() {
        "hflip" if on(o) => geo([-1.0, 0.0, wf, 0.0, 1.0, 0.0], Border::Inside, None, (w, h)),
        "vflip" if on(o) => geo([1.0, 0.0, 0.0, 0.0, -1.0, hf], Border::Inside, None, (w, h)),
        "hflip" | "vflip" => Step::Nothing,
        "grey" if on(o) => Step::Colour(affine(identity_plus(0.0, LUMA), [0.0; 3])),
        "grey" => Step::Nothing,
        "rot90" => match o.count("k")? % 4 {
            0 => Step::Nothing,
            1 => geo([0.0, -1.0, wf, 1.0, 0.0, 0.0], Border::Inside, None, (h, w)),
            2 => geo([-1.0, 0.0, wf, 0.0, -1.0, hf], Border::Inside, None, (w, h)),
            _ => geo([0.0, 1.0, 0.0, -1.0, 0.0, hf], Border::Inside, None, (h, w)),
        },
        "rotate" => {
            let a = o.num_or("angle", 0.0)?.to_radians();
            let (s, c) = (a.sin() as f32, a.cos() as f32);
            let (cx, cy) = (wf / 2.0, hf / 2.0);
            let map = [c, -s, cx - c * cx + s * cy, s, c, cy - s * cx - c * cy];
            // Antialiasing is a no-op for a pure rotation (footprint 1), so
            // rotations fuse with antialiased bilinear resizes.
            geo(map, o.border("border")?, Some((Filter::Bilinear, true)), (w, h))
        }
        "crop" => {
            let (cw, ch) = (
                (o.num_or("fw", 1.0)? * w as f64).round().max(1.0),
                (o.num_or("fh", 1.0)? * h as f64).round().max(1.0),
            );
            let x = (o.num_or("fx", 0.0)? * w as f64).round().clamp(0.0, (w as f64 - cw).max(0.0));
            let y = (o.num_or("fy", 0.0)? * h as f64).round().clamp(0.0, (h as f64 - ch).max(0.0));
            if cw > w as f64 || ch > h as f64 {
                return Err(o.err(format!("{cw}x{ch} is larger than the {w}x{h} image")));
            }
            geo([1.0, 0.0, x as f32, 0.0, 1.0, y as f32], Border::Inside, None, (cw as usize, ch as usize))
        }
        "resize" => {
            let (nw, nh) = (o.size("w")?.unwrap_or(w), o.size("h")?.unwrap_or(h));
            let aa = !matches!(o.get("antialias"), Some("false" | "0"));
            let map = [wf / nw as f32, 0.0, 0.0, 0.0, hf / nh as f32, 0.0];
            geo(map, Border::Inside, Some((o.filter()?, aa)), (nw, nh))
        }
        "pad" => {
            let all = o.count("all")?;
            let side = |k: &str| -> Result<usize> { Ok(if o.get(k).is_some() { o.count(k)? } else { all }) };
            let (l, t, r, b) = (side("left")?, side("top")?, side("right")?, side("bottom")?);
            geo([1.0, 0.0, -(l as f32), 0.0, 1.0, -(t as f32)], o.border("mode")?, None, (w + l + r, h + t + b))
        }
        "brightness" => Step::Colour(affine(identity_plus(f(o)?, [0.0; 3]), [0.0; 3])),
        "contrast" => {
            let f = f(o)?;
            Step::Colour(affine(identity_plus(f, [0.0; 3]), [0.5 * (1.0 - f); 3]))
        }
        "saturation" => Step::Colour(affine(identity_plus(f(o)?, LUMA), [0.0; 3])),
        "hue" => Step::Colour(affine(hue_matrix(o.num_or("f", 0.0)? as f32), [0.0; 3])),
        "gamma" => Step::Colour(ColourOp::Gamma(o.num_or("g", 1.0)? as f32)),
        "noise" => Step::Colour(ColourOp::Noise(o.num_or("sigma", 0.0)? as f32)),
        "normalize" => {
            Step::Normalize(o.triple("mean", [0.485, 0.456, 0.406])?, o.triple("std", [0.229, 0.224, 0.225])?)
        }
        _ => return Err(o.err("not a drawn op (draw the spec first)")),
    })
}

/// A pass being assembled.
struct Open {
    in_size: (usize, usize),
    size: (usize, usize),
    geo: Vec<GeoStage>,
    colour: Vec<(ColourOp, f32)>,
    seeds: Vec<u32>,
    resample: Option<(Filter, bool)>,
    last_geo_order: f32,
}

impl Open {
    fn new(size: (usize, usize)) -> Self {
        Open {
            in_size: size,
            size,
            geo: Vec::new(),
            colour: Vec::new(),
            seeds: Vec::new(),
            resample: None,
            last_geo_order: -1.0,
        }
    }
    fn close(self, out_mode: OutMode) -> AugmentPass {
        let (filter, aa) = self.resample.unwrap_or((Filter::Bilinear, false));
        // Footprint: row norms of the composed linear map (input step per output step).
        let mut j = [1.0f32, 0.0, 0.0, 1.0];
        for s in &self.geo {
            let l = [s.map[0], s.map[1], s.map[3], s.map[4]];
            j = [
                j[0] * l[0] + j[1] * l[2],
                j[0] * l[1] + j[1] * l[3],
                j[2] * l[0] + j[3] * l[2],
                j[2] * l[1] + j[3] * l[3],
            ];
        }
        let max = filter.max_footprint();
        let foot =
            |a: f32, b: f32| if aa && filter != Filter::Nearest { (a * a + b * b).sqrt().clamp(1.0, max) } else { 1.0 };
        let _ = self.in_size;
        AugmentPass {
            out_w: self.size.0,
            out_h: self.size.1,
            fx: foot(j[0], j[1]),
            fy: foot(j[2], j[3]),
            geo: self.geo,
            colour: self.colour,
            filter,
            out_mode,
            seed: self.seeds.first().copied().unwrap_or(0),
        }
    }
}

impl Plan {
    /// The fused plan of a drawn chain on a `w` x `h` image: as few passes as
    /// exactness allows (see the module docs). Ops still random in the chain
    /// are drawn with seed 0, sample 0.
    pub fn fused(drawn: &Drawn, w: usize, h: usize) -> Result<Plan> {
        Self::build(drawn, w, h, false)
    }

    /// One pass per op: the reference.
    pub fn op_by_op(drawn: &Drawn, w: usize, h: usize) -> Result<Plan> {
        Self::build(drawn, w, h, true)
    }

    /// Output size (width, height).
    pub fn out_size(&self) -> (usize, usize) {
        self.passes.last().map(|p| (p.out_w, p.out_h)).unwrap_or((0, 0))
    }

    fn build(drawn: &Drawn, w: usize, h: usize, separate: bool) -> Result<Plan> {
        // Drawing a drawn chain gives it back unchanged; this also turns a
        // spec with fixed values (crop:x=..,w=..) into the drawn form.
        let drawn = &drawn.draw(0, 0, w, h)?;
        let mut passes = Vec::new();
        let mut open = Open::new((w, h));
        let mut norm = None;
        let mut noise_seed = None;
        for (i, o) in drawn.0.iter().enumerate() {
            let order = i as f32;
            if o.name == "noise" {
                noise_seed = Some(o.num_or("seed", 0.0)? as u32);
            }
            match step(o, open.size.0, open.size.1)? {
                Step::Nothing => continue,
                Step::Normalize(mean, std) => norm = Some((mean, std)),
                Step::Geo(mut g, resample, size) => {
                    g.order = order;
                    let nonlinear = open.colour.iter().any(|(c, _)| !matches!(c, ColourOp::Affine { .. }));
                    let noisy = open.colour.iter().any(|(c, _)| matches!(c, ColourOp::Noise(_)));
                    let clash = matches!((open.resample, resample), (Some(a), Some(b)) if a != b);
                    let busy = !open.geo.is_empty() || !open.colour.is_empty();
                    if busy
                        && (separate
                            || noisy
                            || (resample.is_some() && nonlinear)
                            || clash
                            || open.geo.len() == MAX_STAGES)
                    {
                        let size = open.size;
                        passes.push(std::mem::replace(&mut open, Open::new(size)).close(OutMode::Raw));
                    }
                    // The stage works on the canvas as it is now.
                    g.w = open.size.0 as f32;
                    g.h = open.size.1 as f32;
                    open.geo.push(g);
                    open.last_geo_order = order;
                    open.resample = open.resample.or(resample);
                    open.size = size;
                }
                Step::Colour(c) => {
                    let busy = !open.geo.is_empty() || !open.colour.is_empty();
                    if busy
                        && (separate
                            || open.colour.len() == MAX_STAGES
                            || (noise_seed.is_some() && !open.seeds.is_empty() && matches!(c, ColourOp::Noise(_))))
                    {
                        let size = open.size;
                        passes.push(std::mem::replace(&mut open, Open::new(size)).close(OutMode::Raw));
                    }
                    if let (ColourOp::Noise(_), Some(s)) = (c, noise_seed) {
                        open.seeds.push(s);
                    }
                    // Consecutive affine colour ops (no geometric op written
                    // between them) merge into one matrix: M2 (M1 x + t1) + t2.
                    let after_geo = open.last_geo_order < open.colour.last().map_or(f32::MAX, |l| l.1);
                    match (open.colour.last_mut(), c, after_geo) {
                        (Some((ColourOp::Affine { m: m1, t: t1 }, _)), ColourOp::Affine { m: m2, t: t2 }, true)
                            if !separate =>
                        {
                            let m = mul3(&m2, m1);
                            let t = [0, 1, 2].map(|r| (0..3).map(|k| m2[3 * r + k] * t1[k]).sum::<f32>() + t2[r]);
                            (*m1, *t1) = (m, t);
                        }
                        _ => open.colour.push((c, order)),
                    }
                }
            }
        }
        let mode = match norm {
            Some((mean, std)) => OutMode::Normalize { mean, std },
            None => OutMode::Clamp,
        };
        passes.push(open.close(mode));
        Ok(Plan { passes })
    }
}

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::backend::Backend;
use crate::gpu::{Gpu, GpuTensor};
use crate::image_io::Image;
use crate::kernels::unpack_pixels::PixelLayout;
use crate::kernels::{PackPixels, UnpackPixels};
use crate::ops::{record_pixel_chain, Recorded};
use crate::stream::StreamOp;
use crate::tensor::{Samples, Shape, Tensor};

impl Plan {
    /// Runs the plan on planar f32 input (1, C, H, W) on the CPU.
    pub fn cpu(&self, x: &Tensor) -> Result<Tensor> {
        let mut cur = x.clone();
        for p in &self.passes {
            cur = p.cpu(&cur)?;
        }
        Ok(cur)
    }

    /// Records the plan from `x` into batch item `item` of `y`;
    /// intermediates come from the pool and are pushed onto `scratch`.
    pub fn encode(
        &self,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        x: &GpuTensor,
        y: &GpuTensor,
        item: usize,
        scratch: &mut Vec<GpuTensor>,
    ) -> Result<()> {
        let mut cur = x.clone();
        for (i, p) in self.passes.iter().enumerate() {
            if i + 1 == self.passes.len() {
                p.encode(gpu, enc, &cur, y, item)?;
            } else {
                let t = gpu.alloc(p.out_shape(cur.shape))?;
                p.encode(gpu, enc, &cur, &t, 0)?;
                scratch.push(t.clone());
                cur = t;
            }
        }
        Ok(())
    }

    /// Runs the plan on the GPU on host tensors.
    pub fn gpu(&self, gpu: &Gpu, x: &Tensor) -> Result<Tensor> {
        let (w, h) = self.out_size();
        let mut scratch = Vec::new();
        let r = gpu.run_tensors("gpuimg.augment", &[x], Shape::new(1, x.shape.c, h, w), |enc, ins, y| {
            self.encode(gpu, enc, &ins[0], y, 0, &mut scratch)
        });
        for t in scratch {
            gpu.recycle(t);
        }
        r
    }

    /// Records the plan for packed samples of layout `l` in `src`: unpack,
    /// the passes, pack (the plan must end clamped, not normalised).
    pub fn record_packed(
        &self,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        l: PixelLayout,
        src: &wgpu::Buffer,
    ) -> Result<(Recorded, PixelLayout)> {
        let (w, h) = self.out_size();
        let outl = PixelLayout { width: w, height: h, ..l };
        let mut scratch = Vec::new();
        let mut rec =
            record_pixel_chain(gpu, enc, l, src, outl, |enc, x, y| self.encode(gpu, enc, x, y, 0, &mut scratch))?;
        rec.scratch.extend(scratch.into_iter().map(|t| t.buffer));
        Ok((rec, outl))
    }

    /// Runs the plan on an image (RGB or RGBA, 8 or 16 bits) on a backend;
    /// the result keeps the layout and bit depth.
    pub fn run_image(&self, backend: &Backend, img: &Image) -> Result<Image> {
        let l = img.layout();
        let (w, h) = self.out_size();
        let outl = PixelLayout { width: w, height: h, ..l };
        let samples = match backend {
            Backend::Cpu if self.passes.len() == 1 => {
                let p = &self.passes[0];
                let (iw, ih, maxv) = (l.width, l.height, l.max_value());
                let packed = match &img.samples {
                    Samples::U8(s) => p.cpu_packed(s, iw, ih, l.channels, maxv).map(|r| r.map(Samples::U8)),
                    Samples::U16(s) => p.cpu_packed(s, iw, ih, l.channels, maxv).map(|r| r.map(Samples::U16)),
                };
                match packed {
                    Some(r) => r?,
                    None => PackPixels(outl).cpu(&self.cpu(&UnpackPixels(l).cpu(&img.samples)?)?)?,
                }
            }
            Backend::Cpu => PackPixels(outl).cpu(&self.cpu(&UnpackPixels(l).cpu(&img.samples)?)?)?,
            Backend::Gpu(gpu) => return self.run_image_gpu(gpu, img),
        };
        Image::new(w as u32, h as u32, l.channels, samples)
    }

    /// [`Plan::run_image`] on a GPU, in one submission.
    pub fn run_image_gpu(&self, gpu: &Gpu, img: &Image) -> Result<Image> {
        let l = img.layout();
        let (w, h) = self.out_size();
        let outl = PixelLayout { width: w, height: h, ..l };
        let src = gpu.upload_bytes(&img.samples.le_bytes())?;
        let r = crate::ops::run_recorded(gpu, "gpuimg.augment", outl.bytes(), |enc| {
            self.record_packed(gpu, enc, l, &src).map(|r| r.0)
        });
        gpu.recycle_buffer(src);
        Image::new(w as u32, h as u32, l.channels, Samples::from_le_bytes(outl.bits, &r?, outl.samples()))
    }
}

/// One line of a `--save-params` file: the input's file name, the sample
/// number and the drawn chain, tab-separated.
pub fn params_line(file: &str, sample: u64, drawn: &Drawn) -> String {
    format!("{file}\t{sample}\t{drawn}\n")
}

/// Reads a `--save-params` file: drawn chains by (file name, sample). A line
/// that is not FILE<TAB>SAMPLE<TAB>CHAIN, or whose chain does not parse, is an
/// error naming the line.
pub fn read_params(path: &std::path::Path) -> Result<std::collections::HashMap<(String, u64), Drawn>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut m = std::collections::HashMap::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = |msg: String| Error::invalid("--params", format!("{} line {}: {msg}", path.display(), n + 1));
        let parts: Vec<&str> = line.splitn(3, '\t').collect();
        let bad = || at("expected FILE<TAB>SAMPLE<TAB>CHAIN".into());
        if parts.len() != 3 {
            return Err(bad());
        }
        let k: u64 = parts[1].trim().parse().map_err(|_| bad())?;
        let d: Drawn = parts[2].parse().map_err(|e: Error| at(e.to_string()))?;
        m.insert((parts[0].to_string(), k), d);
    }
    Ok(m)
}

/// The normalisation at the end of a chain, if any: (mean, std).
pub fn normalization(spec: &Spec) -> Result<Option<([f32; 3], [f32; 3])>> {
    match spec.0.last() {
        Some(o) if o.name == "normalize" => {
            Ok(Some((o.triple("mean", [0.485, 0.456, 0.406])?, o.triple("std", [0.229, 0.224, 0.225])?)))
        }
        _ => Ok(None),
    }
}

/// A spec without its final `normalize`.
pub fn without_normalize(spec: &Spec) -> Spec {
    Spec(spec.0.iter().filter(|o| o.name != "normalize").cloned().collect())
}

/// An image as f32 NCHW (1, C, H, W) normalised with `(v / max - mean) / std`
/// on R, G, B (alpha as v / max): what torchvision's ToTensor + Normalize give.
pub fn normalized_tensor(img: &Image, mean: [f32; 3], std: [f32; 3]) -> Result<Tensor> {
    let mut t = UnpackPixels(img.layout()).cpu(&img.samples)?;
    let plane = t.shape.h * t.shape.w;
    for c in 0..t.shape.c.min(3) {
        for v in &mut t.data[c * plane..(c + 1) * plane] {
            *v = (*v - mean[c]) / std[c];
        }
    }
    Ok(t)
}

/// Writes a tensor as a NumPy `.npy` file (little-endian f32, C order), atomically.
pub fn write_npy(t: &Tensor, path: &Path) -> Result<()> {
    write_npy_with(t, path, true)
}

/// [`write_npy`]; an existing file only when `replace`.
pub fn write_npy_with(t: &Tensor, path: &Path, replace: bool) -> Result<()> {
    let s = t.shape;
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}, {}, {}), }}", s.n, s.c, s.h, s.w);
    // Magic (6) + version (2) + length (2) + header + '\n', padded to 64 bytes.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + t.data.len() * 4);
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(bytemuck::cast_slice(&t.data));
    crate::fsutil::write_atomic_with(path, &bytes, replace)
}

/// `gpuimg augment` as a streamed op. Each job is one sample: by default job
/// `j` is sample number `j`; [`AugmentOp::set_jobs`] maps jobs to sample
/// numbers (and to replayed chains). Values are drawn from (seed, sample).
pub struct AugmentOp {
    spec: Spec,
    norm: Option<([f32; 3], [f32; 3])>,
    seed: u64,
    fused: bool,
    jobs: Mutex<Jobs>,
    decoded: Mutex<std::collections::VecDeque<(std::path::PathBuf, DecodeCell)>>,
}

/// One input's decode, shared by the jobs (samples) that read it.
type DecodeCell = Arc<std::sync::OnceLock<std::result::Result<(Image, crate::image_io::Meta), String>>>;

/// Inputs whose decodes are kept for their other samples.
const DECODE_CACHE: usize = 8;

#[derive(Default)]
struct Jobs {
    samples: Option<Vec<u64>>,
    replay: Option<Vec<Option<Drawn>>>,
    drawn: Vec<Option<Drawn>>,
}

impl AugmentOp {
    /// The op for a spec and seed.
    pub fn new(spec: Spec, seed: u64) -> Result<Self> {
        let norm = normalization(&spec)?;
        Ok(AugmentOp {
            spec: without_normalize(&spec),
            norm,
            seed,
            fused: true,
            jobs: Mutex::new(Jobs::default()),
            decoded: Mutex::new(std::collections::VecDeque::new()),
        })
    }

    /// Runs every op as its own pass (the reference) instead of the fused plan.
    pub fn op_by_op(mut self) -> Self {
        self.fused = false;
        self
    }

    /// Job `j` is sample `samples[j]`; with `replay`, it runs `replay[j]`
    /// instead of drawing (an error for a job whose entry is `None`).
    pub fn set_jobs(&self, samples: Vec<u64>, replay: Option<Vec<Option<Drawn>>>) {
        let mut j = self.jobs.lock().expect("jobs poisoned");
        j.drawn = vec![None; samples.len()];
        j.samples = Some(samples);
        j.replay = replay;
    }

    /// The chain each job ran (None: not run, or failed before drawing).
    pub fn drawn(&self) -> Vec<Option<Drawn>> {
        self.jobs.lock().expect("jobs poisoned").drawn.clone()
    }

    fn plan(&self, job: usize, img: &Image) -> Result<Plan> {
        let (w, h) = (img.width as usize, img.height as usize);
        let (sample, replay) = {
            let j = self.jobs.lock().expect("jobs poisoned");
            let sample = j.samples.as_ref().and_then(|s| s.get(job).copied()).unwrap_or(job as u64);
            (sample, j.replay.as_ref().map(|r| r.get(job).cloned().flatten()))
        };
        let d = match replay {
            Some(Some(d)) => without_normalize(&d),
            Some(None) => return Err(Error::invalid("augment", "no saved parameters for this image and sample")),
            None => self.spec.draw(self.seed, sample, w, h)?,
        };
        let plan = if self.fused { Plan::fused(&d, w, h)? } else { Plan::op_by_op(&d, w, h)? };
        crate::stream::set_job(&mut self.jobs.lock().expect("jobs poisoned").drawn, job, Some(d));
        Ok(plan)
    }
}

impl StreamOp for AugmentOp {
    /// Decodes each input once for all its samples (jobs of one input are
    /// consecutive; the last few decodes are kept, so memory stays bounded).
    fn load(&self, _job: usize, path: &Path) -> Result<(Image, crate::image_io::Meta)> {
        let cell = {
            let mut d = self.decoded.lock().expect("decode cache poisoned");
            match d.iter().find(|(p, _)| p == path) {
                Some((_, c)) => c.clone(),
                None => {
                    let c = DecodeCell::default();
                    d.push_back((path.to_path_buf(), c.clone()));
                    if d.len() > DECODE_CACHE {
                        d.pop_front();
                    }
                    c
                }
            }
        };
        let limits = crate::image_io::DecodeLimits::default();
        match cell.get_or_init(|| crate::image_io::load_full(path, limits).map_err(|e| e.to_string())) {
            Ok(img) => Ok(img.clone()),
            Err(m) => Err(Error::invalid("augment", m.clone())),
        }
    }
    fn prepare(&self, img: Image) -> Result<Image> {
        if img.channels <= 2 {
            crate::ops::grey_to_rgb(&img)
        } else {
            Ok(img)
        }
    }
    fn cpu(&self, job: usize, img: &Image) -> Result<Image> {
        self.plan(job, img)?.run_image(&Backend::Cpu, img)
    }
    fn gpu(&self, job: usize, gpu: &Gpu, img: &Image) -> Result<Image> {
        // Only reached if `record` declined, which it does not.
        self.plan(job, img)?.run_image_gpu(gpu, img)
    }
    fn record(
        &self,
        job: usize,
        gpu: &Gpu,
        enc: &mut wgpu::CommandEncoder,
        img: &Image,
        src: &wgpu::Buffer,
    ) -> Result<Option<(Recorded, PixelLayout)>> {
        Ok(Some(self.plan(job, img)?.record_packed(gpu, enc, img.layout(), src)?))
    }
    fn save(&self, _job: usize, out: &Image, meta: &crate::image_io::Meta, path: &Path, replace: bool) -> Result<()> {
        match self.norm {
            Some((mean, std)) => write_npy_with(&normalized_tensor(out, mean, std)?, path, replace),
            None => crate::image_io::save_with(out, path, meta, replace),
        }
    }
}

/// Batches of augmented samples for a training loop, made on the GPU the
/// caller owns: `next_batch()` records and submits the following batch into the
/// other of two buffers and returns the batch made on the previous call, so
/// the GPU fills one buffer while the caller's work reads the other.
///
/// Every sample is one of `images` (chosen by the seeded generator), put
/// through the spec with values drawn from (seed, sample number). The chain
/// must end at a fixed size (a crop, resize or random-resized-crop) and may
/// end with `normalize`; the batch is f32 NCHW (batch, C, H, W).
pub struct Augmenter {
    gpu: Arc<Gpu>,
    spec: Spec,
    norm: Option<([f32; 3], [f32; 3])>,
    images: Vec<GpuTensor>,
    batch: usize,
    seed: u64,
    next_sample: u64,
    out: [GpuTensor; 2],
    turn: usize,
    primed: bool,
    scratch: Vec<GpuTensor>,
    last_drawn: Vec<Drawn>,
    current: Vec<Drawn>,
}

impl Augmenter {
    /// Uploads `images` (as planar f32) and checks the output size.
    pub fn new(gpu: Arc<Gpu>, spec: &Spec, images: &[Image], batch: usize, seed: u64) -> Result<Self> {
        if images.is_empty() || batch == 0 {
            return Err(Error::invalid("augmenter", "give at least one image and a batch of at least 1"));
        }
        let norm = normalization(spec)?;
        let spec = without_normalize(spec);
        let channels = images[0].channels;
        let mut size = None;
        let mut up = Vec::new();
        for (i, img) in images.iter().enumerate() {
            let img = if img.channels <= 2 { crate::ops::grey_to_rgb(img)? } else { img.clone() };
            if img.channels != channels.max(3) {
                return Err(Error::invalid(
                    "augmenter",
                    format!("image {i} has {} channels, image 0 {channels}", img.channels),
                ));
            }
            // The output size must not depend on the image or the draw.
            for s in 0..4 {
                let d = spec.draw(seed ^ 0xA5A5, s, img.width as usize, img.height as usize)?;
                let got = Plan::fused(&d, img.width as usize, img.height as usize)?.out_size();
                if *size.get_or_insert(got) != got {
                    return Err(Error::invalid(
                        "augmenter",
                        "the chain's output size varies: end it with a crop, resize or random-resized-crop",
                    ));
                }
            }
            up.push(gpu.upload(&UnpackPixels(img.layout()).cpu(&img.samples)?)?);
        }
        let (w, h) = size.expect("one image at least");
        let c = channels.max(3);
        let shape = Shape::new(batch, c, h, w);
        let out = [gpu.alloc(shape)?, gpu.alloc(shape)?];
        Ok(Augmenter {
            gpu,
            spec,
            norm,
            images: up,
            batch,
            seed,
            next_sample: 0,
            out,
            turn: 0,
            primed: false,
            scratch: Vec::new(),
            last_drawn: Vec::new(),
            current: Vec::new(),
        })
    }

    /// The shape of a batch (batch, C, H, W).
    pub fn batch_shape(&self) -> Shape {
        self.out[0].shape
    }

    /// Records one batch into `self.out[slot]` and submits it (no wait).
    fn fill(&mut self, slot: usize) -> Result<Vec<Drawn>> {
        let gpu = self.gpu.clone();
        let mut enc =
            gpu.device().create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("gpuimg.augmenter") });
        for t in self.scratch.drain(..) {
            gpu.recycle(t);
        }
        let mut drawn = Vec::with_capacity(self.batch);
        for b in 0..self.batch {
            let sample = self.next_sample;
            self.next_sample += 1;
            let mut rng = Rng::for_sample(self.seed ^ 0x1D_C0DE, sample);
            let x = &self.images[(rng.next() % self.images.len() as u64) as usize];
            let (w, h) = (x.shape.w, x.shape.h);
            let d = self.spec.draw(self.seed, sample, w, h)?;
            let mut plan = Plan::fused(&d, w, h)?;
            if let (Some((mean, std)), Some(last)) = (self.norm, plan.passes.last_mut()) {
                last.out_mode = OutMode::Normalize { mean, std };
            }
            plan.encode(&gpu, &mut enc, x, &self.out[slot], b, &mut self.scratch)?;
            drawn.push(d);
        }
        gpu.queue().submit([enc.finish()]);
        Ok(drawn)
    }

    /// The next batch, f32 NCHW on the GPU. Its contents stay valid until the
    /// call after next; work the caller submits after this call sees them.
    pub fn next_batch(&mut self) -> Result<&GpuTensor> {
        if !self.primed {
            self.last_drawn = self.fill(self.turn)?;
            self.primed = true;
        }
        let ready = self.turn;
        let ready_drawn = std::mem::take(&mut self.last_drawn);
        self.turn ^= 1;
        self.last_drawn = self.fill(self.turn)?;
        self.current = ready_drawn;
        Ok(&self.out[ready])
    }

    /// The drawn chains of the batch `next_batch` returned last, in batch order.
    pub fn drawn(&self) -> &[Drawn] {
        &self.current
    }
}
