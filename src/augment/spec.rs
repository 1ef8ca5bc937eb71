//! Augmentation specs: the ops, their parameters and random ranges, the
//! seeded draws of one sample, and the `--save-params` line format.

use crate::error::{Error, Result};
use crate::kernels::augment::{Border, Filter};

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
    pub(super) fn get(&self, k: &str) -> Option<&str> {
        self.keys.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
    }
    pub(super) fn err(&self, msg: impl std::fmt::Display) -> Error {
        Error::invalid("augment", format!("{}: {msg}", self.name))
    }
    pub(super) fn num(&self, k: &str) -> Result<Option<f64>> {
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
    pub(super) fn num_or(&self, k: &str, d: f64) -> Result<f64> {
        Ok(self.num(k)?.unwrap_or(d))
    }
    pub(super) fn size(&self, k: &str) -> Result<Option<usize>> {
        match self.num(k)? {
            Some(v) if (1.0..=65536.0).contains(&v) && v.fract() == 0.0 => Ok(Some(v as usize)),
            Some(v) => Err(self.err(format!("{k}={v}: give a whole number of pixels from 1 to 65536"))),
            None => Ok(None),
        }
    }
    pub(super) fn count(&self, k: &str) -> Result<usize> {
        match self.num(k)? {
            Some(v) if (0.0..=65536.0).contains(&v) && v.fract() == 0.0 => Ok(v as usize),
            Some(v) => Err(self.err(format!("{k}={v}: give a whole number of pixels from 0"))),
            None => Ok(0),
        }
    }
    pub(super) fn prob(&self, d: f64) -> Result<f64> {
        let p = self.num_or("p", d)?;
        if !(0.0..=1.0).contains(&p) {
            return Err(self.err(format!("p={p}: a probability is from 0 to 1")));
        }
        Ok(p)
    }
    /// `lo-hi` or a single value `v` (as `v-v`).
    pub(super) fn range(&self, k: &str) -> Result<Option<(f64, f64)>> {
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
    pub(super) fn triple(&self, k: &str, d: [f32; 3]) -> Result<[f32; 3]> {
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
    pub(super) fn filter(&self) -> Result<Filter> {
        match self.get("method").unwrap_or("bilinear") {
            "nearest" => Ok(Filter::Nearest),
            "bilinear" => Ok(Filter::Bilinear),
            "bicubic" => Ok(Filter::Bicubic),
            m => Err(self.err(format!("method={m} (valid: nearest, bilinear, bicubic)"))),
        }
    }
    pub(super) fn border(&self, key: &str) -> Result<Border> {
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
    pub(super) fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub(super) fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
}

/// A chain with every random choice made: ops in the spec syntax with fixed
/// values (crop boxes as fractions of the image they are applied to).
pub type Drawn = Spec;

pub(super) fn fixed(name: &str, keys: &[(&str, String)]) -> OpSpec {
    OpSpec { name: name.into(), keys: keys.iter().map(|(k, v)| (k.to_string(), v.clone())).collect() }
}

/// Rounds to 6 significant decimals so drawn values print and parse back exactly.
pub(super) fn r6(x: f64) -> String {
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
    pub(super) fn draw_sized(&self, rng: &mut Rng, w0: usize, h0: usize, strict: bool) -> Result<Drawn> {
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

/// One line of a `--save-params` file: the input's file name, the sample
/// number and the drawn chain, tab-separated.
pub fn params_line(file: &str, sample: u64, drawn: &Drawn) -> String {
    format!("{file}\t{sample}\t{drawn}\n")
}

/// Reads a `--save-params` file: drawn chains by (file name, sample). A line
/// that is not `FILE<TAB>SAMPLE<TAB>CHAIN`, or whose chain does not parse, is an
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
